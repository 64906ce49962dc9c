"""Does test-time augmentation pay for its latency? Accuracy and cost of averaging over turned crops.

    python benchmarks/tta.py web-app/models/student.json --data ../shared/data/coin-images \
        --real-photos ../shared/data/real-photos-dev --audit reports/audit.json --rotations 1 2 4 8

For each rotation count, the model of the card is evaluated the server's way (decode -> localiser ->
``RotationAveraged``) on leak-free validation and the real photos, with its CPU latency per picture.
Pictures are decoded and localised once and shared by every setting. Writes ``--out``/tta.json and tta.md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import evaluate  # noqa: E402

from coinspotter.inference import ModelRegistry, configure_tensorflow_threads  # noqa: E402
from coinspotter.modelcard import read_card  # noqa: E402
from coinspotter.tta import RotationAveraged  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("card", help="model card (web-app/models/<name>.json)")
    parser.add_argument("--data", required=True)
    parser.add_argument("--real-photos", required=True)
    parser.add_argument("--audit")
    parser.add_argument("--rotations", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--latency-repeats", type=int, default=10)
    parser.add_argument("--out", default="reports/benchmarks")
    return parser.parse_args(argv)


def headline(report: dict) -> dict:
    real = report["sets"][evaluate.REAL_PHOTOS]["full"]
    val = report["sets"]["validation"]["leak_free"]
    return {
        "validation_leak_free_top1": val["top1"], "validation_leak_free_value_accuracy": val["value_accuracy"],
        "real_photos_top1": real["top1"], "real_photos_value_accuracy": real["value_accuracy"],
        "real_photos_ece": real["ece"],
        **{k: v for k, v in report["latency"].items() if k.endswith("_ms_per_image") or k.startswith("load")},
    }


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        f"# Test-time augmentation: {result['model']}", "",
        f"Measured by `{result['measured_by']}` at {result['measured_at']} "
        f"({result['cpu_count']} CPU cores; 1-minute load average at each latency run in the table).", "",
        "| turns | leak-free val top-1 | real photos top-1 | real photos value acc. | ms/img b1 | ms/img b8 | load |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rotations, row in result["settings"].items():
        lines.append(
            f"| {rotations} | {row['validation_leak_free_top1']:.3f} | {row['real_photos_top1']:.3f} | "
            f"{row['real_photos_value_accuracy']:.3f} | {row.get('batch_1_ms_per_image', '')} | "
            f"{row.get('batch_8_ms_per_image', '')} | {row.get('load_average_1min', '')} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_tensorflow_threads()
    card = read_card(args.card)
    served = ModelRegistry(card.path.parent).get(card.name)
    classifier = getattr(served, "inner", served)  # the bare model, whatever the card serves now
    with evaluate.coin_search():  # the server's coin search cuts the pictures
        eval_sets = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))
    result = {
        "model": card.name, "card": args.card, "cpu_count": __import__("os").cpu_count(),
        "measured_by": "python benchmarks/tta.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"), "settings": {},
    }
    for rotations in args.rotations:
        report = evaluate.evaluate_classifier(RotationAveraged(classifier, rotations), eval_sets,
                                              latency_repeats=args.latency_repeats)
        result["settings"][str(rotations)] = headline(report)
        print(rotations, json.dumps(result["settings"][str(rotations)]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tta.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, out / "tta.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
