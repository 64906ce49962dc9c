"""Does a finder rebuilt at another stride start where the trained one was? Both searched on held-out train photos.

    python benchmarks/finder_warm_start.py --model runs/finder_run7/final.keras \
        --scenes ../shared/data/coin-scenes/train [--stride 4] [--threshold 0.5]

``train_finder.build_model`` at ``--stride`` with the trained weights carried over (``carry_weights``, as
``train --init ... --stride`` does) against the trained network itself, each searched the served way otherwise (second
look for every photo, peak window 1, same-coin overlap 0.6), on the held-out coin-scenes/train photos (every 5th per
source, as ``train_finder.py`` holds them out): coins found at IoU >= 0.5, false boxes, coins missed. coin-scenes/dev is
never read.
"""
from __future__ import annotations

import argparse
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a trained finder's .keras or .h5 file")
    parser.add_argument("--scenes", type=Path, required=True, help="coin-scenes/train (its held-out photos are used)")
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args(argv)
    import keras

    trained = keras.saving.load_model(args.model, compile=False)
    side = train_finder.input_side(trained)
    rebuilt = train_finder.build_model(None, side, args.stride)
    train_finder.carry_weights(trained, rebuilt)
    photos = finder_data.read_scene_boxes(args.scenes)
    _, held = finder_data.split_train_photos(photos)
    for label, network in (("trained", trained), (f"rebuilt at stride {args.stride}", rebuilt)):
        found_coins = false_boxes = missed = 0
        for name in held:
            image = Image.open(args.scenes / name).convert("RGB")
            looks = {}
            for fill in (1.0, 0.5):
                canvas, scale = letterbox(image, side, fill)
                looks[fill] = np.asarray(network(model_input(canvas), training=False))[0], scale
            found = search(looks.__getitem__, args.threshold, 0.6, "always", 1, train_finder.output_stride(network))
            hit, boxes = match_boxes(photos[name], [(d.x0, d.y0, d.x1, d.y1) for d in found])
            found_coins, false_boxes = found_coins + hit, false_boxes + boxes - hit
            missed += len(photos[name]) - hit
        print(f"{label}: {len(held)} photos, {found_coins} coins found, {false_boxes} false boxes, {missed} missed",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
