"""Make (or refresh) the TFLite copy of every model in a models folder: what the deployed app serves.

    python training/export_tflite.py                       # = --models web-app/models
    python training/export_tflite.py --models runs/candidates --force

For every card with its own ``.h5`` (ensembles have none: their members are cards of their own), this writes
beside the card

- ``<name>.<variant>.tflite``: the ``.h5`` converted by LiteRT's converter (``coinspotter.compact.tflite_bytes``;
  the variant the card already serves, else ``--variant``, float16 by default), with the last convolutional
  feature map as a second output;
- ``<name>.cam.npz``: the dense kernel of its pooled-then-dense head, so that "Show why" (Grad-CAM, which for such
  a head is the class activation map) runs on the copy without TensorFlow;

and sets the card's ``serving`` entry: the file, its variant, the sha256 of the ``.h5`` it was made from (a server
seeing another ``.h5`` there ignores the stale copy), and how closely the copy agrees with the ``.h5`` on a few
generated coin pictures (top-1, largest probability difference, largest heat-map difference). A card whose copy is
already fresh (same ``.h5``, files present) is left as it is, unless ``--force``; figures that
``benchmarks/compact.py`` measured for the same ``.h5`` and variant are kept. Where a copy disagrees with its
``.h5`` beyond ``--tolerance`` the command says so and exits with 1, leaving that card as it was.

The ``.h5`` stays the source of truth that ``training/`` writes: run this again whenever a served ``.h5`` is
replaced (the tests fail on a stale copy: tests/test_serving_copies.py). Needs TensorFlow (requirements-dev.txt).
"""
from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.compact import VARIANTS, NotPooledDense, cam_file_name, tflite_bytes, write_cam_kernel  # noqa: E402
from coinspotter.config import REPO_ROOT  # noqa: E402
from coinspotter.modelcard import ModelCard, find_cards  # noqa: E402

log = logging.getLogger("export_tflite")
DEFAULT_VARIANT = "float16"
# what serving adds besides the file: kept from benchmarks/compact.py when the .h5 and the variant are the same
MEASURED_FIELDS = ("why", "file_mb", "validation_leak_free_top1", "real_photos_value_accuracy", "latency_ms_per_image",
                   "measured_by", "measured_at")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=str(REPO_ROOT / "web-app" / "models"), help="folder of model cards")
    parser.add_argument("--variant", choices=[v for v in VARIANTS if v != "full_int8"], default=None,
                        help="variant for a card that serves none yet (default: float16; a card keeps its own)")
    parser.add_argument("--force", action="store_true", help="export again even where the copy is fresh")
    parser.add_argument("--tolerance", type=float, default=0.02,
                        help="largest probability difference from the .h5 allowed on the check pictures")
    return parser.parse_args(argv)


def check_pictures(size: int) -> np.ndarray:
    """Coin-like pictures made here (no data set needed): discs of several colours, sizes and backgrounds."""
    from PIL import Image, ImageDraw

    from coinspotter.preprocessing import batch_model_input

    rng = np.random.default_rng(0)
    pictures = []
    for index in range(8):
        picture = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(120, 255, 3)))
        draw = ImageDraw.Draw(picture)
        radius = size * (0.25 + 0.05 * (index % 4))
        centre = size / 2 + rng.normal(0, size * 0.05, 2)
        box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
        draw.ellipse(box, fill=tuple(int(v) for v in rng.integers(60, 230, 3)), outline=(40, 40, 40), width=3)
        for ring in range(3):  # some texture, so that the feature maps are not flat
            inner = radius * (0.3 + 0.2 * ring)
            draw.ellipse((centre[0] - inner, centre[1] - inner, centre[0] + inner, centre[1] + inner),
                         outline=tuple(int(v) for v in rng.integers(0, 255, 3)), width=2)
        pictures.append(picture)
    return batch_model_input(pictures, size)


def swaps_beyond_near_ties(expected: np.ndarray, got: np.ndarray, tolerance: float) -> int:
    """Pictures whose first class the copy changed where the .h5 was not near a tie: a generated picture can
    leave two classes nearly level, and there float16 rounding may swap them. A swap counts only where the
    .h5 put its first class ahead of the copy's first by more than 2 * ``tolerance``."""
    rows = np.arange(len(expected))
    margins = expected[rows, expected.argmax(1)] - expected[rows, got.argmax(1)]
    return int((margins > 2 * tolerance).sum())


def is_fresh(card: ModelCard, sha256: str) -> bool:
    serving = card.serving or {}
    return bool(serving.get("file") and serving.get("source_sha256") == sha256 and serving.get("cam")
                and (card.path.parent / serving["file"]).is_file() and (card.path.parent / serving["cam"]).is_file())


def export_card(card: ModelCard, variant_default: str, tolerance: float, command: str) -> tuple[bool, str]:
    """(ok, what was done) for one card; the card and its files are written only when the copy agrees."""
    from coinspotter.explain import ClassActivationMap, GradCam
    from coinspotter.inference import KerasClassifier, TFLiteClassifier, file_sha256

    folder = card.path.parent
    sha256 = file_sha256(card.model_path)
    variant = (card.serving or {}).get("variant") or variant_default
    keras_classifier = KerasClassifier(card)
    model = keras_classifier.model
    target = folder / f"{card.name}.{variant}.tflite"
    cam = folder / cam_file_name(card.name)
    temporary_target = target.with_suffix(".tflite.tmp")
    temporary_cam = folder / (cam.name + ".tmp")
    started = time.perf_counter()
    temporary_target.write_bytes(tflite_bytes(model, variant))
    try:
        layer = write_cam_kernel(model, temporary_cam)
    except NotPooledDense as error:
        layer = None
        log.warning("%s: no class activation map (%s): 'Show why' will need the .h5 and TensorFlow", card.name, error)
    seconds = time.perf_counter() - started

    # the copy against its source, before anything is replaced
    lite = TFLiteClassifier(card, path=temporary_target, cam=temporary_cam if layer else None)
    pictures = check_pictures(card.input_size)
    expected, got = keras_classifier.predict_arrays(pictures), lite.predict_arrays(pictures)
    top1_agrees = float((expected.argmax(1) == got.argmax(1)).mean())
    difference = float(np.abs(expected - got).max())
    swapped_beyond_ties = swaps_beyond_near_ties(expected, got, tolerance)
    checked = {"pictures": len(pictures), "top1_agrees_with_h5": top1_agrees,
               "top1_swaps_beyond_near_ties": swapped_beyond_ties, "max_probability_difference": round(difference, 6)}
    if layer:
        classes = expected.argmax(1)
        heat_h5 = GradCam(model).heatmaps(pictures, classes)
        heat_lite = ClassActivationMap(lite).heatmaps(pictures, classes)
        checked["max_heat_map_difference"] = round(float(np.abs(heat_h5 - heat_lite).max()), 6)
    if swapped_beyond_ties or difference > tolerance:
        temporary_target.unlink(missing_ok=True)
        temporary_cam.unlink(missing_ok=True)
        return False, (f"{card.name}: the {variant} copy disagrees with {card.file} on generated pictures "
                       f"({checked}); nothing written")

    previous = dict(card.serving or {})
    temporary_target.replace(target)
    if layer:
        temporary_cam.replace(cam)
    serving = {
        "file": target.name, "format": "tflite", "variant": variant, "source_file": card.file,
        "source_sha256": sha256,
    }
    if layer:
        serving.update(cam=cam.name, feature_layer=layer)
    serving.update(exported_by=command, exported_at=time.strftime("%Y-%m-%d %H:%M"), checked=checked)
    if previous.get("source_sha256") == sha256 and previous.get("variant", variant) == variant:
        serving.update({key: previous[key] for key in MEASURED_FIELDS if key in previous})
    else:
        serving["why"] = (f"{variant} copy of {card.file} made by {command}, checked against it on {len(pictures)} "
                          "generated pictures; accuracy and speed not measured by benchmarks/compact.py for this "
                          ".h5 yet; the .h5 stays the source of truth")
    serving["file_mb"] = round(target.stat().st_size / 1e6, 2)
    card.serving = serving
    card.save(card.path)
    if previous.get("file") and previous["file"] != target.name:
        (folder / previous["file"]).unlink(missing_ok=True)  # a copy of another variant, no longer served
    return True, (f"{card.name}: {target.name} ({serving['file_mb']} MB, {seconds:.1f} s)"
                  f"{' + ' + cam.name if layer else ''}; against {card.file}: {checked}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    command = "python training/export_tflite.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    from coinspotter.inference import file_sha256

    cards = find_cards(args.models)
    if not cards:
        print(f"no model cards in {args.models}", file=sys.stderr)
        return 2
    failed = 0
    for card in cards.values():
        if card.is_ensemble:
            print(f"{card.name}: an ensemble of {', '.join(card.members)}: served through their copies")
            continue
        if not args.force and is_fresh(card, file_sha256(card.model_path)):
            print(f"{card.name}: {card.serving['file']} is fresh (exported from this {card.file}); --force to redo")
            continue
        ok, message = export_card(card, args.variant or DEFAULT_VARIANT, args.tolerance, command.strip())
        failed += not ok
        print(message if ok else f"error: {message}", file=sys.stdout if ok else sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
