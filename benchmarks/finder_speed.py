"""Time to find the coins in a 1024-px photo: today's Hough localiser beside the learned finder (LiteRT and Keras).

    python benchmarks/finder_speed.py [--photos ../shared/data/coin-scenes/train/images] [--count 20]
        [--repeats 5] [--json reports/benchmarks/finder_speed.json] [--md reports/benchmarks/finder_speed.md]
        [--compare OTHER_FINDER ...]

Each photo is scaled to 1024 px on its longer side (from --photos, or synthetic photo-like scenes drawn at
1024 x 768 when none are given) and decoded once; what is timed is the finder's whole call on the decoded
photo (for the learned finder: the resize to its input side, the network, the decoding), as the service makes it.
Wall clock and this process's CPU time, medians over every photo and repeat; the load average before and after
is recorded, because on a shared machine the wall clock also counts waiting for a core.

``--compare`` times other finder folders through LiteRT beside ``--finder``'s, call for call (on each photo every
finder in turn, the order reversed every other photo), so that a machine whose speed drifts during the run
slows them alike; each row then says its median's ratio to ``--finder``'s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.finder import DEFAULT_DIR, CoinFinder  # noqa: E402
from coinspotter.localize import locate_coins  # noqa: E402


def photos_1024(folder: Path | None, count: int) -> list[Image.Image]:
    if folder is None:
        from coinspotter.synthetic import make_photo_scene

        return [make_photo_scene(np.random.default_rng([77, i]), 1 + i % 12, size=(1024, 768)).image
                for i in range(count)]
    images = []
    for path in sorted(folder.glob("*.jpg"))[:count]:
        image = Image.open(path).convert("RGB")
        scale = 1024 / max(image.size)
        images.append(image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS))
    return images


def timed(call, images, repeats) -> dict:
    call(images[0])  # warm-up: first-call set-up is not per-photo time
    wall, cpu = [], []
    for _ in range(repeats):
        for image in images:
            w, c = time.perf_counter(), time.process_time()
            call(image)
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    return {"wall_median_ms": round(float(np.median(wall)), 1), "wall_p90_ms": round(float(np.percentile(wall, 90)), 1),
            "cpu_median_ms": round(float(np.median(cpu)), 1), "calls": len(wall)}


def timed_side_by_side(calls: dict, images, repeats) -> dict:
    """``timed`` for several calls at once, interleaved photo by photo (the order reversed every other photo)."""
    names = list(calls)
    for name in names:
        calls[name](images[0])
    wall = {name: [] for name in names}
    cpu = {name: [] for name in names}
    for turn in range(repeats * len(images)):
        image = images[turn % len(images)]
        for name in names if turn % 2 == 0 else names[::-1]:
            w, c = time.perf_counter(), time.process_time()
            calls[name](image)
            wall[name].append((time.perf_counter() - w) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    first = float(np.median(wall[names[0]]))
    return {name: {"wall_median_ms": round(float(np.median(wall[name])), 1),
                   "wall_p90_ms": round(float(np.percentile(wall[name], 90)), 1),
                   "cpu_median_ms": round(float(np.median(cpu[name])), 1), "calls": len(wall[name]),
                   "wall_median_ratio_to_first": round(float(np.median(wall[name])) / first, 3)} for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--finder", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--compare", type=Path, nargs="+", default=[],
                        help="other finder folders, timed through LiteRT call for call beside --finder's")
    args = parser.parse_args(argv)
    images = photos_1024(args.photos, args.count)
    load_before = os.getloadavg()
    results = {"hough (today's localiser)": timed(locate_coins, images, args.repeats)}
    for backend in ("tflite", "keras"):
        finder = CoinFinder(args.finder, backend=backend)
        if finder.load():
            results[f"learned finder ({backend})"] = timed(finder.locate, images, args.repeats)
        else:
            results[f"learned finder ({backend})"] = {"error": finder.error}
    if args.compare:
        finders = {str(folder): CoinFinder(folder, backend="tflite") for folder in [args.finder, *args.compare]}
        broken = {name: finder.error for name, finder in finders.items() if not finder.load()}
        if broken:
            raise SystemExit(f"not loaded: {broken}")
        side_by_side = timed_side_by_side({name: finder.locate for name, finder in finders.items()}, images,
                                          args.repeats)
        results.update({f"learned finder (tflite), {name}, side by side": row for name, row in side_by_side.items()})
    load_after = os.getloadavg()
    report = {"command": "python benchmarks/finder_speed.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "photos": len(images), "sizes": sorted({image.size for image in images})[:4], "repeats": args.repeats,
              "cpus": os.cpu_count(), "machine": platform.machine(),
              "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
              "results": results}
    lines = ["| finder | median wall ms | p90 wall ms | median CPU ms | calls |", "|---|---|---|---|---|"]
    for name, row in results.items():
        if "wall_median_ratio_to_first" in row:
            name = f"{name} (median x{row['wall_median_ratio_to_first']} of the first)"
        lines.append(f"| {name} | " + (" | ".join(str(row[k]) for k in ("wall_median_ms", "wall_p90_ms", "cpu_median_ms", "calls"))
                                       if "error" not in row else f"not loaded: {row['error']} | | |") + " |")
    text = (f"{len(images)} photos of 1024 px (longer side), {args.repeats} repeats, {os.cpu_count()} CPUs; "
            f"load average (1 min) {report['load_average_1min_before_after'][0]} before, "
            f"{report['load_average_1min_before_after'][1]} after\n\n" + "\n".join(lines))
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(f"# Finder speed\n\n`{report['command']}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
