"""Synthetic multi-coin scenes with known circles, for the localiser's tests and benchmark.

A scene is a background (plain, gradient, noise texture, wood stripes, clutter, skin) with N round coin
cut-outs pasted on it at random sizes and places, optionally in touching or overlapping pairs, with drop
shadows and uneven lighting. Coins come from given pictures (a circle cut from each) or, when none are
given, are drawn procedurally (metal colour, raised rim, relief strokes), so tests need no data.
Everything random is drawn from the ``numpy.random.Generator`` passed in: same seed, same scene.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from .localize import Circle

BACKGROUNDS = ("plain", "gradient", "noise", "wood", "clutter", "skin")

# Metal colours (RGB) of real coins: copper, brass/gold, nickel/silver, dark bronze, aluminium.
METALS = np.array(
    [[184, 115, 60], [205, 170, 70], [190, 190, 185], [120, 90, 55], [215, 215, 220]], dtype=np.float32
)


@dataclass
class CoinCutout:
    """A square RGB picture of one coin whose circle is the inscribed one; ``alpha`` is 0..1 outside..inside."""

    rgb: np.ndarray  # (s, s, 3) float32 0..255
    alpha: np.ndarray  # (s, s) float32 0..1


@dataclass
class SyntheticScene:
    image: Image.Image
    circles: list[Circle]  # ground truth, in the order the coins were pasted (later ones lie on top)
    background: str
    touching: bool  # whether the scene holds a touching or overlapping pair
    extras: dict = field(default_factory=dict)  # what else was applied (shadows, lighting), for reports


def cutout_from_picture(picture: Image.Image, circle: Circle, inset: float = 0.03) -> CoinCutout:
    """Cut the coin inside ``circle`` out of ``picture``; ``inset`` trims the rim so no background rides along."""
    array = np.asarray(picture.convert("RGB"), dtype=np.float32)
    radius = circle.r * (1.0 - inset)
    side = int(np.ceil(2 * radius)) | 1
    half = side / 2.0
    # Bilinear resampling onto a grid centred on the circle; pixels outside the picture repeat its edge.
    map_x, map_y = np.meshgrid(
        np.arange(side, dtype=np.float32) - half + 0.5 + circle.cx,
        np.arange(side, dtype=np.float32) - half + 0.5 + circle.cy,
    )
    rgb = cv2.remap(array, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return CoinCutout(rgb, _disc_alpha(side, radius))


def draw_coin(rng: np.random.Generator, side: int = 129) -> CoinCutout:
    """A procedurally drawn coin: metal disc with light falloff, raised rim, relief strokes and a legend ring."""
    radius = side / 2.0
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - radius + 0.5
    dist = np.hypot(xx, yy) / radius
    # Brightness varies a lot between coins (wear, patina, exposure), hue only a little.
    metal = METALS[rng.integers(len(METALS))] * rng.uniform(0.75, 1.1) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    rgb = np.empty((side, side, 3), np.float32)
    rgb[:] = metal
    if rng.random() < 0.25:  # bimetallic (2 euro style): a core of another metal
        core = METALS[rng.integers(len(METALS))]
        rgb[dist < rng.uniform(0.55, 0.7)] = core
    # Directional light: one side of the coin brighter than the other.
    light = rng.uniform(0, 2 * np.pi)
    rgb *= (1.0 + 0.18 * (xx * np.cos(light) + yy * np.sin(light)) / radius)[..., None]
    relief = np.zeros((side, side), np.float32)
    rim_inner = rng.uniform(0.84, 0.92)
    relief[(dist > rim_inner) & (dist <= 1.0)] = rng.uniform(20, 45)  # the raised rim catches light
    cv2.circle(relief, (side // 2, side // 2), int(radius * (rim_inner - 0.02)), -30.0, max(1, side // 90))
    for _ in range(rng.integers(6, 16)):  # design strokes: portrait, numerals, emblems
        points = (rng.uniform(-0.55, 0.55, (rng.integers(2, 5), 2)) * radius + radius).astype(np.int32)
        cv2.polylines(relief, [points], False, float(rng.uniform(-50, 50)), int(rng.integers(1, max(2, side // 25))))
    for angle in np.linspace(0, 2 * np.pi, rng.integers(12, 30), endpoint=False):  # the legend: letters round the rim
        at = (int(radius + 0.75 * radius * np.cos(angle)), int(radius + 0.75 * radius * np.sin(angle)))
        cv2.circle(relief, at, max(1, side // 45), float(rng.uniform(-40, 40)), -1)
    relief = cv2.GaussianBlur(relief, (0, 0), max(0.6, side / 200))
    rgb += relief[..., None] + rng.normal(0, 4, (side, side, 1)).astype(np.float32)
    return CoinCutout(np.clip(rgb, 0, 255), _disc_alpha(side, radius))


def make_background(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """A coin-free background (height, width, 3) float32 0..255 of the given kind (one of ``BACKGROUNDS``)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 235, 3).astype(np.float32)
    if kind == "plain":
        canvas = np.broadcast_to(base, (height, width, 3)).copy()
    elif kind == "gradient":
        other = rng.uniform(30, 235, 3).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xx * np.cos(angle) + yy * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        canvas = base + (other - base) * ramp[..., None]
    elif kind == "noise":  # fabric, carpet, stone: noise summed over several scales
        canvas = np.broadcast_to(base, (height, width, 3)).copy()
        for scale in (1, 4, 16):
            layer = rng.normal(0, 1, (height // scale + 1, width // scale + 1, 3)).astype(np.float32)
            layer = cv2.resize(layer, (width, height), interpolation=cv2.INTER_CUBIC)
            canvas += layer * rng.uniform(8, 22)
    elif kind == "wood":
        wood = np.array([rng.uniform(110, 190), rng.uniform(70, 120), rng.uniform(30, 70)], np.float32)
        period = rng.uniform(8, 30)
        # Grain lines bend slowly and gently: a warp field varying over ~200 px, shifting a line by ~1 period.
        warp = cv2.resize(rng.normal(0, 1, (height // 200 + 2, width // 200 + 2)).astype(np.float32), (width, height),
                          interpolation=cv2.INTER_CUBIC)
        vertical = rng.random() < 0.5
        along = (xx if vertical else yy) + warp * period
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
        fine = rng.normal(0, 1, (height, width)).astype(np.float32)
        fine = cv2.GaussianBlur(fine, (0, 0), sigmaX=0.6 if vertical else 6, sigmaY=6 if vertical else 0.6)
        canvas = wood * (0.75 + 0.35 * grain + 0.1 * fine)[..., None]
    elif kind == "clutter":  # a desk: papers, pens, printed lines, cables (no round things: those count as coins)
        canvas = np.broadcast_to(base, (height, width, 3)).copy()
        for _ in range(rng.integers(10, 30)):
            colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
            if rng.random() < 0.5:
                x0, y0 = rng.integers(0, width), rng.integers(0, height)
                cv2.rectangle(canvas, (int(x0), int(y0)), (int(x0 + rng.integers(10, width // 3)),
                              int(y0 + rng.integers(10, height // 3))), colour, -1 if rng.random() < 0.6 else 2)
            else:
                points = np.stack([rng.integers(0, width, 2), rng.integers(0, height, 2)], 1).astype(np.int32)
                cv2.polylines(canvas, [points], False, colour, int(rng.integers(1, 6)))
    elif kind == "skin":  # a palm: skin tone, soft folds, darker surroundings
        skin = np.array([rng.uniform(170, 235), rng.uniform(120, 175), rng.uniform(90, 140)], np.float32)
        canvas = np.broadcast_to(base * 0.5, (height, width, 3)).copy()
        palm = np.zeros((height, width), np.float32)
        cv2.ellipse(palm, (width // 2, height // 2), (int(width * 0.45), int(height * 0.55)),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1)
        for _ in range(4):  # palm creases
            points = np.stack([rng.integers(0, width, 3), rng.integers(0, height, 3)], 1).astype(np.int32)
            cv2.polylines(palm, [points], False, 0.85, int(rng.integers(2, 5)))
        palm = cv2.GaussianBlur(palm, (0, 0), 3)
        canvas = canvas * (1 - palm[..., None]) + skin * palm[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")
    return np.clip(canvas, 0, 255)


def make_scene(
    rng: np.random.Generator,
    n_coins: int,
    *,
    coins: list[CoinCutout] | None = None,
    background: str | None = None,
    size: tuple[int, int] | None = None,
    touching: bool | None = None,
    shadows: bool | None = None,
    uneven_light: bool | None = None,
    radius_range: tuple[float, float] = (0.04, 0.22),
) -> SyntheticScene:
    """A scene with ``n_coins`` coins (0 makes a coin-free scene) and their true circles.

    Arguments left as None are drawn at random. ``coins``: cut-outs to paste (drawn procedurally when
    None); ``radius_range``: coin radius as a fraction of the shorter image side, from a coin a twelfth
    of the picture across (a phone photo of a table) to one almost half of it (a close-up).
    """
    background = background or str(rng.choice(BACKGROUNDS))
    width, height = size or (int(rng.integers(480, 801)), int(rng.integers(400, 641)))
    touching = bool(rng.random() < 0.35) if touching is None else touching
    shadows = bool(rng.random() < 0.5) if shadows is None else shadows
    uneven_light = bool(rng.random() < 0.5) if uneven_light is None else uneven_light
    canvas = make_background(rng, background, width, height)
    circles = _place_circles(rng, n_coins, width, height, radius_range, touching and n_coins >= 2)
    for circle in circles:
        cutout = coins[int(rng.integers(len(coins)))] if coins else draw_coin(rng, int(2 * circle.r) | 1)
        if rng.random() < 0.5:  # coins lie at any angle
            cutout = _rotated(cutout, float(rng.uniform(0, 360)))
        if shadows:
            _cast_shadow(rng, canvas, circle)
        _paste(canvas, cutout, circle)
    if uneven_light:
        canvas *= _lighting_field(rng, width, height)[..., None]
    canvas += rng.normal(0, rng.uniform(1, 5), canvas.shape).astype(np.float32)  # sensor noise
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    extras = {"shadows": shadows, "uneven_light": uneven_light}
    return SyntheticScene(image, circles, background, touching and n_coins >= 2, extras)


def _place_circles(rng, n_coins, width, height, radius_range, touching) -> list[Circle]:
    """Random circles inside the frame; apart from each other, except one touching/overlapping pair when asked."""
    short = min(width, height)
    for _attempt in range(200):  # crowded draws are retried with fresh radii
        circles: list[Circle] = []
        for index in range(n_coins):
            radius = float(rng.uniform(*radius_range)) * short
            if touching and index == 1:
                # Centre distance 0.8..1.0 x the radius sum: from overlapping by a fifth to just touching,
                # each coin still mostly visible (more overlap is a pile, not a scene we promise to read).
                anchor = circles[0]
                for _try in range(50):
                    angle = rng.uniform(0, 2 * np.pi)
                    gap = (anchor.r + radius) * rng.uniform(0.8, 1.0)
                    candidate = Circle(anchor.cx + gap * np.cos(angle), anchor.cy + gap * np.sin(angle), radius)
                    if _fits(candidate, width, height):
                        break
                else:
                    break
            else:
                for _try in range(100):
                    centre = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
                    candidate = Circle(float(centre[0]), float(centre[1]), radius)
                    if _fits(candidate, width, height) and all(
                        np.hypot(candidate.cx - c.cx, candidate.cy - c.cy) > (candidate.r + c.r) * 1.1 for c in circles
                    ):
                        break
                else:
                    break
            circles.append(candidate)
        if len(circles) == n_coins:
            return circles
        radius_range = (radius_range[0] * 0.9, radius_range[1] * 0.9)
    raise ValueError(f"cannot place {n_coins} coins in a {width}x{height} scene")


def _fits(circle: Circle, width: int, height: int) -> bool:
    return circle.r <= circle.cx <= width - circle.r and circle.r <= circle.cy <= height - circle.r


def _disc_alpha(side: int, radius: float) -> np.ndarray:
    """Anti-aliased disc mask: 1 inside, 0 outside, a one-pixel ramp at the edge."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - side / 2.0 + 0.5
    return np.clip(radius - np.hypot(xx, yy) + 0.5, 0.0, 1.0)


def _rotated(cutout: CoinCutout, degrees: float) -> CoinCutout:
    side = cutout.rgb.shape[0]
    matrix = cv2.getRotationMatrix2D((side / 2 - 0.5, side / 2 - 0.5), degrees, 1.0)
    rgb = cv2.warpAffine(cutout.rgb, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return CoinCutout(rgb, cutout.alpha)  # the disc mask is rotation-invariant


def _paste(canvas: np.ndarray, cutout: CoinCutout, circle: Circle) -> None:
    """Alpha-blend ``cutout`` scaled to ``circle`` onto ``canvas`` in place."""
    side = int(np.ceil(2 * circle.r)) + 2
    scale = 2 * circle.r / cutout.alpha.shape[0]
    x0, y0 = circle.cx - side / 2.0, circle.cy - side / 2.0
    # One affine warp places and scales the cut-out, keeping the sub-pixel centre exact: the cut-out's
    # centre (pixel-centre coordinates, (side - 1) / 2) lands on (cx, cy) = r - scale / 2 past its corner.
    shift = scale / 2 - circle.r
    matrix = np.array([[scale, 0, circle.cx + shift - np.floor(x0)], [0, scale, circle.cy + shift - np.floor(y0)]],
                      np.float32)
    rgb = cv2.warpAffine(cutout.rgb, matrix, (side, side), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(cutout.alpha, matrix, (side, side), flags=cv2.INTER_LINEAR)
    _blend(canvas, rgb, alpha, int(np.floor(x0)), int(np.floor(y0)))


def _blend(canvas: np.ndarray, rgb: np.ndarray | float, alpha: np.ndarray, x0: int, y0: int) -> None:
    """canvas[y0:, x0:] = alpha * rgb + (1 - alpha) * canvas over the overlap of the patch and the canvas."""
    height, width = canvas.shape[:2]
    side_y, side_x = alpha.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side_x, width), min(y0 + side_y, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    patch_alpha = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    patch_rgb = rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] if isinstance(rgb, np.ndarray) else rgb
    region = canvas[cy0:cy1, cx0:cx1]
    region *= 1 - patch_alpha
    region += patch_alpha * patch_rgb


def _cast_shadow(rng: np.random.Generator, canvas: np.ndarray, circle: Circle) -> None:
    """Darken a soft disc offset from the coin: a lamp off to one side."""
    offset = circle.r * rng.uniform(0.05, 0.2)
    angle = rng.uniform(0, 2 * np.pi)
    blur = max(1.0, circle.r * rng.uniform(0.05, 0.2))
    side = int(2 * (circle.r + 3 * blur)) + 3
    mask = np.zeros((side, side), np.float32)
    cv2.circle(mask, (side // 2, side // 2), int(round(circle.r)), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), blur) * rng.uniform(0.3, 0.6)  # how dark the shadow gets
    x0 = int(round(circle.cx + offset * np.cos(angle))) - side // 2
    y0 = int(round(circle.cy + offset * np.sin(angle))) - side // 2
    _blend(canvas, 0.0, mask, x0, y0)


def _lighting_field(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Multiplicative light 0.55..1.25: a linear fall-off plus a soft bright spot (desk lamp, window)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(angle) + yy * np.sin(angle)) / max(width, height)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    spot_x, spot_y = rng.uniform(0, width), rng.uniform(0, height)
    spot = np.exp(-((xx - spot_x) ** 2 + (yy - spot_y) ** 2) / (2 * (0.3 * max(width, height)) ** 2))
    return (0.55 + 0.4 * ramp + 0.3 * spot).astype(np.float32)


# --- photo-like scenes for the learned coin finder ------------------------------------------------------------
#
# ``make_photo_scene`` composes what a phone photo of a table looks like: many coins (0..15, a tenth to a
# third of the picture across down to a thirtieth), touching and overlapping, seen at a slant (ellipses),
# on a real background patch or a generated texture (wood grain, fabric weave, polka dots, grid paper...),
# with shadows, glare, colour casts, blur and noise, and with hard negatives that are round but not coins:
# drawn rings, flat discs (buttons, stickers), glare spots and printed dots. Each coin's truth is the
# axis-aligned box round its (possibly slanted) disc. Asked for (``solid_share``), the coins are solid: their edge
# shows at a slant (and is boxed with them), and a heap is packed closer, each coin tilted on the ones under it.

PHOTO_BACKGROUNDS = BACKGROUNDS + ("fabric", "polka", "grid")
# A coin less visible than this under the coins on it is not labelled. coin-scenes boxes every coin a person can
# see, coins behind others included (its README), so a coin mostly hidden in a pile is one to find and count. Finder
# stages 1-7 trained with 0.4 (under 1% of the coins of a synthetic heap drawn but unlabelled, taught as "not a
# coin": benchmarks/heap_labels.py); from stage 8 only slivers under 0.15 are.
MIN_VISIBLE_SHARE = 0.15


def _mark(mask: np.ndarray, patch: np.ndarray, x0: int, y0: int) -> None:
    """mask[y0:, x0:] |= patch over their overlap."""
    height, width = mask.shape
    side_y, side_x = patch.shape
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x0 + side_x, width), min(y0 + side_y, height)
    if cx0 < cx1 and cy0 < cy1:
        mask[cy0:cy1, cx0:cx1] |= patch[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]


@dataclass
class PhotoScene:
    image: Image.Image
    boxes: list[tuple[float, float, float, float]]  # x0, y0, x1, y1 of each coin, in pasting order
    negatives: list[str] = field(default_factory=list)  # the hard negatives drawn, for reports


def face_from_crop(picture: Image.Image, margin: float = 0.08) -> CoinCutout:
    """The coin of a square-ish crop centred on it with ``margin`` (fraction of the radius) around it."""
    width, height = picture.size
    radius = min(width, height) / 2 / (1 + margin)
    return cutout_from_picture(picture, Circle(width / 2, height / 2, radius))


def resized_cutout(cutout: CoinCutout, side: int) -> CoinCutout:
    """A cut-out scaled to ``side`` pixels (kept small in memory; pasting scales it again)."""
    rgb = cv2.resize(cutout.rgb, (side, side), interpolation=cv2.INTER_AREA)
    return CoinCutout(rgb.astype(np.float32), _disc_alpha(side, side / 2 * 0.985))


def patch_outside_boxes(rng: np.random.Generator, photo: np.ndarray, boxes: list, min_side: int = 96
                        ) -> np.ndarray | None:
    """A random rectangle of ``photo`` (H, W, 3) that overlaps none of ``boxes`` (grown by 10%), or None."""
    height, width = photo.shape[:2]
    free = np.ones((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        grow_x, grow_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        rows = slice(max(0, int(y0 - grow_y)), int(np.ceil(y1 + grow_y)))
        free[rows, max(0, int(x0 - grow_x)):int(np.ceil(x1 + grow_x))] = False
    integral = cv2.integral(free.astype(np.uint8))
    for _try in range(60):
        side_w = int(rng.integers(min_side, max(min_side + 1, width)))
        side_h = int(np.clip(side_w * rng.uniform(0.6, 1.4), min_side, height))
        if side_w > width or side_h > height:
            continue
        x, y = int(rng.integers(0, width - side_w + 1)), int(rng.integers(0, height - side_h + 1))
        inside = integral[y + side_h, x + side_w] - integral[y, x + side_w] - integral[y + side_h, x] + integral[y, x]
        if inside == side_w * side_h:
            return photo[y:y + side_h, x:x + side_w]
    return None


def _texture(rng: np.random.Generator, kind: str, width: int, height: int) -> np.ndarray:
    """The generated backgrounds, with three more kinds than ``make_background``: fabric, polka, grid."""
    if kind in BACKGROUNDS:
        return make_background(rng, kind, width, height)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(30, 235, 3).astype(np.float32)
    if kind == "fabric":  # a weave: two crossing sinusoids, with thread noise
        period = rng.uniform(2.5, 9)
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        weave = np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        noise = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), 1.0)
        canvas = base * (0.85 + 0.12 * weave + 0.06 * noise)[..., None]
    elif kind == "polka":  # printed dots: round, flat and regular, not coins
        canvas = np.broadcast_to(base, (height, width, 3)).copy()
        colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
        step = rng.uniform(18, 70)
        radius = step * rng.uniform(0.15, 0.4)
        offset = rng.uniform(0, step, 2)
        for row, y in enumerate(np.arange(offset[1] - step, height + step, step)):
            for x in np.arange(offset[0] - step + (step / 2 if row % 2 else 0), width + step, step):
                cv2.circle(canvas, (int(x), int(y)), max(1, int(radius)), colour, -1, cv2.LINE_AA)
    elif kind == "grid":  # grid paper or tiles
        canvas = np.broadcast_to(np.maximum(base, 170), (height, width, 3)).copy()
        step = int(rng.uniform(10, 60))
        colour = tuple(float(v) for v in rng.uniform(40, 200, 3))
        thickness = int(rng.integers(1, 3))
        for x in range(int(rng.integers(0, step)), width, step):
            cv2.line(canvas, (x, 0), (x, height), colour, thickness)
        for y in range(int(rng.integers(0, step)), height, step):
            cv2.line(canvas, (0, y), (width, y), colour, thickness)
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {PHOTO_BACKGROUNDS}")
    return np.clip(canvas, 0, 255)


def _hard_negative(rng: np.random.Generator, canvas: np.ndarray, radius: float) -> str:
    """Draw one round thing that is not a coin, somewhere on ``canvas``; returns its kind."""
    height, width = canvas.shape[:2]
    cx, cy = float(rng.uniform(0, width)), float(rng.uniform(0, height))
    kind = str(rng.choice(["ring", "disc", "glare", "rings"]))
    colour = tuple(float(v) for v in rng.uniform(0, 255, 3))
    if kind == "ring":  # a drawn circle, a cup mark, a ring of a tray
        cv2.circle(canvas, (int(cx), int(cy)), int(radius), colour, int(rng.integers(1, 5)), cv2.LINE_AA)
    elif kind == "rings":  # concentric rings: a target, a lid, the inner ring of a bimetallic coin without its coin
        for scale in np.linspace(1.0, rng.uniform(0.3, 0.7), int(rng.integers(2, 4))):
            cv2.circle(canvas, (int(cx), int(cy)), max(2, int(radius * scale)), colour, int(rng.integers(1, 4)),
                       cv2.LINE_AA)
    elif kind == "disc":  # a button, a sticker, a bottle cap: flat colour, no relief
        mask = np.zeros(canvas.shape[:2], np.float32)
        cv2.ellipse(mask, (int(cx), int(cy)), (int(radius), int(radius * rng.uniform(0.6, 1.0))),
                    float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
        mask = cv2.GaussianBlur(mask, (0, 0), 0.8)
        canvas *= 1 - mask[..., None]
        canvas += mask[..., None] * np.array(colour, np.float32)
    else:  # glare: a bright soft spot, as a lamp makes on a varnished table
        sigma = radius * rng.uniform(0.3, 0.8)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        spot = np.exp(-((xx - cx) ** 2 + ((yy - cy) / rng.uniform(0.5, 1.0)) ** 2) / (2 * sigma * sigma))
        canvas += spot[..., None] * rng.uniform(80, 220)
    return kind


def _slanted(cutout: CoinCutout, radius: float, squash: float,
             angle: float) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The cut-out as an ellipse: ``radius`` across, ``radius * squash`` along ``angle`` (degrees).

    Returns rgb, alpha (a square patch centred on the coin) and the half-width and half-height of the
    ellipse's axis-aligned box."""
    side = int(np.ceil(2 * radius)) + 4
    source = cutout.alpha.shape[0]
    scale = 2 * radius / source
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], np.float32)
    linear = rotation @ np.diag([1.0, squash]).astype(np.float32) @ rotation.T * scale
    centre_out = np.array([side / 2 - 0.5, side / 2 - 0.5], np.float32)
    centre_in = np.array([source / 2 - 0.5, source / 2 - 0.5], np.float32)
    matrix = np.concatenate([linear, (centre_out - linear @ centre_in)[:, None]], axis=1)
    flags = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    rgb = cv2.warpAffine(cutout.rgb, matrix, (side, side), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(cutout.alpha, matrix, (side, side), flags=cv2.INTER_LINEAR)
    half_w = radius * float(np.hypot(np.cos(theta), squash * np.sin(theta)))
    half_h = radius * float(np.hypot(np.sin(theta), squash * np.cos(theta)))
    return rgb, alpha, half_w, half_h


def _edge_band(alpha: np.ndarray, thickness: float, angle: float,
               near_side: float) -> tuple[np.ndarray, tuple[float, float]]:
    """The edge of a slanted coin ``thickness`` px deep: the face's ellipse (``alpha``, from ``_slanted`` at
    ``angle``) swept that far along its squashed axis towards the near side (+1 or -1).

    Returns the band's alpha, padded by its depth on every side, and the sweep (dx, dy) in pixels."""
    theta = np.deg2rad(angle)
    shift_x, shift_y = near_side * thickness * -np.sin(theta), near_side * thickness * np.cos(theta)
    pad = int(np.ceil(thickness)) + 1
    padded = np.pad(alpha, pad)
    band = np.zeros_like(padded)
    for step in np.linspace(0.0, 1.0, max(2, int(np.ceil(thickness)) + 1)):
        moved = cv2.warpAffine(padded, np.float32([[1, 0, step * shift_x], [0, 1, step * shift_y]]),
                               padded.shape[::-1], flags=cv2.INTER_LINEAR)
        np.maximum(band, moved, out=band)
    return band, (float(shift_x), float(shift_y))


def make_photo_scene(
    rng: np.random.Generator,
    n_coins: int,
    faces: list[CoinCutout] | None = None,
    backgrounds: list[np.ndarray] | None = None,
    size: tuple[int, int] | None = None,
    radius_range: tuple[float, float] = (0.016, 0.17),
    hard_negatives: bool | None = None,
    heap_share: float = 0.2,
    min_visible_share: float = MIN_VISIBLE_SHARE,
    solid_share: float = 0.0,
) -> PhotoScene:
    """A photo-like scene with ``n_coins`` coins (0: none) and each coin's box; see the section comment.

    ``faces``: coin cut-outs (drawn procedurally when None, and one coin in five anyway); ``backgrounds``:
    real background patches (RGB arrays), used for half the scenes when given; ``radius_range``: coin radius
    as a fraction of the longer side, drawn log-uniformly; ``heap_share``: the chance that the coins lie in
    a heap (on each other, up to about half hidden), the rest lying apart or touching half and half;
    ``min_visible_share``: a coin with less of its area seen than this under the coins on it is not labelled;
    ``solid_share``: the chance that the scene's coins are drawn as solid discs (see ``_edge_band``): their edge
    seen at a slant, and in a heap lying closer, each tilted its own way on the coins under it.
    """
    if not 0.0 <= heap_share <= 1.0:
        raise ValueError(f"heap_share is a chance from 0 to 1, not {heap_share}")
    if not 0.0 <= min_visible_share <= 1.0:
        raise ValueError(f"min_visible_share is a share from 0 to 1, not {min_visible_share}")
    if not 0.0 <= solid_share <= 1.0:
        raise ValueError(f"solid_share is a chance from 0 to 1, not {solid_share}")
    # Drawn only when asked for, so that solid_share 0 renders the scenes earlier finder stages trained on.
    solid = solid_share > 0 and rng.random() < solid_share
    width, height = size or (int(rng.integers(420, 641)), int(rng.integers(320, 521)))
    if rng.random() < 0.5:
        width, height = height, width
    longer = max(width, height)
    if backgrounds and rng.random() < 0.5:
        patch = backgrounds[int(rng.integers(len(backgrounds)))]
        canvas = cv2.resize(patch.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            canvas = canvas[:, ::-1].copy()
        kind = "real"
    else:
        kind = str(rng.choice(PHOTO_BACKGROUNDS))
        canvas = _texture(rng, kind, width, height).astype(np.float32)
    negatives = []
    if hard_negatives if hard_negatives is not None else rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 5))):
            radius = float(np.exp(rng.uniform(*np.log(radius_range)))) * longer
            negatives.append(_hard_negative(rng, canvas, radius))
    # One slant for the whole photo (the camera's, down to a low angle), a little wobble per coin.
    squash_all = float(rng.uniform(0.45, 1.0)) if rng.random() < 0.5 else 1.0
    angle_all = float(rng.uniform(0, 180))
    low, high = np.log(radius_range[0]), np.log(radius_range[1])
    if n_coins > 6:  # a purse emptied: smaller coins
        high = max(low + 0.2, high - np.log(n_coins / 6))
    scene_scale = float(np.exp(rng.uniform(low, high)))  # coins of one photo are of similar size
    placed: list[tuple[float, float, float]] = []
    # Coins touching and overlapping (a crowd), or lying apart; some crowds are heaps. The draws are the same
    # as before heap_share was a setting, so the default renders the scenes earlier finder stages trained on.
    crowd_share = max(0.5, heap_share)
    crowd = rng.random() < crowd_share
    pile = crowd and rng.random() < heap_share / crowd_share
    closest, gaps = (0.5, (0.5, 0.95)) if pile else (0.78, (0.8, 1.02))
    beside = 0.7
    if pile and solid:  # a purse emptied: coins up to two thirds under the next one, nearly all touching
        closest, gaps, beside = 0.35, (0.35, 0.9), 0.9
    # The near side of the coins (where their edge shows), one for the photo: the squashed axis, either way.
    near_side = 1.0 if not solid or rng.random() < 0.75 else -1.0
    for _ in range(n_coins):
        radius = scene_scale * float(rng.uniform(0.7, 1.35)) * longer
        radius = max(radius, 6.0)
        for _try in range(60):
            cx, cy = float(rng.uniform(radius, width - radius)), float(rng.uniform(radius, height - radius))
            if crowd and placed and rng.random() < beside:  # next to a coin already there
                ox, oy, other = placed[int(rng.integers(len(placed)))]
                direction = rng.uniform(0, 2 * np.pi)
                gap = (other + radius) * rng.uniform(*gaps)
                cx, cy = ox + gap * np.cos(direction), oy + gap * np.sin(direction)
                if not (radius <= cx <= width - radius and radius <= cy <= height - radius):
                    continue
            nearest = min((np.hypot(cx - ox, cy - oy) / (radius + other) for ox, oy, other in placed), default=9.0)
            if nearest >= (closest if crowd else 1.05):
                placed.append((cx, cy, radius))
                break
    boxes = []
    on_top = np.full((height, width), -1, np.int32)  # which coin is seen at each pixel
    areas = []
    for number, (cx, cy, radius) in enumerate(placed):
        cutout = faces[int(rng.integers(len(faces)))] if faces and rng.random() < 0.8 else draw_coin(rng, 129)
        cutout = _rotated(cutout, float(rng.uniform(0, 360)))
        gain = rng.uniform(0.7, 1.2) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
        cutout = CoinCutout(np.clip(cutout.rgb * gain, 0, 255), cutout.alpha)
        tilted = solid and pile and number > 0  # a coin of a heap rests tilted on the ones under it
        wobble, turn = ((0.7, 1.05), 15.0) if tilted else ((0.95, 1.05), 5.0)
        squash = float(np.clip(squash_all * rng.uniform(*wobble), 0.4 if tilted else 0.5, 1.0))
        angle = angle_all + float(rng.normal(0, turn))
        rgb, alpha, half_w, half_h = _slanted(cutout, radius, squash, angle)
        side = alpha.shape[0]
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        edge = None
        if solid and squash < 0.97:
            thickness = 2 * radius * float(rng.uniform(0.05, 0.1)) * float(np.sqrt(1 - squash * squash))
            edge = _edge_band(alpha, thickness, angle, near_side)
        if rng.random() < 0.6:  # a shadow: the same ellipse, soft, offset away from the lamp
            blur = max(1.0, radius * rng.uniform(0.05, 0.25))
            shadow = cv2.GaussianBlur(np.pad(alpha, int(3 * blur)), (0, 0), blur) * rng.uniform(0.25, 0.6)
            shift = radius * rng.uniform(0.03, 0.2) * np.array([np.cos(angle_all), np.sin(angle_all)])
            pad = int(3 * blur)
            _blend(canvas, 0.0, shadow, x0 - pad + int(shift[0]), y0 - pad + int(shift[1]))
        if rng.random() < 0.2:  # glare on the coin
            yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
            gx, gy = rng.uniform(0.25, 0.75, 2) * side
            spot = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (side * rng.uniform(0.08, 0.25)) ** 2))
            rgb = rgb + spot[..., None] * rng.uniform(60, 180)
        box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        cover = np.zeros((height, width), bool)
        if edge is not None:
            edge_alpha, (shift_x, shift_y) = edge
            pad = (edge_alpha.shape[0] - side) // 2
            mean = (rgb * alpha[..., None]).sum((0, 1)) / max(float(alpha.sum()), 1.0)
            colour = np.clip(mean * rng.uniform(0.4, 0.8), 0, 255).astype(np.float32)
            _blend(canvas, np.broadcast_to(colour, edge_alpha.shape + (3,)), edge_alpha, x0 - pad, y0 - pad)
            _mark(cover, edge_alpha > 0.5, x0 - pad, y0 - pad)
            # The box holds the edge too, as a person boxes a coin seen at a slant.
            box = (box[0] + min(shift_x, 0), box[1] + min(shift_y, 0),
                   box[2] + max(shift_x, 0), box[3] + max(shift_y, 0))
        _blend(canvas, np.clip(rgb, 0, 255), alpha, x0, y0)
        boxes.append(box)
        _mark(cover, alpha > 0.5, x0, y0)
        on_top[cover] = number
        areas.append(max(1, int(cover.sum())))
    # A coin mostly hidden under others is not one a person would count from the photo either.
    seen = np.bincount(on_top[on_top >= 0].ravel(), minlength=len(placed))
    boxes = [box for box, visible, area in zip(boxes, seen, areas) if visible / area >= min_visible_share]
    if rng.random() < 0.5:
        canvas *= _lighting_field(rng, width, height)[..., None]
    if rng.random() < 0.5:  # colour cast (white balance), sometimes strong
        canvas *= rng.uniform(0.6, 1.35, 3).astype(np.float32)
    if rng.random() < 0.1:  # a channel swap, as some phone exports have
        canvas = canvas[..., ::-1].copy()
    if rng.random() < 0.3:
        canvas = cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.5, 1.8))
    canvas += rng.normal(0, rng.uniform(1, 6), canvas.shape).astype(np.float32)
    image = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    return PhotoScene(image, boxes, negatives)
