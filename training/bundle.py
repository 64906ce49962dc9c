"""Put a trained model into the served models folder under the name the app serves it by.

    python training/bundle.py runs/models/student_real.json --as student --out web-app/models

Copies ``<model>.h5`` to ``<out>/<as>.h5`` and writes its card as ``<out>/<as>.json`` with the new name,
keeping its training record (the name it was trained as is kept there) and dropping what described the
old file: measured figures, the temperature refit and a compact copy, which belong to the file they were
measured on. Calibrate, export and evaluate it again afterwards (README "Real photos").
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.modelcard import read_card  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("card", help="the trained model's card (<name>.json beside <name>.h5)")
    parser.add_argument("--as", dest="name", required=True, help="the name to serve it by (student, a member's name)")
    parser.add_argument("--out", default="web-app/models")
    args = parser.parse_args(argv)

    card = read_card(args.card)
    if card.is_ensemble:
        raise SystemExit(f"{args.card} is an ensemble: write its card with training/ensemble.py")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{args.name}.h5"
    if card.model_path.resolve() != target.resolve():
        shutil.copyfile(card.model_path, target)
    card.training = {**card.training, "trained_as": card.training.get("trained_as", card.name)}
    card.name, card.file = args.name, target.name
    card.metrics, card.serving, card.tta_temperature = {}, {}, 1.0
    card.save(out / f"{args.name}.json")
    print(out / f"{args.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
