"""What the page draws from an uploaded photo, server-side with Pillow: a thumbnail per coin and, for a photo
holding several coins, one downscaled copy with each coin outlined and numbered as its card is.

Everything comes back as a ``data:image/jpeg`` URL made here from decoded pixels, never from the upload's
own bytes or type, so nothing the client sent reaches an ``src`` attribute.
"""
from __future__ import annotations

import base64
import io

from PIL import Image, ImageDraw, ImageFont

from coinspotter.localize import CoinBox, crop_box

THUMBNAIL_PX = 160
OVERVIEW_PX = 720  # longer side: sharp on a phone's full width and on a desktop column, ~40-80 KB as JPEG
MARK = (13, 110, 253)  # the page's primary blue: outlines and number discs, as the number on each card
HALO = (255, 255, 255)  # a white line around the blue one, so the mark stands out on dark tables and on wood


def data_url(image: Image.Image, quality: int = 85) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def coin_thumbnail(image: Image.Image, box: CoinBox) -> str:
    crop = crop_box(image, box)
    crop.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    return data_url(crop)


def numbered_overview(image: Image.Image, boxes: list[CoinBox]) -> str:
    """The photo at most OVERVIEW_PX on its longer side, coin ``n`` (``boxes[n - 1]``) circled and labelled n."""
    scale = min(1.0, OVERVIEW_PX / max(image.size))
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    view = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0) if scale < 1 else image.copy()
    draw = ImageDraw.Draw(view)
    line = max(2, round(max(size) / 240))
    label_radius = max(14, round(max(size) / 28))  # still legible when a phone shows the picture at half size
    font = ImageFont.load_default(size=round(label_radius * 1.3))
    for number, box in enumerate(boxes, start=1):
        outline = _outline(box, scale, gap=line + 1)  # just outside the rim, which stays visible
        shape = draw.ellipse if box.radius is not None else draw.rectangle
        shape(_grown(outline, 2), outline=HALO, width=line + 4)
        shape(outline, outline=MARK, width=line)
        # the number on the outline's upper left, kept inside the picture
        x = min(max(outline[0] + label_radius * 0.6, label_radius), size[0] - label_radius)
        y = min(max(outline[1] + label_radius * 0.6, label_radius), size[1] - label_radius)
        draw.ellipse((x - label_radius, y - label_radius, x + label_radius, y + label_radius),
                     fill=MARK, outline=HALO, width=2)
        draw.text((x, y), str(number), fill=(255, 255, 255), font=font, anchor="mm")
    return data_url(view, quality=80)


def _outline(box: CoinBox, scale: float, gap: float) -> tuple[float, float, float, float]:
    """The coin's circle where the localiser found one, else its box; in the overview's pixels, ``gap`` wider."""
    if box.radius is not None and box.cx is not None and box.cy is not None:
        corners = (box.cx - box.radius, box.cy - box.radius, box.cx + box.radius, box.cy + box.radius)
        return _grown(tuple(value * scale for value in corners), gap)
    return box.x0 * scale, box.y0 * scale, box.x1 * scale, box.y1 * scale


def _grown(corners: tuple[float, float, float, float], by: float) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = corners
    return x0 - by, y0 - by, x1 + by, y1 + by
