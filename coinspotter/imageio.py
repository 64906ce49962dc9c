"""Decoding and validating uploaded image bytes into an upright RGB picture.

Every failure becomes an ``ImageError`` with a sentence a person can read; the caller reports it for
that file alone and carries on with the others. Memory and time stay bounded whatever the bytes claim:
size and pixel count are checked before any pixel is decoded, large JPEGs are decoded at a reduced scale,
and every picture comes out at most ``WORKING_SIDE`` pixels on its longer side.
"""
from __future__ import annotations

import io
import math
import warnings

import numpy as np
from PIL import Image, ImageOps

from .config import Limits, megabytes

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}  # MPO: multi-picture JPEGs from some phones
ACCEPTED_DESCRIPTION = "JPEG, PNG, WebP, GIF or BMP"
# Longer side of every decoded picture. The coin finder searches at 512 px and the classifier sees crops of
# 224-300 px, so 4096 px keeps a coin spanning 1/15 of a 48 MP photo's width above the classifier's size,
# and holds a decoded picture to ~50 MB instead of ~180 MB for 60 MP. Catalogue and test photos are smaller.
WORKING_SIDE = 4096
MIN_SIDE = 16
NOT_AN_IMAGE = f"This is not an image we can read; please upload a {ACCEPTED_DESCRIPTION} photo."


class ImageError(ValueError):
    """An upload that cannot be used as a photo; the message is safe to show to the user."""


def check_file_size(byte_count: int, limits: Limits = Limits()) -> None:
    """ImageError when a file of ``byte_count`` bytes is too large to be looked at (before reading it all)."""
    if byte_count > limits.max_bytes_per_file:
        raise ImageError(f"The file is {megabytes(byte_count)}; "
                         f"the limit is {megabytes(limits.max_bytes_per_file)} per photo.")


def decode_image(data: bytes, limits: Limits = Limits()) -> Image.Image:
    """Bytes of an image file -> upright RGB ``PIL.Image`` (EXIF orientation applied), at most WORKING_SIDE
    pixels on its longer side.

    Checks size, format and pixel count *before* decoding the pixels, so a decompression bomb is
    refused from its header alone.
    """
    if not data:
        raise ImageError("The file is empty.")
    check_file_size(len(data), limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        # Pillow's own guard, from the header, before ours: it stops every image over Image.MAX_IMAGE_PIXELS
        # (89 MP), so a max_pixels above that has no effect
        raise ImageError(f"The image is over {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels; "
                         f"the limit is {limits.max_pixels / 1e6:.0f} megapixels.") from None
    except Exception:  # not an image, or one of the zoo of errors Pillow raises on hostile headers
        raise ImageError(NOT_AN_IMAGE) from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{image.format} files are not supported; please upload a {ACCEPTED_DESCRIPTION} photo.")
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            f"The image is {width}×{height} pixels; the limit is {limits.max_pixels / 1e6:.0f} megapixels."
        )
    if width < MIN_SIDE or height < MIN_SIDE:
        raise ImageError(f"The image is only {width}×{height} pixels; a coin needs a larger photo.")
    try:
        image.seek(0)  # animated GIF/WebP: the first frame
        # JPEG only (a no-op elsewhere): let the decoder scale by 1/2, 1/4 or 1/8 while it still covers WORKING_SIDE
        image.draft(None, working_size(image.size))
        image.load()
        image = to_rgb(upright(image))
        if max(image.size) > WORKING_SIDE:
            image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS, reducing_gap=2.0)
    except Exception:  # cut short, corrupt data, a mode Pillow cannot convert: this file alone fails
        raise ImageError("The image file is damaged or cut short; please upload it again.") from None
    return image


def working_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` scaled so that its longer side is at most WORKING_SIDE (the shape kept)."""
    scale = min(1.0, WORKING_SIDE / max(size))
    return max(1, math.ceil(size[0] * scale)), max(1, math.ceil(size[1] * scale))


def upright(image: Image.Image) -> Image.Image:
    """The picture turned as its EXIF orientation says; a damaged EXIF block costs the rotation, not the photo."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is flattened onto white, 16-bit data scaled to 8 bits.

    Each conversion holds at most about two copies of the picture at once (8-bit where it can), so a large
    photo costs a few hundred MB at worst, not gigabytes of float arrays.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image)
        top = 65535 if image.mode.startswith("I;16") or array.max() > 255 else 255
        # rounds v * 255 / top in integers: uint32 is twice a 16-bit picture's size, float64 would be four times
        scaled = (np.clip(array, 0, top).astype(np.uint32) * 255 + top // 2) // top
        return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float32)
        span = max(float(array.max() - array.min()), 1e-9)
        return Image.fromarray(((array - array.min()) * (255 / span)).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))  # alpha-blends onto the white in place
        return flat
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
