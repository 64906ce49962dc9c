"""The learned coin finder: a small centre/size heat-map detector (CenterNet-style) on a truncated MobileNetV2.

``find_coins(image) -> LocalizationResult`` is what the page, the API and the command line call. It uses the
bundled detector (``web-app/models/coin_finder/``: a ``.tflite`` run by LiteRT when ``ai_edge_litert`` is
installed, else the ``.h5`` through Keras) and falls back to the Hough localiser (``localize.locate_coins``),
with one logged warning, when the detector's files are missing or cannot be loaded: the app still runs.

How a photo is searched:
1. it is scaled so its longer side is the card's ``input_side`` (``INPUT_SIDE``, 384, when the card does not
   say) and placed top-left on a grey square (``letterbox``);
2. the network gives, on a grid of stride 8 (48 x 48 cells at 384; stride 4 for a finder built so, which the
   loaded file's output shape says), the probability that a coin's centre lies in
   each cell, the coin's width and height (log, in cells) and the centre's offset within the cell (averaged
   with the answer for the mirror image when the card asks for the flip test);
3. a cell is a coin when its probability is at least the card's ``score_threshold`` and, with the card's
   ``peak_window`` 3 (the default), it is the highest of its 3 x 3 neighbourhood; with ``peak_window`` 1 every
   such cell is a candidate and step 4 merges the candidates of one coin (two small coins lying on each other
   can have their centres in next cells, where a 3 x 3 maximum keeps only one); its box is the predicted width
   and height round the predicted centre;
4. one coin, one box (``one_box_per_coin``): of two boxes that cover most of the smaller one (an inner ring,
   a coin found twice, two cells of one coin) only the more probable stays; touching and overlapping coins
   cover each other far less, so both stay;
5. a second look with the photo at half size, and coins at least half the photo across (close-ups) are taken
   from it (``search``); the card's ``second_look`` says when it runs: ``"large"`` when the first look found
   such a coin or none, ``"always"`` for every photo (a close-up's coin can be boxed small, on its middle, at the
   first look, and then nothing asked for the second); ``"zoom"``: when the first look found coins and none
   of them large, the second look is the part of the photo that holds them, enlarged (``zoom_region``), and its
   coins join the first look's, so small coins of a heap are seen larger; otherwise the half-size look;
6. with the card's ``touching_threshold`` (none when it does not say), a cell of the first look under the threshold
   but at or above that one is a coin too where it touches a coin found (``add_touching``): a coin half hidden in
   a heap is scored lower than one in the open, and lies against another;
7. with the card's ``min_size_share`` (0 when it does not say), a box far smaller than the photo's other boxes is
   dropped as glare or a speck (``drop_far_smaller``): coins in one photo lie at about one distance.

The page, the API and the command line use it; ``COINSPOTTER_FINDER=hough`` chooses the Hough localiser instead.
Nothing heavy is imported at module import: LiteRT or TensorFlow is loaded on the first call (or ``load``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from .config import REPO_ROOT
from .localize import Circle, LocalizationResult, ScoredCircle, box_for_circle, locate_coins, reading_order

log = logging.getLogger(__name__)

INPUT_SIDE = 384  # the first finders' input; a card's input_side says another
STRIDE = 8  # input pixels a cell of the output; the loaded network's own (CoinFinder.stride) when it says another
STRIDES = (8, 4)
GRID = INPUT_SIDE // STRIDE
PAD_VALUE = 128  # the grey the letterbox fills with (0 after MobileNetV2's scaling)
DEFAULT_DIR = REPO_ROOT / "web-app" / "models" / "coin_finder"
NAME = "coin_finder"
# Defaults when the card says nothing; the card written by training/train_finder.py --tune overrides them.
SCORE_THRESHOLD = 0.35
SAME_COIN_OVERLAP = 0.7  # intersection over the smaller box's area above which two boxes are one coin
MAX_COINS = 100
PEAK_WINDOWS = (3, 1)  # cells a side of the neighbourhood a centre must top (1: every cell is a candidate)
MAX_CANDIDATES = 1000  # cells kept before merging with peak window 1 (most probable first)
# The second look for a close-up (see search): the photo at this fraction of the input side, and only coins at
# least half the photo across (a radius of LARGE_SHARE of the photo's longer side) are taken from it; such a
# coin at the first look asks for the second.
CLOSE_UP_FILL = 0.5
LARGE_SHARE = 0.25
# The zoomed second look (second_look "zoom"; see zoom_region). Its region is placed by the coins found at a fixed
# threshold, not the card's, so that tuning can keep one zoomed look a photo for every threshold it tries.
ZOOM_SEED_THRESHOLD = 0.3
ZOOM_MAX = 2.0  # at most twice the first look's scale: the region is at least half the photo's longer side
ZOOM_MIN = 1.25  # a smaller gain is not worth a look: the half-size look runs instead


@dataclass(frozen=True)
class Detection:
    """One coin: its tight box (pixels of the original photo) and the probability that it is a coin."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def radius(self) -> float:
        return max(self.x1 - self.x0, self.y1 - self.y0) / 2

    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def letterbox(image: Image.Image, side: int = INPUT_SIDE, fill: float = 1.0) -> tuple[np.ndarray, float]:
    """(side, side, 3) uint8 with the photo scaled to a longer side of ``side * fill`` at the top left, and the
    scale from the photo's pixels to the square's."""
    image = image.convert("RGB")
    longer = max(image.size)
    if longer >= 4 * side:  # a phone photo: a cheap box-filter reduction first, then the fine resize
        image = image.reduce(longer // (2 * side))
    scale = max(1, round(side * fill)) / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = np.asarray(image.resize(size, Image.BILINEAR, reducing_gap=None))
    canvas = np.full((side, side, 3), PAD_VALUE, np.uint8)
    canvas[: size[1], : size[0]] = small
    return canvas, max(1, round(side * fill)) / longer


def model_input(canvas: np.ndarray) -> np.ndarray:
    """MobileNetV2's scaling, x / 127.5 - 1, batch of one."""
    return (canvas.astype(np.float32) / 127.5 - 1.0)[None]


def model_input_pair(canvas: np.ndarray) -> np.ndarray:
    """The letterboxed photo and its mirror image, a batch of two (the flip test: ``merge_flipped``)."""
    return np.concatenate([model_input(canvas), model_input(canvas[:, ::-1])])


def merge_flipped(output: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The mean of the network's answer for a photo and (mapped back) for its mirror image: a coin the network
    is unsure of in one view is often clear in the other. In the mirror a centre at ``x + offset`` cells lies at
    ``GRID - x - offset``, so cell ``x`` mapped back has offset ``1 - mirrored offset``; sizes do not change."""
    back = mirrored[:, ::-1].copy()
    back[..., 3] = 1.0 - back[..., 3]
    return (output + back) / 2


def decode(output: np.ndarray, threshold: float, scale: float = 1.0, max_coins: int = MAX_COINS,
           peak_window: int = 3, stride: int = STRIDE) -> list[Detection]:
    """Cells of the centre map at or above ``threshold`` as boxes in photo pixels (input pixels / ``scale``): with
    ``peak_window`` 3 only the highest of each 3 x 3 neighbourhood (at most ``max_coins``), with 1 every such cell
    (at most ``MAX_CANDIDATES``; ``one_box_per_coin`` merges each coin's).

    ``output``: (GRID, GRID, 5): centre probability, log width and log height in cells, x and y offset; a cell is
    ``stride`` input pixels.
    """
    if peak_window not in PEAK_WINDOWS:
        raise ValueError(f"peak_window is one of {PEAK_WINDOWS}, not {peak_window!r}")
    heat = output[..., 0]
    peaks = heat >= threshold
    if peak_window == 3:
        padded = np.pad(heat, 1, constant_values=-1.0)
        neighbourhood = np.max(np.stack([padded[dy:dy + heat.shape[0], dx:dx + heat.shape[1]]
                                         for dy in range(3) for dx in range(3)]), axis=0)
        peaks &= heat >= neighbourhood
    largest = 4 + np.log(STRIDE / stride)  # the same size limit in pixels (e^4 cells of 8) at any stride
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-heat[ys, xs])[:max_coins if peak_window == 3 else MAX_CANDIDATES]
    detections = []
    for y, x in zip(ys[order], xs[order]):
        log_w, log_h, off_x, off_y = output[y, x, 1:5]
        cx, cy = (x + float(off_x)) * stride, (y + float(off_y)) * stride
        w, h = (float(np.exp(np.clip(value, -3, largest))) * stride for value in (log_w, log_h))
        detections.append(Detection((cx - w / 2) / scale, (cy - h / 2) / scale, (cx + w / 2) / scale,
                                    (cy + h / 2) / scale, float(heat[y, x])))
    return detections


def overlap_of_smaller(a: Detection, b: Detection) -> float:
    ix = max(0.0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y1, b.y1) - max(a.y0, b.y0))
    smaller = min(a.area(), b.area())
    return ix * iy / smaller if smaller > 0 else 0.0


def one_box_per_coin(detections: list[Detection], same_coin: float = SAME_COIN_OVERLAP) -> list[Detection]:
    """Most probable first; a box covering ``same_coin`` or more of a kept one's (or its own) area goes."""
    kept: list[Detection] = []
    for item in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(overlap_of_smaller(item, other) < same_coin for other in kept):
            kept.append(item)
    return kept


# Coins in one photo lie at about one distance from the camera, so their sizes differ by little more than the
# coins' own (a 1-cent and a 2-euro coin: 16 and 26 mm). With MIN_BOXES_FOR_SIZE_PRIOR boxes or more, a box under
# the card's min_size_share of their median radius is taken for a speck of glare, not a coin (0: keep every box).
MIN_BOXES_FOR_SIZE_PRIOR = 3
# What tune chooses from (0 first, so that it wins a tie). Bounded: the catalogue's coins range about 2 to 1 in
# diameter and a slant shrinks one more, so a share of half the median dropped real small coins beside large ones
# (session 14: the synthetic-scene benchmark's recall fell from 0.994 to 0.906 at 0.5; the finder's README).
SIZE_SHARES = (0.0, 0.2, 0.25)


def drop_far_smaller(found: list[Detection], min_size_share: float) -> list[Detection]:
    """``found`` less the boxes whose radius is under ``min_size_share`` of the median radius, when there are at
    least ``MIN_BOXES_FOR_SIZE_PRIOR`` (with fewer, no size is typical)."""
    if min_size_share <= 0 or len(found) < MIN_BOXES_FOR_SIZE_PRIOR:
        return found
    typical = float(np.median([item.radius for item in found]))
    return [item for item in found if item.radius >= min_size_share * typical]


# A coin half hidden in a heap shows less of itself, and the network scores it lower than a coin in the open: a
# lower threshold finds it, but on open table it also finds wood grain and glare. So a cell under the card's
# threshold but at or above its touching_threshold is a coin only when its circle reaches a coin found at the full
# threshold (centres at most the card's touch_reach times the two radii apart: 1 is touching, under 1 overlapping):
# it lies against a sure coin, as a heap's do.
# What tune chooses from, the first winning a tie: the touching threshold (None: off) and the reach.
TOUCHING_THRESHOLDS = (None, 0.2, 0.25, 0.3)
TOUCH_REACH = 1.1  # when the card does not say (the first served card, session 15)
TOUCH_REACHES = (1.1, 0.95, 0.8)


def _corners(items: list[Detection]) -> np.ndarray:
    """Boxes as rows x0, y0, x1, y1."""
    return np.array([(item.x0, item.y0, item.x1, item.y1) for item in items], dtype=np.float64).reshape(-1, 4)


def _centres_and_radii(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (boxes[:, :2] + boxes[:, 2:]) / 2, np.max(boxes[:, 2:] - boxes[:, :2], axis=1) / 2  # Detection.radius


def add_touching(found: list[Detection], candidates: list[Detection], threshold: float,
                 same_coin: float = SAME_COIN_OVERLAP, reach: float = TOUCH_REACH) -> list[Detection]:
    """``found`` (the coins at the full ``threshold``) and, most probable first, each of ``candidates`` (decoded at
    a lower threshold) scored under ``threshold`` whose circle reaches a coin of ``found`` (centres at most
    ``reach`` times the two radii apart) and that is not a coin already kept (a box covering ``same_coin`` of
    it or of one kept, as ``one_box_per_coin``). One step: a candidate must touch a sure coin, not another
    candidate, so a chain of doubtful boxes cannot grow across the table. In arrays, because with peak window 1
    every cell above the lower threshold is a candidate (up to ``MAX_CANDIDATES``)."""
    sure = [item for item in found if item.score >= threshold]
    doubtful = sorted((item for item in candidates if item.score < threshold), key=lambda d: d.score, reverse=True)
    if not sure or not doubtful:
        return list(found)
    doubtful_boxes = _corners(doubtful)
    (doubtful_centres, doubtful_radii), (sure_centres, sure_radii) = map(_centres_and_radii,
                                                                        (doubtful_boxes, _corners(sure)))
    gaps = np.linalg.norm(doubtful_centres[:, None] - sure_centres[None], axis=2)
    touching = np.any(gaps <= reach * (doubtful_radii[:, None] + sure_radii[None]), axis=1)
    kept, kept_boxes = list(found), _corners(found)
    for index in np.flatnonzero(touching):  # most probable first
        box = doubtful_boxes[index]
        sides = np.minimum(kept_boxes[:, 2:], box[2:]) - np.maximum(kept_boxes[:, :2], box[:2])
        inter = np.prod(np.clip(sides, 0, None), axis=1)
        smaller = np.minimum(np.prod(np.maximum(kept_boxes[:, 2:] - kept_boxes[:, :2], 0), axis=1),
                             doubtful[index].area())
        covered = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)  # overlap_of_smaller
        if np.all(covered < same_coin):
            kept.append(doubtful[index])
            kept_boxes = np.vstack([kept_boxes, box])
    return kept


SECOND_LOOKS = ("large", "always", "zoom")


def _widen(low: float, high: float, least: float, limit: float) -> tuple[float, float]:
    """The span [low, high] grown round its middle to at least ``least`` (or all of [0, limit]), kept inside."""
    least = min(least, limit)
    if high - low < least:
        middle = (low + high) / 2
        low, high = middle - least / 2, middle + least / 2
    shift = max(0.0, -low) - max(0.0, high - limit)
    return max(0.0, low + shift), min(limit, high + shift)


def zoom_region(output: np.ndarray, scale: float, stride: int, photo_size: tuple[int, int]) -> tuple | None:
    """Where the zoomed second look looks (photo pixels, whole numbers: x0, y0, x1, y1), or None when it should
    not: the box round the coins of the first look's ``output`` at ``ZOOM_SEED_THRESHOLD``, widened by their median
    diameter on each side (a heap's edge coins the first look missed lie there), grown to at least 1 / ``ZOOM_MAX``
    of the photo's longer side and kept inside the photo. None when no coin is found, one is large (a close-up: the
    half-size look is what it needs) or the region would be enlarged less than ``ZOOM_MIN`` times."""
    width, height = photo_size
    longer = max(width, height)
    seeds = one_box_per_coin(decode(output, ZOOM_SEED_THRESHOLD, scale, stride=stride))
    if not seeds or any(item.radius >= LARGE_SHARE * longer for item in seeds):
        return None
    margin = float(np.median([2 * item.radius for item in seeds]))
    x0, x1 = _widen(min(d.x0 for d in seeds) - margin, max(d.x1 for d in seeds) + margin, longer / ZOOM_MAX, width)
    y0, y1 = _widen(min(d.y0 for d in seeds) - margin, max(d.y1 for d in seeds) + margin, longer / ZOOM_MAX, height)
    region = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
    if longer / max(region[2] - region[0], region[3] - region[1]) < ZOOM_MIN:
        return None
    return region


def search(outputs_at, threshold: float, same_coin: float, second_look: str = "large",
           peak_window: int = 3, stride: int = STRIDE, photo_size: tuple[int, int] | None = None,
           touching_threshold: float | None = None, touch_reach: float = TOUCH_REACH) -> list[Detection]:
    """The coins of one photo, from ``outputs_at(fill)``: the network's output and letterbox scale with the photo
    at ``fill`` of the input side (and, for the zoomed look, ``outputs_at(1.0, region)``: those of the photo's
    ``region``, x0, y0, x1, y1, filling the input). Shared by serving (``CoinFinder.detect``) and tuning (which
    caches outputs).

    A coin at least half the photo across is taken from a second look with the photo at half size
    (``CLOSE_UP_FILL``), where it has a size the network knows well: at full size such a close-up is found
    but boxed too small, on its middle (measured on catalogue close-ups of the validation split). With
    ``second_look="large"`` it runs only when the first finds nothing or such a large coin; with ``"always"``
    for every photo (twice the network's time); with ``"zoom"`` it runs when ``zoom_region`` (which needs the
    photo's ``photo_size``, width and height) gives no region, and otherwise the zoomed look runs instead: the
    coins it finds join the first look's (one box a coin), but not those cut by the region's edge inside the
    photo (they are the first look's, or partly outside). ``peak_window`` and ``stride``: see ``decode``. With a
    ``touching_threshold`` under ``threshold``, the first look's cells from it up are added where they reach a
    coin found (``add_touching``, with ``touch_reach``)."""
    if second_look not in SECOND_LOOKS:
        raise ValueError(f"second_look is one of {SECOND_LOOKS}, not {second_look!r}")
    if peak_window not in PEAK_WINDOWS:
        raise ValueError(f"peak_window is one of {PEAK_WINDOWS}, not {peak_window!r}")
    if second_look == "zoom" and photo_size is None:
        raise ValueError("the zoomed second look needs the photo's size")
    output, scale = outputs_at(1.0)
    large_radius = LARGE_SHARE * output.shape[0] * stride / scale  # in photo pixels: a quarter of its longer side
    found = one_box_per_coin(decode(output, threshold, scale, peak_window=peak_window, stride=stride), same_coin)
    has_large = any(item.radius >= large_radius for item in found)
    region = zoom_region(output, scale, stride, photo_size) if second_look == "zoom" and found and not has_large \
        else None
    if region is not None:
        zoomed, zoom_scale = outputs_at(1.0, region)
        x0, y0, x1, y1 = region
        edge = 2 * stride / zoom_scale  # two cells of the zoomed look, in photo pixels
        inner = (x0 > 0, y0 > 0, x1 < photo_size[0], y1 < photo_size[1])
        more = []
        for item in decode(zoomed, threshold, zoom_scale, peak_window=peak_window, stride=stride):
            item = Detection(item.x0 + x0, item.y0 + y0, item.x1 + x0, item.y1 + y0, item.score)
            cut = (inner[0] and item.x0 <= x0 + edge, inner[1] and item.y0 <= y0 + edge,
                   inner[2] and item.x1 >= x1 - edge, inner[3] and item.y1 >= y1 - edge)
            if not any(cut):
                more.append(item)
        found = one_box_per_coin(found + more, same_coin)
    elif second_look in ("always", "zoom") or not found or has_large:
        output, scale = outputs_at(CLOSE_UP_FILL)
        close = [item for item in one_box_per_coin(decode(output, threshold, scale, peak_window=peak_window,
                                                          stride=stride), same_coin)
                 if item.radius >= large_radius]
        found = [item for item in found if all(overlap_of_smaller(item, other) < same_coin for other in close)]
        found += close
    if touching_threshold is not None and touching_threshold < threshold:
        output, scale = outputs_at(1.0)
        found = add_touching(found, decode(output, touching_threshold, scale, peak_window=peak_window,
                                           stride=stride), threshold, same_coin, touch_reach)
    return found


def clip_detection(item: Detection, width: int, height: int) -> Detection:
    return Detection(max(0.0, item.x0), max(0.0, item.y0), min(float(width), item.x1), min(float(height), item.y1),
                     item.score)


class CoinFinder:
    """The detector's files, loaded once (thread-safe), and the search of one photo."""

    def __init__(self, folder: Path | str | None = DEFAULT_DIR, backend: str | None = None):
        self.folder = Path(folder) if folder is not None else None  # None: Hough only, by choice (no warning)
        self.backend_wanted = backend or os.environ.get("COINSPOTTER_FINDER_BACKEND", "auto")  # auto|tflite|keras
        self.card: dict = {}
        self._run = None
        self.backend: str | None = None
        self._side: int | None = None  # the loaded network's input side
        self._grid: int | None = None  # and its output's cells a side
        self.error: str | None = None
        self._lock = threading.Lock()
        self._loaded = False

    @property
    def score_threshold(self) -> float:
        return float(self.card.get("score_threshold", SCORE_THRESHOLD))

    @property
    def same_coin_overlap(self) -> float:
        return float(self.card.get("same_coin_overlap", SAME_COIN_OVERLAP))

    @property
    def input_side(self) -> int:
        """The side of the network's square input: the loaded file's own (the card's ``input_side`` says the same;
        384 for finders before it)."""
        return self._side or int(self.card.get("input_side", INPUT_SIDE))

    @property
    def stride(self) -> int:
        """Input pixels a cell of the output: the loaded network's (8, or 4 for a finder built so)."""
        return self.input_side // self._grid if self._grid else STRIDE

    @property
    def min_size_share(self) -> float:
        """Boxes under this share of the photo's median box radius are dropped (``drop_far_smaller``; 0: none)."""
        return float(self.card.get("min_size_share", 0.0))

    @property
    def touching_threshold(self) -> float | None:
        """Cells from this score up (under ``score_threshold``) are coins where they touch one (``add_touching``;
        None, the default: off)."""
        value = self.card.get("touching_threshold")
        return None if value is None else float(value)

    @property
    def touch_reach(self) -> float:
        """How far a doubtful cell's circle may be from a sure coin's, in their two radii (``add_touching``)."""
        return float(self.card.get("touch_reach", TOUCH_REACH))

    @property
    def second_look(self) -> str:
        """Which second look runs, and when (``search``): ``"large"`` (the default), ``"always"`` or ``"zoom"``."""
        return str(self.card.get("second_look", "large"))

    @property
    def peak_window(self):
        """Cells a side of the neighbourhood a coin's centre must top (``decode``): 3 (the default) or 1."""
        return self.card.get("peak_window", 3)

    @property
    def flip_test(self) -> bool:
        """Whether the card asks for the flip test (``merge_flipped``): twice the network's time."""
        return bool(self.card.get("flip_test", False))

    def load(self) -> bool:
        """Load the detector once; False (and ``error`` says why) when it cannot be."""
        with self._lock:
            if self._loaded:
                return self._run is not None
            self._loaded = True
            if self.folder is None:
                self.error = "Hough localiser chosen (COINSPOTTER_FINDER=hough)"
                return False
            try:
                card_path = self.folder / f"{NAME}.json"
                self.card = json.loads(card_path.read_text()) if card_path.exists() else {}
                if self.second_look not in SECOND_LOOKS:
                    raise ValueError(f"the card's second_look is one of {SECOND_LOOKS}, not {self.second_look!r}")
                if self.peak_window not in PEAK_WINDOWS:
                    raise ValueError(f"the card's peak_window is one of {PEAK_WINDOWS}, not {self.peak_window!r}")
                if not 0 <= self.min_size_share < 1:
                    raise ValueError(f"the card's min_size_share is in [0, 1), not {self.min_size_share!r}")
                if self.touching_threshold is not None and not 0 < self.touching_threshold < 1:
                    raise ValueError(f"the card's touching_threshold is in (0, 1) or null, not "
                                     f"{self.touching_threshold!r}")
                if not 0 < self.touch_reach <= 2:
                    raise ValueError(f"the card's touch_reach is in (0, 2], not {self.touch_reach!r}")
                self._run, self.backend, self._side, self._grid = self._load_model()
                if self.stride not in STRIDES:
                    raise ValueError(f"the network's output is {self._grid} cells for {self._side} px, a stride of "
                                     f"{self._side / self._grid:g}, not one of {STRIDES}")
            except Exception as error:  # a missing or broken file: the app keeps working with Hough
                self.error = f"{type(error).__name__}: {error}"
                self._run = None
                log.warning("Coin finder not loaded from %s (%s); falling back to the Hough localiser",
                            self.folder, self.error)
            return self._run is not None

    def _load_model(self):
        tflite, h5 = self.folder / f"{NAME}.tflite", self.folder / f"{NAME}.h5"
        wanted = self.backend_wanted
        if wanted in ("auto", "tflite") and tflite.exists():
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                if wanted == "tflite":
                    raise
            else:
                interpreter = Interpreter(model_path=str(tflite), num_threads=_threads())
                interpreter.allocate_tensors()
                input_index = interpreter.get_input_details()[0]["index"]
                output_index = interpreter.get_output_details()[0]["index"]
                lock = threading.Lock()  # one interpreter: one call at a time

                def run_tflite(batch: np.ndarray) -> np.ndarray:
                    with lock:
                        interpreter.set_tensor(input_index, batch)
                        interpreter.invoke()
                        return interpreter.get_tensor(output_index)[0].copy()

                return (run_tflite, "tflite", int(interpreter.get_input_details()[0]["shape"][1]),
                        int(interpreter.get_output_details()[0]["shape"][1]))
        if wanted in ("auto", "keras"):
            if not h5.exists():
                raise FileNotFoundError(f"no {h5.name} or usable {tflite.name} in {self.folder}")
            from .inference import load_keras_model

            model = load_keras_model(h5)
            import tensorflow as tf

            predict = tf.function(lambda batch: model(batch, training=False), reduce_retracing=True)

            def run_keras(batch: np.ndarray) -> np.ndarray:
                return np.asarray(predict(batch))[0]

            return run_keras, "keras", int(model.input_shape[1]), int(model.output_shape[1])
        raise FileNotFoundError(f"no {tflite.name} in {self.folder} (backend {wanted!r})")

    def outputs(self, image: Image.Image, fill: float = 1.0) -> tuple[np.ndarray, float] | None:
        """The network's raw (side / stride, side / stride, 5) output for ``image`` and the letterbox scale; None
        without a model."""
        if not self.load():
            return None
        canvas, scale = letterbox(image, side=self.input_side, fill=fill)
        if self.flip_test:
            return merge_flipped(self._run(model_input(canvas)), self._run(model_input(canvas[:, ::-1]))), scale
        return self._run(model_input(canvas)), scale

    def detect(self, image: Image.Image, threshold: float | None = None) -> list[Detection] | None:
        """The coins' tight boxes in photo pixels (clipped to it), most probable first; None without a model."""
        raw = self.outputs(image)
        if raw is None:
            return None
        threshold = self.score_threshold if threshold is None else threshold

        def outputs_at(fill: float, region: tuple | None = None):
            if region is not None:
                return self.outputs(image.crop(region), fill=fill)
            return raw if fill == 1.0 else self.outputs(image, fill=fill)
        found = search(outputs_at, threshold, self.same_coin_overlap, self.second_look, self.peak_window,
                       self.stride, photo_size=image.size, touching_threshold=self.touching_threshold,
                       touch_reach=self.touch_reach)
        found = drop_far_smaller(found, self.min_size_share)
        return [clip_detection(item, image.width, image.height) for item in found]

    def locate(self, image: Image.Image) -> LocalizationResult:
        """As ``localize.locate_coins``: square crop boxes in reading order, or the Hough result without a model."""
        found = self.detect(image)
        if found is None:
            result = locate_coins(image)
            result.method = f"hough-edges ({self.error})" if self.folder is None else \
                f"hough-edges (coin finder unavailable: {self.error})"
            return result
        if not found:
            return LocalizationResult([], method=f"coin-finder ({self.backend}): no coin found")
        circles = [ScoredCircle(Circle(d.cx, d.cy, d.radius), d.score, 1.0) for d in found]
        # a box under the threshold came in by the touching step: the service keeps it out of the total
        boxes = [replace(box_for_circle(item.circle, score=item.score), doubtful=item.score < self.score_threshold)
                 for item in reading_order(circles)]
        return LocalizationResult(boxes, method=f"coin-finder ({self.backend})")


def _threads() -> int:
    return int(os.environ.get("COINSPOTTER_FINDER_THREADS", "0") or 0) or min(2, os.cpu_count() or 1)


_default: CoinFinder | None = None
_default_lock = threading.Lock()


def configured_dir() -> Path:
    """The finder folder the app serves: ``COINSPOTTER_FINDER_DIR``, else the bundled one."""
    return Path(os.environ.get("COINSPOTTER_FINDER_DIR") or DEFAULT_DIR)


def default_finder() -> CoinFinder:
    """The process's finder: the learned detector (from ``COINSPOTTER_FINDER_DIR`` or the bundled folder), or
    Hough's circles when ``COINSPOTTER_FINDER=hough`` asks for them (the tests of the page's plumbing do: their
    flat painted discs are rightly not coins to the detector)."""
    global _default
    with _default_lock:
        if _default is None:
            hough = os.environ.get("COINSPOTTER_FINDER", "learned").strip().lower() == "hough"
            _default = CoinFinder(None if hough else configured_dir())
        return _default


def find_coins(image: Image.Image) -> LocalizationResult:
    """Every coin in ``image`` (square crop boxes, reading order), by the learned finder or, without it, Hough."""
    return default_finder().locate(image)
