"""Accuracy figures shared by the training scripts, the evaluation report and the model cards."""
from __future__ import annotations

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
