"""The one preprocessing function shared by training and serving.

A model receives square RGB pictures with values 0..255 (float32); the scaling each backbone wants
(MobileNetV2 and Xception both want [-1, 1]) is a layer inside the saved model, so the file carries it
and nobody can feed the model the wrong range.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = Image.Resampling.BILINEAR
PREPROCESSING_NAME = "letterbox-rgb-0-255"  # what a model card's "preprocessing" field names


def letterbox(image: Image.Image, size: int) -> Image.Image:
    """Fit the whole picture into a ``size``×``size`` square without distorting it.

    Coins are round: stretching a wide picture would make them ellipses the model never saw. The
    empty margin is filled with the picture's own mean border colour, so it reads as background.
    """
    image = image.convert("RGB")
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = image.resize(new_size, RESAMPLE)
    if new_size == (size, size):
        return resized
    array = np.asarray(image)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).mean(axis=0)
    canvas = Image.new("RGB", (size, size), tuple(int(v) for v in border))
    canvas.paste(resized, ((size - new_size[0]) // 2, (size - new_size[1]) // 2))
    return canvas


def to_model_input(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> float32 array (size, size, 3), RGB 0..255: what every bundled model takes."""
    return np.asarray(letterbox(image, size), dtype=np.float32)


def batch_model_input(images: list[Image.Image], size: int) -> np.ndarray:
    if not images:
        return np.zeros((0, size, size, 3), dtype=np.float32)
    return np.stack([to_model_input(image, size) for image in images])
