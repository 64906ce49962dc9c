"""Decoding and validating uploaded image bytes into an upright RGB picture.

Every failure becomes an ``ImageError`` with a sentence a person can read; the caller reports it for
that file alone and carries on with the others.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .config import Limits

ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}  # MPO: multi-picture JPEGs from some phones
ACCEPTED_DESCRIPTION = "JPEG, PNG, WebP, GIF or BMP"


class ImageError(ValueError):
    """An upload that cannot be used as a photo; the message is safe to show to the user."""


def decode_image(data: bytes, limits: Limits = Limits()) -> Image.Image:
    """Bytes of an image file -> upright RGB ``PIL.Image`` (EXIF orientation applied).

    Checks size, format and pixel count *before* decoding the pixels, so a decompression bomb is
    refused from its header alone.
    """
    if not data:
        raise ImageError("The file is empty.")
    if len(data) > limits.max_bytes_per_file:
        raise ImageError(
            f"The file is {len(data) / 1e6:.1f} MB; the limit is {limits.max_bytes_per_file / 1e6:.0f} MB per photo."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageError(f"This is not an image we can read; please upload a {ACCEPTED_DESCRIPTION} photo.") from None
    except Exception:  # Pillow raises a zoo of errors on hostile headers
        raise ImageError(f"This is not an image we can read; please upload a {ACCEPTED_DESCRIPTION} photo.") from None
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(f"{image.format} files are not supported; please upload a {ACCEPTED_DESCRIPTION} photo.")
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            f"The image is {width}×{height} pixels; the limit is {limits.max_pixels / 1e6:.0f} megapixels."
        )
    if width < 16 or height < 16:
        raise ImageError(f"The image is only {width}×{height} pixels; a coin needs a larger photo.")
    try:
        image.seek(0)  # animated GIF/WebP: the first frame
        image.load()
        image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except ImageError:
        raise
    except Exception:
        raise ImageError("The image file is damaged or cut short; please upload it again.") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> RGB. Transparency is flattened onto white, 16-bit data scaled to 8 bits."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(array.max() - array.min(), 1e-9)
        return Image.fromarray(((array - array.min()) / span * 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV
