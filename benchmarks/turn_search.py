"""Upright model + turn search, against a model trained on any angle: which reads turned coins better?

    python benchmarks/turn_search.py runs/models/student_baseline.json runs/models/student_upright.json \
        --data ../shared/data/coin-images --real-photos ../shared/data/real-photos-dev --audit reports/audit.json

A catalogue picture is upright; a photo of a coin is not. One answer is to train on every angle (the served
models); another is to train near upright (``views.py --max-turn 12``) and, at test time, look at the crop
turned ``--turns`` ways and trust the turns that look most like a coin the model knows. This script puts
both to the same test: every model sees every picture turned ``--turns`` evenly spaced ways, and the turns'
probabilities are combined by each rule below. Leak-free validation pictures are first turned by a seeded
random angle each (a photo has no "up"); since that angle is known there, the table also gives each
model's accuracy at the turn that undoes it (what a perfect orientation finder would reach). Rules are
compared on validation; the real photos are only measured.

Writes ``--out``/turn_search.json and turn_search.md.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import evaluate  # noqa: E402

from coinspotter.catalog import load_catalog  # noqa: E402
from coinspotter.inference import ModelRegistry, configure_tensorflow_threads  # noqa: E402
from coinspotter.modelcard import read_card  # noqa: E402
from coinspotter.tta import MAX_BATCH, turned, turned_views  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cards", nargs="+", help="model cards of single models")
    parser.add_argument("--data", required=True)
    parser.add_argument("--real-photos", required=True)
    parser.add_argument("--audit")
    parser.add_argument("--turns", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="the random angle each validation picture is turned by")
    parser.add_argument("--out", default="reports/benchmarks")
    return parser.parse_args(argv)


def combined(per_turn: np.ndarray) -> dict[str, np.ndarray]:
    """Each rule's probabilities (N × classes) from per-turn probabilities (N × turns × classes)."""
    quarter = max(1, per_turn.shape[1] // 4)
    best_turn = per_turn.max(axis=2).argmax(axis=1)
    return {
        "first turn only": per_turn[:, 0],
        "mean of all turns": per_turn.mean(axis=1),  # what the server's RotationAveraged does
        "mean of each class's best quarter of turns": np.sort(per_turn, axis=1)[:, -quarter:].mean(axis=1),
        "the most confident turn": per_turn[np.arange(len(per_turn)), best_turn],
    }


def per_turn_probabilities(classifier, pictures: list, turns: int, desc: str) -> np.ndarray:
    from tqdm import tqdm

    per_call = max(1, MAX_BATCH // turns)
    rows = []
    for start in tqdm(range(0, len(pictures), per_call), desc=desc, unit="batch", mininterval=5):
        chunk = pictures[start : start + per_call]
        views = [view for picture in chunk for view in turned_views(picture, turns)]
        rows.append(classifier.predict_images(views).reshape(len(chunk), turns, -1))
    return np.concatenate(rows)


def accuracy(probabilities: np.ndarray, truth: np.ndarray, class_ids: np.ndarray, mask=None) -> float:
    right = class_ids[probabilities.argmax(axis=1)] == truth
    return round(float(right[mask].mean() if mask is not None else right.mean()), 3)


def per_currency(probabilities: np.ndarray, truth: np.ndarray, class_ids: np.ndarray, currencies: np.ndarray) -> dict:
    return {currency: accuracy(probabilities, truth, class_ids, currencies == currency)
            for currency in sorted(set(currencies))}


def main(argv=None) -> int:
    args = parse_args(argv)
    cards = [read_card(path) for path in args.cards]
    if len({tuple(card.class_ids) for card in cards}) != 1:
        raise SystemExit("the models answer in different class orders; their turns cannot be averaged here")
    configure_tensorflow_threads()
    catalog = load_catalog()
    with evaluate.coin_search():  # the server's coin search cuts the pictures
        validation, real = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))
    angles = np.random.default_rng(args.seed).uniform(0, 360, len(validation.pictures))
    turned_validation = [turned(picture, angle) for picture, angle in zip(validation.pictures, angles)]
    # the turn that undoes a picture's angle: PIL turns counter-clockwise, turn k by 360·k/turns degrees
    undoing_turn = np.round((360 - angles) / (360 / args.turns)).astype(int) % args.turns
    val_truth, real_truth = np.array(validation.class_ids), np.array(real.class_ids)
    currencies = np.array([catalog[class_id].currency for class_id in real.class_ids])
    result = {
        "measured_by": "python benchmarks/turn_search.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%d %H:%M"), "turns": args.turns, "models": {},
    }
    chosen_val, chosen_real = [], []  # each model's probabilities under its rule best on validation
    for card in cards:
        served = ModelRegistry(card.path.parent).get(card.name)
        classifier = getattr(served, "inner", served)  # the bare model: the turns are this script's
        class_ids = np.array(classifier.class_ids)
        val_turns = per_turn_probabilities(classifier, turned_validation, args.turns, f"{card.name} validation")
        real_turns = per_turn_probabilities(classifier, real.pictures, args.turns, f"{card.name} real photos")
        val_rules, real_rules = combined(val_turns), combined(real_turns)
        at_true_turn = val_turns[np.arange(len(val_turns)), undoing_turn]
        result["models"][card.name] = {
            "max_turn_degrees": _max_turn(card),
            "validation_leak_free_at_the_undoing_turn": accuracy(at_true_turn, val_truth, class_ids, validation.leak_free),
            "rules": {
                rule: {
                    "validation_leak_free_top1": accuracy(val_rules[rule], val_truth, class_ids, validation.leak_free),
                    "real_photos_top1": accuracy(real_rules[rule], real_truth, class_ids),
                    "real_photos_top1_per_currency": per_currency(real_rules[rule], real_truth, class_ids, currencies),
                } for rule in val_rules},
        }
        print(card.name, json.dumps(result["models"][card.name]), flush=True)
        rules = result["models"][card.name]["rules"]
        best = max(rules, key=lambda rule: rules[rule]["validation_leak_free_top1"])
        chosen_val.append(val_rules[best])
        chosen_real.append(real_rules[best])
        result["models"][card.name]["rule_best_on_validation"] = best
    if len(cards) > 1:
        mean_val, mean_real = np.mean(chosen_val, axis=0), np.mean(chosen_real, axis=0)
        result["average_of_all"] = {
            "validation_leak_free_top1": accuracy(mean_val, val_truth, class_ids, validation.leak_free),
            "real_photos_top1": accuracy(mean_real, real_truth, class_ids),
            "real_photos_top1_per_currency": per_currency(mean_real, real_truth, class_ids, currencies),
        }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "turn_search.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    write_markdown(result, out / "turn_search.md")
    return 0


def _max_turn(card) -> float:
    """How far the card's training views were turned (180: any angle), from the views' own notes."""
    notes = (card.training or {}).get("views", {}).get("augmentation", "")
    text = json.dumps(notes)
    marker = "max_turn_degrees="
    return float(text.split(marker)[1].split(")")[0]) if marker in text else 180.0


def write_markdown(result: dict, path: Path) -> None:
    lines = [f"# Upright model + turn search ({result['turns']} turns)", "",
             f"Measured by `{result['measured_by']}` at {result['measured_at']}. Validation pictures were each "
             "turned by a seeded random angle first. Top-1 = value accuracy here (no two classes share a value).", "",
             "| model | trained turned up to | rule | leak-free val top-1 | real top-1 | real per currency |",
             "|---|---:|---|---:|---:|---|"]
    for name, model in result["models"].items():
        for rule, row in model["rules"].items():
            per_currency = ", ".join(f"{c} {v:.3f}" for c, v in row["real_photos_top1_per_currency"].items())
            lines.append(f"| {name} | {model['max_turn_degrees']:g}° | {rule} | {row['validation_leak_free_top1']:.3f} | "
                         f"{row['real_photos_top1']:.3f} | {per_currency} |")
        lines.append(f"| {name} | {model['max_turn_degrees']:g}° | at the turn undoing the known angle (validation only) | "
                     f"{model['validation_leak_free_at_the_undoing_turn']:.3f} | – | – |")
    if "average_of_all" in result:
        row = result["average_of_all"]
        per_currency = ", ".join(f"{c} {v:.3f}" for c, v in row["real_photos_top1_per_currency"].items())
        lines.append(f"| all above averaged | | each its rule best on validation | {row['validation_leak_free_top1']:.3f} | "
                     f"{row['real_photos_top1']:.3f} | {per_currency} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
