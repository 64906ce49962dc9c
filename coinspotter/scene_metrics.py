"""Scoring coin boxes against the true ones, as the coin-scenes evaluation and the finder's tuning count them.

A true coin is found when a box overlaps it with IoU >= 0.5; each box may match one coin, and pairs are
matched best IoU first (greedy). Boxes are (x0, y0, x1, y1) in pixels.
"""
from __future__ import annotations

from collections.abc import Sequence

MATCH_IOU = 0.5

Box = Sequence[float]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Box], found: Sequence[Box], min_iou: float = MATCH_IOU) -> tuple[int, int]:
    """(true coins found, boxes given): greedy one-to-one matching at IoU >= ``min_iou``."""
    pairs = sorted(((iou(t, f), i, j) for i, t in enumerate(truth) for j, f in enumerate(found)), reverse=True)
    used_truth, used_found = set(), set()
    for value, i, j in pairs:
        if value < min_iou:
            break
        if i not in used_truth and j not in used_found:
            used_truth.add(i)
            used_found.add(j)
    return len(used_truth), len(found)
