"""Finding the coins in a photo (placeholder: the whole picture is one coin).

Interface used by the service and by training: ``locate_coins(image) -> LocalizationResult``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float


@dataclass(frozen=True)
class CoinBox:
    """One coin found in a picture: a square box (pixel coordinates of the upright image)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0  # how sure the localiser is that this is a coin, 0..1

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]


@dataclass
class LocalizationResult:
    boxes: list[CoinBox] = field(default_factory=list)
    method: str = "whole-image"  # how the boxes were found, for logs and the API

    @property
    def found(self) -> bool:
        return bool(self.boxes)


def locate_coins(image: Image.Image) -> LocalizationResult:
    width, height = image.size
    return LocalizationResult([CoinBox(0, 0, width, height)], method="whole-image")


def crop_box(image: Image.Image, box: CoinBox) -> Image.Image:
    """The picture inside ``box``; parts of the box outside the picture are filled with its edge colour."""
    return image.crop((box.x0, box.y0, box.x1, box.y1)) if _inside(image, box) else _padded_crop(image, box)


def _inside(image: Image.Image, box: CoinBox) -> bool:
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= image.width and box.y1 <= image.height


def _padded_crop(image: Image.Image, box: CoinBox) -> Image.Image:
    import numpy as np

    array = np.asarray(image)
    pad = max(0, -box.x0, -box.y0, box.x1 - image.width, box.y1 - image.height)
    padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return Image.fromarray(padded[box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad])
