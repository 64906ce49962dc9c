"""Does a coin finder find more coins in crowded scenes at a larger input side? Its own weights, run at other sides.

    python benchmarks/finder_input_side.py --model runs/finder_run5/final.keras \
        --scenes ../shared/data/coin-scenes/train --sides 384 480 576 [--crowds 120] [--json FILE]

The network is convolutional, so the same weights run at any side that is a multiple of 32. Measured, at each side
and at thresholds 0.4 / 0.5 / 0.6 (the served search otherwise: same-coin overlap 0.7, the second look when a coin
is half the photo across), on train-side data only: the held-out coin-scenes/train photos (every 5th per source,
as ``train_finder.py`` holds them out) and ``--crowds`` synthetic scenes of 8-15 drawn coins (labelled as
``make_photo_scene`` labels them: coins under others from 0.15 of them seen; 0.4 when stage 6's input side, 512, was
chosen by this). coin-scenes/dev is never read.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import finder_data  # noqa: E402
import train_finder  # noqa: E402

from coinspotter.finder import letterbox, model_input, search  # noqa: E402
from coinspotter.scene_metrics import match_boxes  # noqa: E402
from coinspotter.synthetic import make_photo_scene  # noqa: E402

THRESHOLDS = (0.4, 0.5, 0.6)


def crowd_scenes(count: int) -> list[tuple[Image.Image, list]]:
    scenes = []
    for index in range(count):
        rng = np.random.default_rng([777, index])
        scene = make_photo_scene(rng, int(rng.integers(8, 16)))
        scenes.append((scene.image, scene.boxes))
    return scenes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a finder's .keras or .h5 file")
    parser.add_argument("--scenes", type=Path, required=True, help="coin-scenes/train (its held-out photos are used)")
    parser.add_argument("--sides", type=int, nargs="+", default=[384, 480, 576])
    parser.add_argument("--crowds", type=int, default=120, help="synthetic scenes of 8-15 drawn coins")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import keras

    photos = finder_data.read_scene_boxes(args.scenes)
    _, held = finder_data.split_train_photos(photos)
    sets = {"held-out train photos": [(Image.open(args.scenes / name).convert("RGB"), photos[name]) for name in held],
            "synthetic crowds (8-15 coins)": crowd_scenes(args.crowds)}
    trained = keras.saving.load_model(args.model, compile=False)
    rows = []
    for side in args.sides:
        network = train_finder.build_model(None, side)
        network.set_weights(trained.get_weights())
        for label, pairs in sets.items():
            outputs = []
            for image, _ in pairs:
                looks = {}
                for fill in (1.0, 0.5):
                    canvas, scale = letterbox(image, side=side, fill=fill)
                    looks[fill] = np.asarray(network(model_input(canvas), training=False))[0], scale
                outputs.append(looks)
            for threshold in THRESHOLDS:
                tp = fp = fn = exact = 0
                for (image, truth), looks in zip(pairs, outputs):
                    found = search(looks.__getitem__, threshold, 0.7)
                    hit, n_found = match_boxes(truth, [(d.x0, d.y0, d.x1, d.y1) for d in found])
                    tp, fp, fn = tp + hit, fp + n_found - hit, fn + len(truth) - hit
                    exact += n_found == len(truth)
                row = {"side": side, "set": label, "threshold": threshold, "recall": round(tp / max(tp + fn, 1), 3),
                       "precision": round(tp / max(tp + fp, 1), 3), "count_exact": round(exact / len(pairs), 3)}
                rows.append(row)
                print(f"{label:30s} side {side} threshold {threshold}: recall {row['recall']:.3f} "
                      f"precision {row['precision']:.3f} count exact {row['count_exact']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
