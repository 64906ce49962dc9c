"""How many drawn coins does a labelling rule leave out of crowded synthetic scenes? Scenes only, no finder.

    python benchmarks/heap_labels.py [--scenes 60] [--shares 0.4 0.15] [--json FILE]

``synthetic.make_photo_scene`` labels a coin under others only when at least ``min_visible_share`` of it is seen;
the rest are drawn but, to a finder trained on the scene, "not a coin". Per heap share (0.2, the default scenes'; 1,
all heaps) and per rule: the coins drawn (rule 0), the coins labelled and the share left out, over ``--scenes`` scenes
of 6-15 coins, the same seeds for every rule.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.synthetic import make_photo_scene  # noqa: E402


def labelled(heap_share: float, share: float, count: int) -> int:
    total = 0
    for index in range(count):
        rng = np.random.default_rng([99, index])
        total += len(make_photo_scene(rng, int(rng.integers(6, 16)), heap_share=heap_share,
                                      min_visible_share=share).boxes)
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=60)
    parser.add_argument("--shares", type=float, nargs="+", default=[0.4, 0.15])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    for heap_share in (0.2, 1.0):
        drawn = labelled(heap_share, 0.0, args.scenes)
        for share in args.shares:
            kept = labelled(heap_share, share, args.scenes)
            rows.append({"heap_share": heap_share, "min_visible_share": share, "drawn": drawn, "labelled": kept,
                         "left_out": round(1 - kept / max(drawn, 1), 4)})
            print(f"heaps {heap_share}: min visible {share}: {kept} of {drawn} drawn coins labelled, "
                  f"{rows[-1]['left_out']:.1%} left out", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"scenes": args.scenes, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
