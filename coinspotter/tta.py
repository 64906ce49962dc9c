"""Test-time augmentation: a coin has no "up", so the model can look at it turned several ways.

A photo of a coin may come in at any angle; the training views were turned at random, but a network
still sees some angles better than others. Averaging its probabilities over a few evenly spaced turns of
the (square, coin-centred) crop smooths that out, at the price of one forward pass per turn. Whether
that price pays is measured by ``benchmarks/tta.py``; a model card turns it on with ``tta_rotations``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .preprocessing import RESAMPLE

MAX_BATCH = 16  # the most pictures (turns included) given to the network in one call


def turned_views(image: Image.Image, rotations: int) -> list[Image.Image]:
    """``rotations`` copies of the picture turned by evenly spaced angles (the first one not turned)."""
    image = image.convert("RGB")
    return [turned(image, 360.0 * step / rotations) for step in range(rotations)]


def turned(image: Image.Image, angle: float) -> Image.Image:
    """The picture turned counter-clockwise by ``angle`` degrees, the same size.

    Right angles are exact pixel moves; other angles resample and fill the corners with the picture's
    own mean border colour, which on a localiser crop is background, as in the training views.
    """
    if image.mode != "RGB":  # turned_views hands over an RGB copy once; converting again would copy per turn
        image = image.convert("RGB")
    if angle % 90 == 0:
        return image.rotate(angle, expand=False) if angle % 360 else image
    array = np.asarray(image)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).mean(axis=0)
    return image.rotate(angle, resample=RESAMPLE, expand=False, fillcolor=tuple(int(v) for v in border))


class RotationAveraged:
    """A classifier that averages another's probabilities over ``rotations`` turns of every picture.

    Duck-types :class:`coinspotter.inference.Classifier` (``card``, ``class_ids``, ``predict_images``)
    and keeps the wrapped one as ``inner``, so evaluation can still reach the Keras model behind it.
    """

    def __init__(self, inner, rotations: int, temperature: float = 1.0):
        if rotations < 1:
            raise ValueError(f"rotations must be at least 1, got {rotations}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.inner = inner
        self.rotations = rotations
        # An average over turns is softer than each turn's answer (turns that disagree spread it out), so the
        # model's own calibration no longer holds; a temperature fitted with the turns in the loop restores it.
        self.temperature = temperature

    @property
    def card(self):
        return self.inner.card

    @property
    def class_ids(self) -> list[int]:
        return self.inner.class_ids

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        if self.rotations == 1 or not images:
            return self.inner.predict_images(images)
        # Pictures go to the network a few at a time, their turns in one batch: 8 photos of 8 turns in one call
        # would be a batch of 64, and a network's working memory grows with its batch (measured: the server
        # went from 1.0 to 1.8 GB after a run of 8-photo requests); per picture the time is the same.
        per_call = max(1, MAX_BATCH // self.rotations)
        rows = []
        for start in range(0, len(images), per_call):
            chunk = images[start : start + per_call]
            views = [view for image in chunk for view in turned_views(image, self.rotations)]
            probabilities = self.inner.predict_images(views)  # the turns of picture i are rows i*r .. i*r+r-1
            rows.append(probabilities.reshape(len(chunk), self.rotations, -1).mean(axis=1))
        return temperature_scaled(np.concatenate(rows), self.temperature).astype(np.float32)


def temperature_scaled(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their logarithms divided by ``temperature`` (below 1: more confident), rows summing to 1.

    The same as dividing the logits by ``temperature``: log p equals the logits up to a per-row constant.
    """
    if temperature == 1.0:
        return probabilities
    scaled = np.log(np.clip(probabilities, 1e-12, 1.0)) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)
