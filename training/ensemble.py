"""Write the teacher ensemble's model card: the average of its members' probabilities, served by the
app's ensemble switch and ``--model ensemble``. The members' ``.h5`` files and cards must lie in --out.

    python training/ensemble.py --members mobilenetv2_deep student --out web-app/models \
        --display-name "Ensemble: deep MobileNetV2 teacher + student"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.modelcard import ModelCard, read_card  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", nargs="+", required=True, help="names of member cards in --out")
    parser.add_argument("--name", default="ensemble")
    parser.add_argument("--display-name", help="what the page calls it (default: the members' names)")
    parser.add_argument("--out", default="web-app/models")
    args = parser.parse_args(argv)
    out = Path(args.out)
    members = [read_card(out / f"{name}.json") for name in args.members]
    class_ids = members[0].class_ids
    for member in members[1:]:
        if sorted(member.class_ids) != sorted(class_ids):
            raise SystemExit(f"{member.name} has other classes than {members[0].name}")
    card = ModelCard(
        name=args.name,
        display_name=args.display_name or "Ensemble (" + ", ".join(m.display_name for m in members) + ")",
        architecture="average of the members' probabilities: " + "; ".join(f"{m.name}: {m.architecture}" for m in members),
        class_ids=class_ids,
        input_size=max(m.input_size for m in members),
        members=[m.name for m in members],
        training={"command": "python training/ensemble.py " + " ".join(argv if argv is not None else sys.argv[1:])},
    )
    card.save(out / f"{args.name}.json")
    print(out / f"{args.name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
