"""The coin finders on real photos with every coin boxed (coin-scenes): today's Hough localiser, the learned
finder, and Hough circles gated by the learned finder's centre map, side by side.

    python benchmarks/coin_scenes.py --scenes ../shared/data/coin-scenes/dev \
        [--finder web-app/models/coin_finder] [--backend tflite|keras] \
        [--held-out WORK/split.json] [--json reports/coin_finder.json] [--md reports/coin_finder.md]

coin-scenes/dev is for evaluation only: nothing (weights, thresholds, overlap rule) is chosen on it.
``--held-out`` restricts coin-scenes/train to the photos training/train_finder.py held out (for tuning).

Per finder: recall and precision at IoU >= 0.5 (each box may match one coin, best IoU first), the share of
photos whose coin count is exactly right, the coins found on photos without a coin, per source too, and the
median time per photo (photos as stored, longer side <= 800 px). Boxes compared: the learned finder's tight
box; for Hough, the square round its circle (centre +- radius, without the crop margin: its tightest box).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.finder import DEFAULT_DIR, CoinFinder  # noqa: E402
from coinspotter.localize import find_circles  # noqa: E402
from coinspotter.scene_metrics import match_boxes  # noqa: E402
from training.finder_data import read_scene_boxes  # noqa: E402

METHODS = ("hough", "finder", "hough+finder gate")


def hough_boxes(image: Image.Image) -> list[tuple]:
    return [(c.circle.cx - c.circle.r, c.circle.cy - c.circle.r, c.circle.cx + c.circle.r, c.circle.cy + c.circle.r)
            for c in find_circles(image)]


def gated(circles: list[tuple], output: np.ndarray, scale: float, threshold: float, stride: int) -> list[tuple]:
    """Hough boxes whose centre's 3x3 cells in the finder's centre map reach ``threshold``."""
    kept = []
    grid = output.shape[0]
    for box in circles:
        cx, cy = (box[0] + box[2]) / 2 * scale / stride, (box[1] + box[3]) / 2 * scale / stride
        x, y = int(np.clip(cx, 0, grid - 1)), int(np.clip(cy, 0, grid - 1))
        if output[max(0, y - 1):y + 2, max(0, x - 1):x + 2, 0].max() >= threshold:
            kept.append(box)
    return kept


class Tally:
    def __init__(self):
        self.coins = self.hits = self.boxes = self.photos = self.exact = 0
        self.empty_photos = self.false_on_empty = 0

    def add(self, truth, boxes):
        hits, n = match_boxes(truth, boxes)
        self.coins += len(truth)
        self.hits += hits
        self.boxes += n
        self.photos += 1
        self.exact += n == len(truth)
        if not truth:
            self.empty_photos += 1
            self.false_on_empty += n

    def row(self) -> dict:
        return {"photos": self.photos, "coins": self.coins, "boxes": self.boxes,
                "recall": round(self.hits / self.coins, 4) if self.coins else None,
                "precision": round(self.hits / self.boxes, 4) if self.boxes else None,
                "count_exact": round(self.exact / self.photos, 4) if self.photos else None,
                "no_coin_photos": self.empty_photos, "coins_found_on_no_coin_photos": self.false_on_empty}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=Path, required=True, help="a coin-scenes part (dev, or train with --held-out)")
    parser.add_argument("--finder", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--backend", default="auto", choices=("auto", "tflite", "keras"))
    parser.add_argument("--held-out", type=Path, default=None, help="split.json of a training run: its held-out photos")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args(argv)

    photos = read_scene_boxes(args.scenes)
    names = sorted(photos)
    if args.held_out:
        names = sorted(json.loads(args.held_out.read_text())["held_out"])
    finder = CoinFinder(args.finder, backend=args.backend)
    if not finder.load():
        print(f"no finder: {finder.error}", file=sys.stderr)
        return 1
    threshold, overlap = finder.score_threshold, finder.same_coin_overlap
    tallies = {method: defaultdict(Tally) for method in METHODS}
    times = {method: [] for method in ("hough", "finder")}
    for name in tqdm(names, desc=args.scenes.name, file=sys.stdout, mininterval=10):
        image = Image.open(args.scenes / name).convert("RGB")
        truth = photos[name]
        started = time.perf_counter()
        hough = hough_boxes(image)
        times["hough"].append(time.perf_counter() - started)
        started = time.perf_counter()
        found = finder.detect(image)  # as served: with the second look for a close-up when nothing is found
        times["finder"].append(time.perf_counter() - started)
        output, scale = finder.outputs(image)
        boxes = {"hough": hough, "finder": [(d.x0, d.y0, d.x1, d.y1) for d in found],
                 "hough+finder gate": gated(hough, output, scale, threshold, finder.stride)}
        source = Path(name).name.split("__")[0]
        for method in METHODS:
            for key in ("all", f"source: {source}"):
                tallies[method][key].add(truth, boxes[method])
    report = {
        "command": "python benchmarks/coin_scenes.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "scenes": str(args.scenes), "photos": len(names), "finder": str(args.finder), "backend": finder.backend,
        "score_threshold": threshold, "same_coin_overlap": overlap, "machine": platform.processor() or platform.machine(),
        "median_ms_per_photo": {m: round(1000 * float(np.median(t)), 1) for m, t in times.items()},
        "results": {method: {key: tally.row() for key, tally in sorted(rows.items(), key=lambda kv: kv[0] != "all")}
                    for method, rows in tallies.items()},
    }
    lines = [f"Photos: {len(names)} from {args.scenes}; finder threshold {threshold}, same-coin overlap {overlap} "
             f"(from its card, not chosen here); backend {finder.backend}", "",
             "| finder | subset | photos | coins | boxes | recall | precision | count exactly right | coins on no-coin photos |",
             "|---|---|---|---|---|---|---|---|---|"]
    for method, rows in report["results"].items():
        for key, row in rows.items():
            lines.append(f"| {method} | {key} | {row['photos']} | {row['coins']} | {row['boxes']} | {row['recall']} | "
                         f"{row['precision']} | {row['count_exact']} | "
                         f"{row['coins_found_on_no_coin_photos'] if row['no_coin_photos'] else '-'} |")
    lines += ["", f"Median time per photo (stored size, <= 800 px): {report['median_ms_per_photo']}"]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.md:
        args.md.write_text(f"# Coin finders on {args.scenes.name}\n\n`{report['command']}`\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
