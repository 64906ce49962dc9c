"""Tiny real data for the tests: coloured coin pictures and a small real Keras model saved to .h5.

The model is built so its answer is known: it averages the picture's colour and maps red, green and
blue to three classes, so a red coin must come out as the first class.
"""
from __future__ import annotations

import contextlib
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


def coins_picture(colours: list[str], side: int = 200, background=(250, 250, 250)) -> Image.Image:
    """One photo of several coins side by side (``coin_picture``s of ``side`` pixels), in reading order."""
    image = Image.new("RGB", (side * len(colours), side), background)
    for index, colour in enumerate(colours):
        image.paste(coin_picture(colour, (side, side), background), (index * side, 0))
    return image


def load_script(relative_path: str):
    """A script of the repository that is not in a package (``benchmarks/finder_speed.py``) as a module."""
    import importlib.util
    import sys

    from coinspotter.config import REPO_ROOT

    path = REPO_ROOT / relative_path
    name = f"script_{path.parent.name}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a dataclass in the script looks its module up there
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def imported_web_app(models: Path, module_name: str, **settings: str):
    """web-app/app.py imported as the server imports it, under ``module_name``, with the offline rate snapshot
    and the given COINSPOTTER_* ``settings`` (``MAX_FILES="5"`` sets COINSPOTTER_MAX_FILES)."""
    import importlib.util
    import sys

    import pytest

    from coinspotter.config import REPO_ROOT

    patch = pytest.MonkeyPatch()
    patch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    patch.setenv("COINSPOTTER_RATE_PROVIDERS", "none")  # the offline snapshot
    patch.setenv("COINSPOTTER_RATE_CACHE", "off")
    for name, value in settings.items():
        patch.setenv(f"COINSPOTTER_{name}", value)
    spec = importlib.util.spec_from_file_location(module_name, REPO_ROOT / "web-app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        patch.undo()
        sys.modules.pop(module_name, None)


def components(component):
    """Every component of a Dash layout tree (as ``{"type", "namespace", "props"}`` dicts), depth first."""
    stack = [component]
    while stack:
        item = stack.pop()
        if hasattr(item, "to_plotly_json"):
            item = item.to_plotly_json()
        if isinstance(item, dict) and "props" in item and "type" in item:
            yield item
            stack.extend(reversed(list(item["props"].values())))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))


def texts(component) -> list[str]:
    """Every string a Dash layout tree shows as text, in reading order."""
    found = []
    for item in components(component):
        children = item["props"].get("children")
        children = children if isinstance(children, list) else [children]
        found.extend(child for child in children if isinstance(child, str))
    return found


def data_url(content: bytes) -> str:
    """``content`` as dcc.Upload hands a file to the page's callbacks."""
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(content).decode()
