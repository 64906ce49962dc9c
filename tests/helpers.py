"""Tiny real data for the tests: coloured coin pictures and a small real Keras model saved to .h5.

The model is built so its answer is known: it averages the picture's colour and maps red, green and
blue to three classes, so a red coin must come out as the first class.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# output index -> class id: 1 Cent (Australia), 1 Euro, 1/4 Dollar (USA)
TINY_CLASS_IDS = [1, 60, 209]
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
EXPECTED_CLASS = {"red": 1, "green": 60, "blue": 209}


def coin_picture(colour: str = "red", size: tuple[int, int] = (200, 200), background=(250, 250, 250)) -> Image.Image:
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    radius = int(min(size) * 0.4)
    cx, cy = width // 2, height // 2
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=COLOURS[colour], outline=(60, 60, 60), width=3)
    return image


def encode(image: Image.Image, format: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def build_colour_model(input_size: int = 32):
    """A real Keras network (rescaling, pooling, dense softmax) whose weights map colour to class."""
    import keras

    inputs = keras.Input((input_size, input_size, 3), name="picture")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("probabilities").set_weights([np.eye(3, dtype="float32") * 8.0, np.zeros(3, dtype="float32")])
    return model


def write_model_dir(folder: Path, with_ensemble: bool = True) -> Path:
    """student.h5/.json (and an ensemble of two members when asked) in ``folder``."""
    from coinspotter.modelcard import ModelCard

    folder.mkdir(parents=True, exist_ok=True)
    names = ["student"] + (["member_a", "member_b"] if with_ensemble else [])
    for name in names:
        build_colour_model().save(folder / f"{name}.h5")
        ModelCard(
            name=name, display_name=f"Tiny {name}", architecture="test colour model",
            class_ids=TINY_CLASS_IDS, input_size=32, file=f"{name}.h5",
        ).save(folder / f"{name}.json")
    if with_ensemble:
        ModelCard(
            name="ensemble", display_name="Tiny ensemble", architecture="average of member_a and member_b",
            class_ids=TINY_CLASS_IDS, input_size=32, members=["member_a", "member_b"],
        ).save(folder / "ensemble.json")
    return folder
