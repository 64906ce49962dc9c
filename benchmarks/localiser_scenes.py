"""Benchmark of the coin localiser on synthetic multi-coin scenes built from real catalogue coins.

    python benchmarks/localiser_scenes.py --data /work/shared/data/coin-images [--scenes 200] [--seed 0]
        [--localiser hough|finder] [--real-photos /work/shared/data/real-photos-dev] [--faces-split train]
        [--sheet sheet.png] [--json out.json]

``--localiser``: today's Hough localiser (``localize.locate_coins``, the default) or the learned coin finder
(``finder.CoinFinder``, the bundled model); the scenes and the matching are the same for both.

1. Coin cut-outs: catalogue pictures of the chosen split (validation by default) are cut into faces by
   ``split_faces``; each face whose circle lies inside its picture becomes a round cut-out.
2. Scenes: K scenes with 1-6 coins (and one in ten with none, to count false finds on empty tables),
   over every background kind, with touching/overlapping pairs, shadows and uneven light at random.
   A true coin is found when a box matches it with IoU >= 0.5, or when the box's centre lies within
   half a radius of the coin's and its side within 30% of the true box's; every box matching no coin
   is a false find. Reported per scene type, with the ``locate_coins`` latency (wall clock and CPU).
3. Real photos (information only, never tuned on): the fraction of the single-coin photos in which
   exactly one coin is found.
4. ``--faces-split``: how many pictures of a catalogue split ``split_faces`` cuts into 1 or 2 faces;
   ``--sheet PATH`` draws its boxes on 40 random pictures of that split, to look at.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.localize import Circle, CoinBox, box_for_circle, locate_coins, split_faces  # noqa: E402
from coinspotter.synthetic import BACKGROUNDS, CoinCutout, cutout_from_picture, make_scene  # noqa: E402

MATCH_IOU = 0.5
MATCH_CENTRE = 0.5  # fraction of the true radius
# The centre rule alone would count a box round a coin's hole or a numeral as the coin; the crop is
# useless then, so a centre match also needs the box side within 30% of the true box's.
MATCH_SIDE_RATIO = 1.3
EMPTY_SCENE_EVERY = 10  # one scene in ten has no coin
LOCATE = locate_coins  # what is measured; main() sets it from --localiser


def load_cutouts(split_dir: Path, count: int, rng: np.random.Generator) -> list[CoinCutout]:
    """Round cut-outs of up to ``count`` catalogue faces whose circle lies wholly inside the picture."""
    files = sorted(split_dir.glob("*/*.jpg"))
    cutouts: list[CoinCutout] = []
    for index in rng.permutation(len(files)):
        picture = Image.open(files[index]).convert("RGB")
        for box in split_faces(picture):
            if box.radius is None:  # no circle found: the whole picture, not a clean coin
                continue
            circle = Circle(box.cx, box.cy, box.radius)
            if _circle_inside(circle, picture.width, picture.height):
                cutouts.append(cutout_from_picture(picture, circle))
        if len(cutouts) >= count:
            break
    return cutouts


def _circle_inside(circle: Circle, width: int, height: int) -> bool:
    reach = circle.r * 0.97  # the cut-out trims 3% of the rim, so that much may touch the frame
    return reach <= circle.cx <= width - reach and reach <= circle.cy <= height - reach


def box_iou(a: CoinBox, b: CoinBox) -> float:
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    inter = ix * iy
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter
    return inter / union if union else 0.0


def match(truth: list[Circle], boxes: list[CoinBox]) -> tuple[int, int]:
    """(true coins found, false finds): each box may match one coin, best IoU first."""
    unused = list(range(len(boxes)))
    found = 0
    for circle in truth:
        true_box = box_for_circle(circle)
        best, best_iou = None, -1.0
        for index in unused:
            box = boxes[index]
            iou = box_iou(true_box, box)
            centre_offset = np.hypot((box.x0 + box.x1) / 2 - circle.cx, (box.y0 + box.y1) / 2 - circle.cy)
            centre_close = centre_offset < MATCH_CENTRE * circle.r
            side_ratio = (box.x1 - box.x0) / (true_box.x1 - true_box.x0)
            similar_size = 1 / MATCH_SIDE_RATIO <= side_ratio <= MATCH_SIDE_RATIO
            if (iou >= MATCH_IOU or (centre_close and similar_size)) and iou > best_iou:
                best, best_iou = index, iou
        if best is not None:
            unused.remove(best)
            found += 1
    return found, len(unused)


@dataclass
class Tally:
    scenes: int = 0
    coins: int = 0
    found: int = 0
    boxes: int = 0
    false: int = 0
    empty_with_find: int = 0
    empty_scenes: int = 0

    def add(self, coins: int, found: int, boxes: int, false: int) -> None:
        self.scenes += 1
        self.coins += coins
        self.found += found
        self.boxes += boxes
        self.false += false
        if coins == 0:
            self.empty_scenes += 1
            self.empty_with_find += int(boxes > 0)

    def row(self) -> dict:
        return {
            "scenes": self.scenes,
            "coins": self.coins,
            "recall": self.found / self.coins if self.coins else None,
            "precision": (self.boxes - self.false) / self.boxes if self.boxes else None,
            "false_find_rate": self.false / self.boxes if self.boxes else 0.0,
            "false_finds": self.false,
            "empty_scenes_with_a_find": f"{self.empty_with_find}/{self.empty_scenes}",
        }


def timed_locate(image: Image.Image):
    """locate_coins with its wall-clock and CPU milliseconds (CPU: this process, all its threads).

    Both, because on a shared machine the wall clock also counts time spent waiting for a core.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = LOCATE(image)
    return result, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def latency_summary(latencies: list[tuple[float, float]]) -> dict:
    wall, cpu = np.array(latencies).T
    return {"wall_median_ms": float(np.median(wall)), "wall_p90_ms": float(np.percentile(wall, 90)),
            "cpu_median_ms": float(np.median(cpu)), "cpu_p90_ms": float(np.percentile(cpu, 90))}


def _latency_text(summary: dict) -> str:
    return (f"wall median {summary['wall_median_ms']:.1f} ms (p90 {summary['wall_p90_ms']:.1f}), "
            f"CPU median {summary['cpu_median_ms']:.1f} ms (p90 {summary['cpu_p90_ms']:.1f})")


def run_scenes(cutouts: list[CoinCutout], count: int, seed: int) -> tuple[dict, list[tuple[float, float]]]:
    tallies: dict[str, Tally] = {}
    latencies: list[tuple[float, float]] = []
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        n_coins = 0 if index % EMPTY_SCENE_EVERY == EMPTY_SCENE_EVERY - 1 else int(rng.integers(1, 7))
        background = BACKGROUNDS[index % len(BACKGROUNDS)]
        scene = make_scene(rng, n_coins, coins=cutouts, background=background)
        result, wall_ms, cpu_ms = timed_locate(scene.image)
        latencies.append((wall_ms, cpu_ms))
        found, false = match(scene.circles, result.boxes)
        kinds = ["all", f"background: {background}"]
        kinds += ["no coin"] if n_coins == 0 else ["1 coin" if n_coins == 1 else "2-6 coins"]
        kinds += ["touching/overlapping pair"] if scene.touching else []
        kinds += ["shadows"] if scene.extras["shadows"] else []
        kinds += ["uneven light"] if scene.extras["uneven_light"] else []
        for kind in kinds:
            tallies.setdefault(kind, Tally()).add(len(scene.circles), found, len(result.boxes), false)
    order = ["all", "1 coin", "2-6 coins", "no coin", "touching/overlapping pair", "shadows", "uneven light"]
    order += [f"background: {name}" for name in BACKGROUNDS]
    return {kind: tallies[kind].row() for kind in order if kind in tallies}, latencies


def run_real_photos(folder: Path) -> dict:
    counts = {"0": 0, "1": 0, "2+": 0}
    latencies = []
    with open(folder / "labels.csv", newline="") as handle:
        files = [row["file"] for row in csv.DictReader(handle)]
    for name in files:
        result, wall_ms, cpu_ms = timed_locate(Image.open(folder / name).convert("RGB"))
        latencies.append((wall_ms, cpu_ms))
        counts["0" if not result.boxes else "1" if len(result.boxes) == 1 else "2+"] += 1
    return {
        "photos": len(files),
        "exactly_one_fraction": counts["1"] / len(files),
        "coins_found_counts": counts,
        "latency": latency_summary(latencies),
    }


def run_face_split(split_dir: Path) -> dict:
    files = sorted(split_dir.glob("*/*.jpg"))
    counts = {"1": 0, "2": 0, "none (whole picture)": 0}
    wide, wide_two, tall, tall_two = 0, 0, 0, 0
    for path in files:
        image = Image.open(path).convert("RGB")
        boxes = split_faces(image)
        key = "none (whole picture)" if boxes[0].radius is None else str(len(boxes))
        counts[key] += 1
        if image.width >= 1.6 * image.height:
            wide += 1
            wide_two += len(boxes) == 2
        elif image.height >= 1.6 * image.width:
            tall += 1
            tall_two += len(boxes) == 2
    return {
        "pictures": len(files),
        "faces_counts": counts,
        "wide_pictures (w/h >= 1.6)": wide,
        "wide_split_into_2_fraction": wide_two / wide if wide else None,
        "tall_pictures (h/w >= 1.6)": tall,
        "tall_split_into_2_fraction": tall_two / tall if tall else None,
    }


def contact_sheet(split_dir: Path, path: Path, seed: int, count: int = 40, columns: int = 8, tile: int = 200) -> None:
    """``count`` random pictures with their face boxes (red, then green) and circles (cyan), numbered by faces."""
    files = sorted(split_dir.glob("*/*.jpg"))
    chosen = np.random.default_rng(seed).choice(len(files), size=min(count, len(files)), replace=False)
    rows = -(-len(chosen) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (40, 40, 40))
    draw_sheet = ImageDraw.Draw(sheet)
    for slot, index in enumerate(chosen):
        image = Image.open(files[index]).convert("RGB")
        boxes = split_faces(image)
        draw = ImageDraw.Draw(image)
        line = max(2, image.width // 100)
        for number, box in enumerate(boxes):
            draw.rectangle(box.as_list(), outline=(255, 0, 0) if number == 0 else (0, 255, 0), width=line)
            if box.radius is not None:
                draw.ellipse([box.cx - box.radius, box.cy - box.radius, box.cx + box.radius, box.cy + box.radius],
                             outline=(0, 255, 255), width=line)
        image.thumbnail((tile - 4, tile - 4))
        x, y = (slot % columns) * tile, (slot // columns) * tile
        sheet.paste(image, (x, y))
        label = "whole" if boxes[0].radius is None else str(len(boxes))
        draw_sheet.rectangle([x, y, x + 8 * len(label) + 4, y + 14], fill=(0, 0, 0))
        draw_sheet.text((x + 3, y + 2), label, fill=(255, 255, 0))
    sheet.save(path)


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def print_table(rows: dict) -> None:
    columns = ["scenes", "coins", "recall", "precision", "false_finds", "empty_scenes_with_a_find"]
    widths = [max(10, len(column) + 2) for column in columns]
    print(f"{'scene type':28s}" + "".join(f"{column:>{width}s}" for column, width in zip(columns, widths)))
    for kind, row in rows.items():
        print(f"{kind:28s}" + "".join(f"{_fmt(row[column]):>{width}s}" for column, width in zip(columns, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="coin-images folder (with train/validation/test)")
    parser.add_argument("--split", default="validation", help="split the coin cut-outs come from")
    parser.add_argument("--scenes", type=int, default=200)
    parser.add_argument("--cutouts", type=int, default=300, help="how many catalogue faces to cut out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--real-photos", type=Path, default=None,
                        help="real-photos-dev folder (default: next to --data, when there)")
    parser.add_argument("--faces-split", default=None, help="also count split_faces results over this split")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="write a contact sheet of split_faces on 40 pictures of --faces-split (or train)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures to this JSON file")
    parser.add_argument("--localiser", choices=("hough", "finder"), default="hough")
    parser.add_argument("--finder-dir", type=Path, default=None,
                        help="the finder's folder with --localiser finder (default: COINSPOTTER_FINDER_DIR, else the "
                             "bundled web-app/models/coin_finder)")
    args = parser.parse_args(argv)

    global LOCATE
    report: dict = {"seed": args.seed, "localiser": args.localiser}
    if args.localiser == "finder":
        from coinspotter.finder import CoinFinder, configured_dir

        finder_dir = args.finder_dir or configured_dir()  # as the app reads it, unless asked for another
        finder = CoinFinder(finder_dir)
        report["finder_dir"] = str(finder_dir)
        if not finder.load():
            print(f"the coin finder cannot be loaded: {finder.error}", file=sys.stderr)
            return 1
        LOCATE = finder.locate
        report["finder_backend"] = finder.backend
    cutouts = load_cutouts(args.data / args.split, args.cutouts, np.random.default_rng(args.seed))
    print(f"{len(cutouts)} coin cut-outs from {args.data / args.split}")
    rows, latencies = run_scenes(cutouts, args.scenes, args.seed)
    report["synthetic"] = rows
    report["synthetic_latency"] = latency_summary(latencies)
    print(f"\nSynthetic scenes (match: box IoU >= {MATCH_IOU}, or centre within {MATCH_CENTRE} r and side within "
          f"{MATCH_SIDE_RATIO - 1:.0%})")
    print_table(rows)
    print(f"{args.localiser} latency (scenes 480-800 px wide): {_latency_text(report['synthetic_latency'])}")
    overall = rows["all"]
    bar = overall["recall"] >= 0.95 and overall["false_find_rate"] <= 0.05
    print(f"bar (recall >= 0.95, false finds <= 5%): {'MET' if bar else 'NOT MET'}")

    real = args.real_photos or args.data.parent / "real-photos-dev"
    if (real / "labels.csv").exists():
        report["real_photos"] = run_real_photos(real)
        info = report["real_photos"]
        print(f"\nReal single-coin photos ({real}, information only): exactly one coin found in "
              f"{info['exactly_one_fraction']:.3f} of {info['photos']}; counts {info['coins_found_counts']}; "
              f"{_latency_text(info['latency'])}")
    if args.faces_split:
        report["face_split"] = run_face_split(args.data / args.faces_split)
        print(f"\nsplit_faces over {args.faces_split}: {json.dumps(report['face_split'], indent=1)}")
    if args.sheet:
        contact_sheet(args.data / (args.faces_split or "train"), args.sheet, args.seed)
        print(f"contact sheet: {args.sheet}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
