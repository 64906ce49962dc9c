"""What the "Coins from" hint buys: accuracy of the served model without and with it.

    python benchmarks/currency_hint.py
    # = --card web-app/models/student.json --data ../shared/data/coin-images
    #   --real-photos ../shared/data/real-photos-dev --audit reports/audit.json --out reports/benchmarks

Every picture goes the server's way (``training/evaluate.py``'s ``load_eval_sets`` and ``predict``: decode ->
localiser -> the model the card serves) on leak-free validation and on the real photos (evaluation only). The hint
for each picture is its own true currency, what its owner would choose; the probabilities are then restricted and
renormalised exactly as the service does (``coinspotter.currency_hint.restrict``). Reports top-1, value accuracy
and the share shown as "not sure", overall and per currency (by the true class), without and with the hint, and
how many errors without the hint were another currency. Writes ``--out``/currency_hint.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import evaluate  # noqa: E402

from coinspotter import currency_hint, evaluation  # noqa: E402
from coinspotter.catalog import load_catalog  # noqa: E402
from coinspotter.config import Settings  # noqa: E402
from coinspotter.inference import ModelRegistry, configure_tensorflow_threads  # noqa: E402
from coinspotter.modelcard import read_card  # noqa: E402

FIGURES = ("images", "top1", "value_accuracy", "not_sure")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", default="web-app/models/student.json", help="model card of the served model")
    parser.add_argument("--data", default="../shared/data/coin-images", help="coin-images (its validation split)")
    parser.add_argument("--real-photos", default="../shared/data/real-photos-dev")
    parser.add_argument("--audit", default="reports/audit.json", help="its leak-free lists")
    parser.add_argument("--out", default="reports/benchmarks")
    parser.add_argument("--batch-size", type=int, default=32)
    return parser.parse_args(argv)


def true_currency_masks(labels: np.ndarray, class_ids: list[int]) -> np.ndarray:
    """(n, k): for each picture, the outputs of its own currency (the hint its owner would give)."""
    catalog = load_catalog()
    output_currency = np.array([catalog[class_id].currency for class_id in class_ids])
    return output_currency[None, :] == output_currency[np.asarray(labels)][:, None]


def figures(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int], not_sure: np.ndarray) -> dict:
    metrics = evaluation.classification_metrics(probabilities, labels, class_ids)
    metrics.pop("top5", None)
    if len(labels):
        metrics["not_sure"] = round(float(np.mean(not_sure)), 4)
    return metrics


def compare(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int], uncertain_below: float) -> dict:
    """Without and with the true-currency hint, overall and per currency; the errors by kind; the coins whose
    currency got too little probability (shown as not sure with the hint whatever their renormalised top)."""
    catalog = load_catalog()
    currency = np.array([catalog[class_ids[label]].currency for label in labels])
    hinted, mass = currency_hint.restrict(probabilities, true_currency_masks(labels, class_ids))
    low_mass = currency_hint.too_little_mass(mass)
    not_sure = {"without": probabilities.max(axis=1) < uncertain_below,
                "with": (hinted.max(axis=1) < uncertain_below) | low_mass}
    rows = {"without": probabilities, "with": hinted}

    def both(subset) -> dict:
        return {name: figures(rows[name][subset], labels[subset], class_ids, not_sure[name][subset])
                for name in ("without", "with")}

    predicted = probabilities.argmax(axis=1)
    wrong = predicted != labels
    other_currency = np.array([catalog[class_ids[p]].currency for p in predicted]) != currency
    right_with_hint = hinted.argmax(axis=1) == labels
    return {
        "overall": both(np.ones(len(labels), dtype=bool)),
        "per_currency": {code: both(currency == code) for code in sorted(set(currency.tolist()))},
        "errors_without_hint": {"wrong": int(wrong.sum()), "another_currency": int((wrong & other_currency).sum())},
        "too_little_mass": {"below": currency_hint.MIN_MASS, "images": int(low_mass.sum()),
                            "right_with_hint": int((low_mass & right_with_hint).sum())},
        "mass_of_true_currency_median": round(float(np.median(mass)), 4) if len(mass) else None,
    }


def write_reports(result: dict, out: Path) -> None:
    """``out``/currency_hint.json (everything) and currency_hint.md (the tables)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "currency_hint.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"# \"Coins from\" hint: {result['model']}", "",
        f"Measured by `{result['measured_by']}` at {result['measured_at']}. The hint for each picture is its own "
        "true currency; probabilities are renormalised over that currency's classes, as the service does. "
        f"\"Not sure\": top probability under {result['uncertain_below']} (with the hint, also when the model gave "
        f"the chosen currency under {currency_hint.MIN_MASS}). Per currency by the true class.", "",
    ]
    for name, compared in result["sets"].items():
        errors, low = compared["errors_without_hint"], compared["too_little_mass"]
        lines += [
            f"## {name}", "",
            f"Errors without the hint: {errors['wrong']}, of which {errors['another_currency']} another currency. "
            f"Pictures whose currency got under {low['below']} of the probability: {low['images']} "
            f"({low['right_with_hint']} of them right with the hint). Median probability of the true currency: "
            f"{compared['mass_of_true_currency_median']}.", "",
            "| currency | images | top-1 without | top-1 with | value acc. without | value acc. with "
            "| not sure without | not sure with |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for code, pair in [("all", compared["overall"]), *compared["per_currency"].items()]:
            without, with_hint = pair["without"], pair["with"]
            lines.append(
                f"| {'**all**' if code == 'all' else code} | {without['images']} | {without['top1']:.3f} | "
                f"{with_hint['top1']:.3f} | {without['value_accuracy']:.3f} | {with_hint['value_accuracy']:.3f} | "
                f"{without['not_sure']:.3f} | {with_hint['not_sure']:.3f} |")
        lines.append("")
    (out / "currency_hint.md").write_text("\n".join(lines), encoding="utf-8")


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_tensorflow_threads()
    card = read_card(args.card)
    classifier = ModelRegistry(card.path.parent).get(card.name)
    uncertain_below = classifier.card.uncertain_below or Settings.from_env().uncertain_below
    with evaluate.coin_search():  # the server's coin search cuts the pictures
        eval_sets = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))
    result = {
        "model": card.name, "card": args.card,
        "served": f"{type(classifier).__name__} ({Path(getattr(classifier, 'path', None) or card.model_path).name})",
        "measured_by": shlex.join(["python", "benchmarks/currency_hint.py",
                                   *(argv if argv is not None else sys.argv[1:])]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
        "uncertain_below": uncertain_below, "hint": "each picture's own true currency", "sets": {},
    }
    index_of = {class_id: index for index, class_id in enumerate(classifier.class_ids)}
    for eval_set in eval_sets:
        probabilities = evaluate.predict(classifier, eval_set.pictures, args.batch_size, eval_set.name)
        labels = np.array([index_of[class_id] for class_id in eval_set.class_ids], dtype=np.int64)
        name = eval_set.name
        if eval_set.leak_free is not None:  # catalogue splits: the leak-free part only
            probabilities, labels, name = probabilities[eval_set.leak_free], labels[eval_set.leak_free], f"{name}_leak_free"
        result["sets"][name] = compare(probabilities, labels, classifier.class_ids, uncertain_below)
        print(name, json.dumps(result["sets"][name]["overall"]), flush=True)
    write_reports(result, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
