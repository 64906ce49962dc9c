"""Accuracy figures shared by the training scripts, the evaluation report and the model cards."""
from __future__ import annotations

from collections import Counter

import numpy as np

from .catalog import load_catalog


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int]) -> dict:
    """Top-1, top-5 and value accuracy (currency and face value both right: what a conversion needs).

    ``labels`` are output indices; ``class_ids[i]`` is the class of output ``i``.
    """
    probabilities = np.asarray(probabilities)
    labels = np.asarray(labels)
    count = int(len(labels))
    if count == 0:
        return {"images": 0}
    predicted = probabilities.argmax(axis=1)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    catalog = load_catalog()
    worth = [(catalog[c].currency, catalog[c].face_value) for c in class_ids]
    value_right = [worth[p] == worth[t] for p, t in zip(predicted, labels)]
    return {
        "images": count,
        "top1": round(float(np.mean(predicted == labels)), 4),
        "top5": round(float(np.mean([t in row for t, row in zip(labels, top5)])), 4),
        "value_accuracy": round(float(np.mean(value_right)), 4),
    }


def correct_mask(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.asarray(probabilities).argmax(axis=1) == np.asarray(labels)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> dict:
    """ECE over ``bins`` equal-width confidence bins (lower, upper], with each bin's figures for a
    reliability diagram: the gap between how sure the model says it is and how often it is right."""
    probabilities = np.asarray(probabilities)
    if len(probabilities) == 0:
        return {"ece": None, "bins": []}
    confidence = probabilities.max(axis=1)
    correct = correct_mask(probabilities, labels)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.digitize(confidence, edges[1:-1], right=True)  # confidence 0 falls in the first bin
    ece, rows = 0.0, []
    for number in range(bins):
        inside = which == number
        count = int(inside.sum())
        row = {"lower": round(float(edges[number]), 4), "upper": round(float(edges[number + 1]), 4), "images": count}
        if count:
            row["confidence"] = round(float(confidence[inside].mean()), 4)
            row["accuracy"] = round(float(correct[inside].mean()), 4)
            ece += count / len(confidence) * abs(float(correct[inside].mean()) - float(confidence[inside].mean()))
        rows.append(row)
    return {"ece": round(ece, 4), "bins": rows}


def per_class_accuracy(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int]) -> dict[int, dict]:
    """class id -> images and how many were right, for the classes that have images."""
    correct = correct_mask(probabilities, labels)
    figures: dict[int, dict] = {}
    for label, right in zip(np.asarray(labels), correct):
        row = figures.setdefault(class_ids[int(label)], {"images": 0, "correct": 0})
        row["images"] += 1
        row["correct"] += int(right)
    for row in figures.values():
        row["accuracy"] = round(row["correct"] / row["images"], 4)
    return dict(sorted(figures.items()))


def confused_pairs(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int], top: int = 15) -> list[dict]:
    """The ``top`` most frequent (true class, predicted class) mistakes, most frequent first."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    counts = Counter((class_ids[int(t)], class_ids[int(p)]) for t, p in zip(np.asarray(labels), predicted) if t != p)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:top]
    return [{"true": true, "predicted": guess, "count": count} for (true, guess), count in ranked]


def metrics_by_currency(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int]) -> dict[str, dict]:
    """:func:`classification_metrics` for the images of each currency (by the true class)."""
    catalog = load_catalog()
    probabilities, labels = np.asarray(probabilities), np.asarray(labels)
    currency = np.array([catalog[class_ids[int(label)]].currency for label in labels])
    return {
        code: classification_metrics(probabilities[currency == code], labels[currency == code], class_ids)
        for code in sorted(set(currency.tolist()))
    }
