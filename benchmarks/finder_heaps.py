"""How do coin finders count coins lying in a heap? Synthetic scenes with and without heaps, train-side only.

    python benchmarks/finder_heaps.py --finders web-app/models/coin_finder runs/finder_run6/export \
        [--scenes 80] [--json reports/benchmarks/finder_heaps.json]

Each finder is an exported folder (``.tflite``/``.h5`` and its card) searched the served way (its card's threshold,
same-coin overlap, flip test and second look). The scenes are ``synthetic.make_photo_scene`` with 6-15 drawn coins (no
catalogue or real faces, so nothing here is a picture any finder trained on), once with no heaps and once all heaps
(``heap_share`` 0 and 1), and all heaps of solid coins (``solid_share`` 1: their edges seen, packed closer, tilted;
from finder stage 12), the same seeds for every finder, labelled as ``make_photo_scene`` labels them (a coin under
others is a coin from 0.15 of it seen; figures from before finder stage 8 were measured with 0.4). Per finder and
kind: recall and precision at IoU >= 0.5, the share of scenes counted exactly, how many were counted too high and too
low, the missed coins by radius (pixels of the scene, 420-640 px on its longer side), and how many missed coins have
their centre in the same or a next cell (of the network's output: 8 or 4 pixels of its input) as a coin it found: with
peak window 3 a centre peak there is not a local maximum of its 3 x 3 cells, so the decoding could not have kept it
(window 1 can). coin-scenes/dev is never read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.finder import CoinFinder  # noqa: E402
from coinspotter.scene_metrics import match_boxes  # noqa: E402
from coinspotter.synthetic import make_photo_scene  # noqa: E402

RADIUS_BINS = (15, 30)  # missed coins: radius under 15 px, 15-30, 30 and over
# (label, heap share, solid share): the scenes of each kind. "solid heaps" (from finder stage 12) draw the coins as
# solid discs, their edge seen at a slant, closer in the heap and each tilted its own way; before, two kinds.
KINDS = (("no heaps", 0.0, 0.0), ("heaps", 1.0, 0.0), ("solid heaps", 1.0, 1.0))


def scenes(heap_share: float, count: int, solid_share: float = 0.0):
    for index in range(count):
        rng = np.random.default_rng([4242, index])
        scene = make_photo_scene(rng, int(rng.integers(6, 16)), heap_share=heap_share, solid_share=solid_share)
        yield scene.image, scene.boxes


def cell_of(box, cell: float) -> tuple[int, int]:
    """The grid cell of a box's centre, ``cell`` pixels a side."""
    return int((box[0] + box[2]) / 2 // cell), int((box[1] + box[3]) / 2 // cell)


def measure(finder: CoinFinder, heap_share: float, count: int, solid_share: float = 0.0) -> dict:
    hits = found_total = coins = exact = over = under = 0
    missed_by_radius = [0] * (len(RADIUS_BINS) + 1)
    missed_next_to_a_find = 0
    for image, truth in scenes(heap_share, count, solid_share):
        found = [(d.x0, d.y0, d.x1, d.y1) for d in finder.detect(image)]
        cell = finder.stride * max(image.size) / finder.input_side  # a cell of the network's grid, in scene pixels
        found_cells = [cell_of(box, cell) for box in found]

        hit, n_found = match_boxes(truth, found)
        hits, found_total, coins = hits + hit, found_total + n_found, coins + len(truth)
        exact += n_found == len(truth)
        over += n_found > len(truth)
        under += n_found < len(truth)
        for box in truth:
            if not match_boxes([box], found)[0]:
                radius = max(box[2] - box[0], box[3] - box[1]) / 2
                missed_by_radius[int(np.searchsorted(RADIUS_BINS, radius, side="right"))] += 1
                x, y = cell_of(box, cell)
                missed_next_to_a_find += any(abs(x - fx) <= 1 and abs(y - fy) <= 1 for fx, fy in found_cells)
    return {"scenes": count, "coins": coins, "recall": round(hits / max(coins, 1), 3),
            "precision": round(hits / max(found_total, 1), 3), "count_exact": round(exact / count, 3),
            "counted_too_high": over, "counted_too_low": under,
            "missed_by_radius": dict(zip(("under 15 px", "15-30 px", "30 px and over"), missed_by_radius)),
            "missed_within_a_cell_of_a_find": missed_next_to_a_find}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finders", type=Path, nargs="+", required=True, help="exported finder folders")
    parser.add_argument("--scenes", type=int, default=80, help="scenes of each kind")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for folder in args.finders:
        finder = CoinFinder(folder)
        if not finder.load():
            raise SystemExit(f"no coin finder in {folder}: {finder.error}")
        for label, heap_share, solid_share in KINDS:
            row = {"finder": str(folder), "scenes_of": label,
                   **measure(finder, heap_share, args.scenes, solid_share)}
            rows.append(row)
            print(f"{str(folder):40s} {label:12s}: recall {row['recall']:.3f} precision {row['precision']:.3f} "
                  f"count exact {row['count_exact']:.3f} (too high {row['counted_too_high']}, too low "
                  f"{row['counted_too_low']}); missed by radius {row['missed_by_radius']}, within a cell of a find "
                  f"{row['missed_within_a_cell_of_a_find']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
