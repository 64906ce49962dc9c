"""Finding the coins in a photo with classical computer vision.

Interface used by the service and by training: ``locate_coins(image) -> LocalizationResult`` (one square
box per coin, in reading order) and ``split_faces(image)`` for catalogue pictures that show the obverse
and reverse side by side.

How, on a copy scaled to ``WORK_SIDE`` pixels:
1. candidates: the Hough gradient transform (OpenCV's HOUGH_GRADIENT_ALT) on brightness and on colour
   saturation proposes circles, deliberately too many;
2. edge cue: each is snapped onto the rim contour near it (a least-squares circle through the edge
   points there) and scored by the fraction of its rim that carries an edge running along the circle
   (a step across it, almost none along it); it is kept when that fraction is high enough for its size;
3. one circle per coin: of overlapping circles the better supported one stays; a circle inside another
   is mostly a part of that coin (hole, bimetallic core, bead ring, numeral) unless clearly better
   supported; and a circle must keep its support without the rim points that lie on other coins.
Tuned on synthetic scenes (``coinspotter.synthetic``, ``benchmarks/localiser_scenes.py``) and catalogue
pictures; see the benchmark for recall, false finds and latency.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from PIL import Image

WORK_SIDE = 448  # longer side searched; with HOUGH_DP below, see there
MIN_RADIUS_FRACTION = 0.018  # of the longer side (8 px at WORK_SIDE): smaller rims are a handful of pixels
MAX_RADIUS_FRACTION = 0.56  # a catalogue coin fills the frame and may be cut a little by it
BOX_MARGIN = 0.08  # box half-side = radius * (1 + margin): the classifier sees the rim and a sliver of background


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float

    def scaled(self, factor: float) -> "Circle":
        return Circle(self.cx * factor, self.cy * factor, self.r * factor)


@dataclass(frozen=True)
class CoinBox:
    """One coin found in a picture: a square box (pixel coordinates of the upright image).

    The box stays square even where the coin runs off the picture, so it may reach past the edges;
    ``crop_box`` fills that part with the edge colour and ``clipped`` gives the part inside for drawing.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0  # how sure the localiser is that this is a coin, 0..1
    cx: float | None = None  # the coin's circle, when the box came from one
    cy: float | None = None
    radius: float | None = None
    # the learned finder scored it under its threshold and kept it because it touches a coin it is sure of
    # (finder.add_touching): a coin half hidden in a heap, or not a coin at all, so never part of a total
    doubtful: bool = False

    def as_list(self) -> list[int]:
        return [self.x0, self.y0, self.x1, self.y1]

    def clipped(self, width: int, height: int) -> "CoinBox":
        return replace(self, x0=max(self.x0, 0), y0=max(self.y0, 0), x1=min(self.x1, width), y1=min(self.y1, height))


@dataclass
class LocalizationResult:
    boxes: list[CoinBox] = field(default_factory=list)
    method: str = "whole-image"  # how the boxes were found, for logs and the API

    @property
    def found(self) -> bool:
        return bool(self.boxes)


@dataclass(frozen=True)
class ScoredCircle:
    circle: Circle
    score: float  # fraction of the visible rim that is an edge along the circle, 0..1
    visible: float  # fraction of the circumference inside the picture


def locate_coins(image: Image.Image) -> LocalizationResult:
    """Square boxes around every coin in ``image`` in reading order; none (found=False) when there is no coin."""
    found = find_circles(image)
    if not found:
        return LocalizationResult([], method="hough-edges: no coin found")
    boxes = [box_for_circle(item.circle, score=item.score) for item in reading_order(found)]
    return LocalizationResult(boxes, method="hough-edges")


def find_circles(image: Image.Image) -> list[ScoredCircle]:
    """The coins' circles in full-resolution pixel coordinates, best score first."""
    work, scale = _work_copy(image)
    edges = _Edges.of(work)
    scored = [_score(edges, circle) for circle in _hough_candidates(edges)]
    scored = sorted(scored, key=lambda item: item.score, reverse=True)
    scored = [_refined(edges, item) if item.score >= MIN_REFINE_SCORE and rank < MAX_REFINED else item
              for rank, item in enumerate(scored)]
    accepted = [item for item in scored if _accepted(item)]
    kept = sorted(_suppress(accepted), key=lambda item: item.score, reverse=True)
    kept = _own_rims_only(edges, kept)
    return [ScoredCircle(item.circle.scaled(1 / scale), item.score, item.visible) for item in kept]


def box_for_circle(circle: Circle, margin: float = BOX_MARGIN, score: float = 1.0) -> CoinBox:
    """The square box centred on ``circle`` with half-side radius * (1 + margin), in whole pixels."""
    side = max(1, int(round(2 * circle.r * (1 + margin))))
    x0 = int(round(circle.cx - side / 2))
    y0 = int(round(circle.cy - side / 2))
    return CoinBox(x0, y0, x0 + side, y0 + side, round(float(score), 3), float(circle.cx), float(circle.cy),
                   float(circle.r))


def reading_order(items: list[ScoredCircle]) -> list[ScoredCircle]:
    """Top-to-bottom rows, left-to-right within a row, so cards can be numbered the way people read.

    A coin joins the current row when its centre is within half a radius (of the row's largest coin)
    of the row's first centre: coins lying side by side are never perfectly level.
    """
    rows: list[list[ScoredCircle]] = []
    for item in sorted(items, key=lambda i: i.circle.cy):
        if rows:
            row = rows[-1]
            if abs(item.circle.cy - row[0].circle.cy) <= 0.5 * max(i.circle.r for i in row + [item]):
                row.append(item)
                continue
        rows.append([item])
    return [item for row in rows for item in sorted(row, key=lambda i: i.circle.cx)]


def crop_box(image: Image.Image, box: CoinBox) -> Image.Image:
    """The picture inside ``box``; parts of the box outside the picture are filled with its edge colour."""
    return image.crop((box.x0, box.y0, box.x1, box.y1)) if _inside(image, box) else _padded_crop(image, box)


def _inside(image: Image.Image, box: CoinBox) -> bool:
    return box.x0 >= 0 and box.y0 >= 0 and box.x1 <= image.width and box.y1 <= image.height


def _padded_crop(image: Image.Image, box: CoinBox) -> Image.Image:
    array = np.asarray(image)
    pad = max(0, -box.x0, -box.y0, box.x1 - image.width, box.y1 - image.height)
    padded = np.pad(array, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return Image.fromarray(padded[box.y0 + pad : box.y1 + pad, box.x0 + pad : box.x1 + pad])


# --- the search --------------------------------------------------------------------------------------------

MIN_VISIBLE = 0.6  # share of the rim inside the picture: a circle mostly outside it is a guess, not a coin
# Edge support needed to accept a circle (fraction of the visible rim). Chosen on synthetic scenes of real
# catalogue coins (seed 1, 200 scenes): at 0.55/0.70 recall was 0.967 with 1.6% false finds; 0.05 lower
# gave 0.978 but 3.7% false finds (blotchy noise backgrounds line up into rings), 0.05 higher 0.960/0.5%.
LARGE_MIN_EDGE_SUPPORT = 0.55  # for radius >= LARGE_RADIUS work pixels
SMALL_MIN_EDGE_SUPPORT = 0.70  # for radius <= SMALL_RADIUS: all false finds left at 0.55 were under 20 px
LARGE_RADIUS = 20.0
SMALL_RADIUS = 8.0
EDGE_BAND = 0.04  # the rim may sit this fraction of r off the circle: coins are not perfectly round or level
MIN_EDGE_STEP = 3.0  # grey levels per pixel across the rim (Sobel / 4 of the blurred picture); below is noise
# An edge runs along the circle when its across-component is >= 4x its along-component (within 14 degrees
# of the radius). Texture and lettering have edges in every direction; a rim does not. Ratio 2 was
# clearly worse on the synthetic scenes (0.964 recall at 2.7% false finds); 3, 4 and 5 were close.
EDGE_DIRECTION_RATIO = 4.0
REFINE_BAND = 0.14  # how far (fraction of r) a Hough circle may be off the rim and still snap onto it
MIN_REFINE_SCORE = 0.3  # candidates with less support have too few rim points to fit a circle to
MAX_REFINED = 30  # snapping costs ~0.3 ms a circle; past the best 30 it never found another coin
# Hough settings: ALT's Canny threshold 200 (it uses Scharr, so higher than the classic 100) and a loose
# roundness 0.35 propose ~20 circles per synthetic scene, among them 99.5% of the true coins; the edge
# score sorts them out. Hough's time goes into voting along each edge pixel's gradient, which shrinks
# with the accumulator: a 4x coarser one (dp 4) on a 448 px picture found as many coins as dp 2 at
# 384 px on two sets of 300 synthetic scenes (recall 0.972/0.974 against 0.970/0.954, fewer false finds)
# in ~30% less time; the snap onto the rim restores the centre precision the coarse accumulator lacks.
HOUGH_DP = 4.0
HOUGH_CANNY = 200
HOUGH_CANNY_SATURATION = 300  # phone JPEGs have blocky, noisy colour: 200 doubled the candidates there
HOUGH_ROUNDNESS = 0.35


def _accepted(item: ScoredCircle) -> bool:
    """Mostly inside the picture, and enough of the rim an edge along the circle for its size.

    A small circle has few independent rim pixels, so texture lines it up by chance more often: it
    must show more support than a large one (SMALL_MIN_EDGE_SUPPORT at SMALL_RADIUS and below, falling
    linearly to LARGE_MIN_EDGE_SUPPORT at LARGE_RADIUS and above; radii in work pixels).
    """
    small_weight = float(np.clip((LARGE_RADIUS - item.circle.r) / (LARGE_RADIUS - SMALL_RADIUS), 0.0, 1.0))
    needed = LARGE_MIN_EDGE_SUPPORT + small_weight * (SMALL_MIN_EDGE_SUPPORT - LARGE_MIN_EDGE_SUPPORT)
    return item.visible >= MIN_VISIBLE and item.score >= needed


@dataclass
class _Edges:
    hough_inputs: list[np.ndarray]  # uint8 single-channel pictures Hough searches for circles
    gx: np.ndarray  # float32 Sobel derivatives / 4 of the blurred grey picture: grey levels per pixel
    gy: np.ndarray

    @classmethod
    def of(cls, rgb: np.ndarray) -> "_Edges":
        """Brightness and saturation, lightly blurred (sensor noise and JPEG blocks make edges ragged).

        Hough also searches the saturation because on striped or busy backgrounds the brightness edges
        of the background break the coin's circle up (wood: recall 0.71 from brightness alone, 0.97 with
        saturation too). Scoring uses brightness only: saturation is noisy wherever the picture is dark
        or colourful, and scoring on it doubled the false finds on noisy backgrounds.
        """
        grey = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (5, 5), 1.2)
        saturation = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1], (5, 5), 1.2)
        gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, scale=0.25)
        gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, scale=0.25)
        return cls([grey, saturation], gx, gy)


def _work_copy(image: Image.Image) -> tuple[np.ndarray, float]:
    """RGB array scaled so the longer side is WORK_SIDE, and the factor applied."""
    image = image.convert("RGB")
    longer = max(image.size)
    if longer >= 4 * WORK_SIDE:  # a phone photo: a cheap box-filter reduction first, then the fine resize
        image = image.reduce(longer // (2 * WORK_SIDE))
    rgb = np.asarray(image)
    height, width = rgb.shape[:2]
    scale = WORK_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, size, interpolation=interpolation), WORK_SIDE / longer


def _hough_candidates(edges: _Edges) -> list[Circle]:
    circles = []
    for channel, canny in zip(edges.hough_inputs, (HOUGH_CANNY, HOUGH_CANNY_SATURATION)):
        longer = max(channel.shape)
        found = cv2.HoughCircles(
            channel,
            cv2.HOUGH_GRADIENT_ALT,
            dp=HOUGH_DP,
            minDist=MIN_RADIUS_FRACTION * longer,
            param1=canny,
            param2=HOUGH_ROUNDNESS,
            minRadius=int(MIN_RADIUS_FRACTION * longer),
            maxRadius=int(MAX_RADIUS_FRACTION * longer),
        )
        if found is not None:
            circles += [Circle(float(x), float(y), float(r)) for x, y, r in found[0][:, :3]]
    return circles


@dataclass
class _RimEdges:
    """What lies along a circle's rim, one entry per sample angle."""

    x: np.ndarray  # where the strongest edge across the rim is, within the searched band
    y: np.ndarray
    supported: np.ndarray  # bool: an edge running along the circle is there
    visible: np.ndarray  # bool: the rim point is inside the picture


def _rim_edges(edges: _Edges, circle: Circle, band: float, hidden: tuple[Circle, ...] = ()) -> _RimEdges:
    """Look for an edge along the circle at each of ~2 pi r / 3 angles, within +-band pixels of the rim.

    Rim points inside the ``hidden`` circles (other coins) count as not visible.
    """
    height, width = edges.gx.shape
    samples = int(np.clip(2 * np.pi * circle.r / 3, 48, 240))  # one sample per ~3 px of rim
    angles = np.linspace(0, 2 * np.pi, samples, endpoint=False, dtype=np.float32)
    cos, sin = np.cos(angles), np.sin(angles)
    offsets = np.linspace(-band, band, int(2 * band) + 1, dtype=np.float32)
    radii = circle.r + offsets[:, None]
    xs = np.clip(np.rint(circle.cx + radii * cos).astype(np.int32), 0, width - 1)
    ys = np.clip(np.rint(circle.cy + radii * sin).astype(np.int32), 0, height - 1)
    # Sobel is meaningless on the outermost pixels; a rim there is cut by the frame, not seen.
    on_rim_x = np.rint(circle.cx + circle.r * cos)
    on_rim_y = np.rint(circle.cy + circle.r * sin)
    visible = (on_rim_x >= 2) & (on_rim_x < width - 2) & (on_rim_y >= 2) & (on_rim_y < height - 2)
    for other in hidden:
        visible &= np.hypot(on_rim_x - other.cx, on_rim_y - other.cy) > other.r
    gx, gy = edges.gx[ys, xs], edges.gy[ys, xs]
    radial = np.abs(gx * cos + gy * sin)
    tangential = np.abs(-gx * sin + gy * cos)
    along = (radial >= MIN_EDGE_STEP) & (radial >= EDGE_DIRECTION_RATIO * tangential)
    strength = np.where(along, radial, 0.0)
    best = np.argmax(strength, axis=0)
    column = np.arange(samples)
    supported = along[best, column] & visible
    return _RimEdges(xs[best, column], ys[best, column], supported, visible)


def _score(edges: _Edges, circle: Circle, hidden: tuple[Circle, ...] = ()) -> ScoredCircle:
    rim = _rim_edges(edges, circle, max(1.0, EDGE_BAND * circle.r), hidden)
    n_visible = int(rim.visible.sum())
    score = float(rim.supported.sum()) / n_visible if n_visible else 0.0
    return ScoredCircle(circle, score, n_visible / len(rim.visible))


def _refined(edges: _Edges, item: ScoredCircle) -> ScoredCircle:
    """Snap a Hough circle to the rim: fit a circle to the strongest along-edges near it, keep it unless worse.

    Hough centres and radii are off by a few pixels, enough to miss a rim sampled within +-4% of r.
    """
    circle = item.circle
    rim = _rim_edges(edges, circle, max(2.0, REFINE_BAND * circle.r))
    x, y = rim.x[rim.supported].astype(np.float64), rim.y[rim.supported].astype(np.float64)
    if len(x) < 12:
        return item
    for _round in range(2):  # fit, drop points off the fitted circle (an inner ring, a shadow), fit again
        fitted = _fit_circle(x, y)
        if fitted is None:
            return item
        residual = np.abs(np.hypot(x - fitted.cx, y - fitted.cy) - fitted.r)
        keep = residual <= max(1.5, 0.03 * fitted.r)
        if keep.sum() < 12:
            return item
        x, y = x[keep], y[keep]
    fitted = _fit_circle(x, y)
    if fitted is None or np.hypot(fitted.cx - circle.cx, fitted.cy - circle.cy) > 0.2 * circle.r:
        return item
    if not 0.8 * circle.r <= fitted.r <= 1.2 * circle.r:
        return item
    rescored = _score(edges, fitted)
    return rescored if rescored.score >= item.score else item


def _fit_circle(x: np.ndarray, y: np.ndarray) -> Circle | None:
    """Least-squares circle through points (Kasa): x^2 + y^2 = a x + b y + c."""
    design = np.stack([x, y, np.ones_like(x)], axis=1)
    (a, b, c), *_ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
    cx, cy = a / 2, b / 2
    squared = c + cx * cx + cy * cy
    return Circle(float(cx), float(cy), float(np.sqrt(squared))) if squared > 0 else None


def _suppress(items: list[ScoredCircle]) -> list[ScoredCircle]:
    """Keep one circle per coin, deciding every conflicting pair with ``_wins``, best-supported first."""
    kept: list[ScoredCircle] = []
    for item in sorted(items, key=lambda i: i.score, reverse=True):
        rivals = [other for other in kept if _conflict(item.circle, other.circle)]
        if all(_wins(item, other) for other in rivals):
            kept = [other for other in kept if other not in rivals] + [item]
    return kept


def _own_rims_only(edges: _Edges, kept: list[ScoredCircle]) -> list[ScoredCircle]:
    """Re-check each circle, best first, without its rim points on coins already confirmed.

    A ring that chance draws through several coins gets most of its support from their rims (1.6% of
    the finds on synthetic scenes were such rings, 1.3% after this). Only coins better supported by
    RECHECK_LEAD hide rim points, so two real coins lying on each other both keep their shared edge.
    """
    confirmed: list[ScoredCircle] = []
    for item in kept:
        hidden = tuple(other.circle for other in confirmed if other.score >= item.score + RECHECK_LEAD)
        own = _score(edges, item.circle, hidden)
        if _accepted(own):
            confirmed.append(item)
    return confirmed


RECHECK_LEAD = 0.1


def _conflict(a: Circle, b: Circle) -> bool:
    return _overlap_of_smaller(a, b) >= 0.5


def _wins(a: ScoredCircle, b: ScoredCircle) -> bool:
    """Whether ``a`` rather than ``b`` is the coin, for two circles covering at least half of the smaller.

    One inside the other: the inner one is usually part of the coin (a hole, a bimetallic core, an inner
    bead ring when concentric; a numeral or emblem when not), so the outer wins unless the inner is
    clearly better supported (by CONTAINED_MARGIN): then the outer is a palm, plate or tray round the coin.
    A concentric inner circle needs a larger lead, since holes and cores are crisp circles too.
    Otherwise, partly overlapping: the same coin found twice, and the better-supported circle wins.
    """
    outer, inner = (a, b) if a.circle.r >= b.circle.r else (b, a)
    if _contains(outer.circle, inner.circle):
        offset = np.hypot(outer.circle.cx - inner.circle.cx, outer.circle.cy - inner.circle.cy)
        concentric = offset <= 0.25 * outer.circle.r
        margin = CONCENTRIC_MARGIN if concentric else CONTAINED_MARGIN
        winner = inner if inner.score > outer.score + margin else outer
        return winner is a
    return a.score >= b.score


CONTAINED_MARGIN = 0.1  # a numeral "0" must beat the rim by this much to be taken for the coin
CONCENTRIC_MARGIN = 0.4  # holes are perfect circles: at 0.2, holed coins were boxed round the hole


def _contains(big: Circle, small: Circle) -> bool:
    """``small`` lies inside ``big``, allowing it to poke out by 10% of big's radius (Hough radii wobble)."""
    return float(np.hypot(big.cx - small.cx, big.cy - small.cy)) + small.r <= 1.1 * big.r


def _overlap_of_smaller(a: Circle, b: Circle) -> float:
    """Area of the intersection of two discs over the area of the smaller one."""
    d = float(np.hypot(a.cx - b.cx, a.cy - b.cy))
    r1, r2 = sorted((a.r, b.r))
    if d >= r1 + r2:
        return 0.0
    if d <= r2 - r1:
        return 1.0
    part1 = r1 * r1 * np.arccos(np.clip((d * d + r1 * r1 - r2 * r2) / (2 * d * r1), -1.0, 1.0))
    part2 = r2 * r2 * np.arccos(np.clip((d * d + r2 * r2 - r1 * r1) / (2 * d * r2), -1.0, 1.0))
    part3 = 0.5 * np.sqrt(max(0.0, (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)))
    return float((part1 + part2 - part3) / (np.pi * r1 * r1))


def split_faces(image: Image.Image) -> list[CoinBox]:
    """One box per coin face in a catalogue picture: two for obverse + reverse side by side, else one.

    Two faces are two circles of about the same size (radius ratio <= 1.3, two strikes of the same coin
    photographed alike), level with each other (centres offset across the line joining them by at most
    a third of a radius), close but not overlapping (centre distance 1.7..3 radii), and large (radius >=
    15% of the longer side: a pair of faces is what the picture is about). Otherwise the largest circle
    is the coin; when none is found, the whole picture is returned (score 0) rather than nothing,
    because a catalogue picture always shows a coin.
    """
    found = find_circles(image)
    pair = _face_pair(found, max(image.size))
    if pair:
        return [box_for_circle(item.circle, score=item.score) for item in reading_order(pair)]
    if found:
        largest = max(found, key=lambda item: item.circle.r)
        return [box_for_circle(largest.circle, score=largest.score)]
    return [CoinBox(0, 0, image.width, image.height, score=0.0)]


def face_crops(image: Image.Image) -> list[Image.Image]:
    """The pictures of the faces ``split_faces`` finds, one per face."""
    return [crop_box(image, box) for box in split_faces(image)]


def _face_pair(found: list[ScoredCircle], longer_side: int) -> list[ScoredCircle] | None:
    best, best_score = None, 0.0
    for index, a in enumerate(found):
        for b in found[index + 1 :]:
            r_small, r_large = sorted((a.circle.r, b.circle.r))
            mean_r = (r_small + r_large) / 2
            dx, dy = abs(a.circle.cx - b.circle.cx), abs(a.circle.cy - b.circle.cy)
            along, across = max(dx, dy), min(dx, dy)  # side by side, or one above the other
            if (
                r_large <= 1.3 * r_small
                and r_small >= 0.15 * longer_side
                and across <= mean_r / 3
                and 1.7 * mean_r <= along <= 3 * mean_r
                and a.score + b.score > best_score
            ):
                best, best_score = [a, b], a.score + b.score
    return best
