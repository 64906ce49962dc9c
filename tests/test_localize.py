"""The coin localiser on generated pictures (no data needed): known circles in, boxes out."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from coinspotter.localize import (
    BOX_MARGIN,
    Circle,
    CoinBox,
    box_for_circle,
    crop_box,
    face_crops,
    locate_coins,
    split_faces,
)
from coinspotter.synthetic import CoinCutout, draw_coin, make_scene

MIN_IOU = 0.7  # a box this close to the true one crops the whole coin with little else


def iou(a: CoinBox, b: CoinBox) -> float:
    ix = max(0, min(a.x1, b.x1) - max(a.x0, b.x0))
    iy = max(0, min(a.y1, b.y1) - max(a.y0, b.y0))
    union = (a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - ix * iy
    return ix * iy / union


def assert_each_coin_boxed(truth: list[Circle], boxes: list[CoinBox], false_finds_allowed: int = 0) -> None:
    """Each coin covered by its own box with IoU >= MIN_IOU, and no other box (or that many at most)."""
    assert len(truth) <= len(boxes) <= len(truth) + false_finds_allowed, f"{len(boxes)} boxes, {len(truth)} coins: {boxes}"
    unused = list(boxes)
    for circle in truth:
        best = max(unused, key=lambda box: iou(box, box_for_circle(circle)))
        assert iou(best, box_for_circle(circle)) >= MIN_IOU, (circle, best)
        unused.remove(best)


def discs(size: tuple[int, int], circles: list[Circle], background=(235, 235, 230), seed: int = 0) -> Image.Image:
    """A plain picture with drawn coins at exactly the given circles."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((size[1], size[0], 3), np.float32) + np.array(background, np.float32)
    for circle in circles:
        coin = draw_coin(rng, int(2 * circle.r) | 1)
        _paste_exact(canvas, coin, circle)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def _paste_exact(canvas: np.ndarray, coin: CoinCutout, circle: Circle) -> None:
    side = coin.alpha.shape[0]
    x0, y0 = int(round(circle.cx - side / 2)), int(round(circle.cy - side / 2))
    height, width = canvas.shape[:2]
    for dy in range(side):
        y = y0 + dy
        if not 0 <= y < height:
            continue
        xs = slice(max(x0, 0), min(x0 + side, width))
        cs = slice(xs.start - x0, xs.stop - x0)
        alpha = coin.alpha[dy, cs, None]
        canvas[y, xs] = alpha * coin.rgb[dy, cs] + (1 - alpha) * canvas[y, xs]


# --- finding coins --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_coins, background, seed",
    [(1, "plain", 1), (2, "gradient", 2), (5, "plain", 3), (5, "clutter", 5), (3, "skin", 6)],
)
def test_every_coin_of_a_scene_gets_its_box(n_coins, background, seed):
    scene = make_scene(np.random.default_rng(seed), n_coins, background=background, touching=False,
                       radius_range=(0.07, 0.16))
    result = locate_coins(scene.image)
    assert result.found
    assert_each_coin_boxed(scene.circles, result.boxes)


@pytest.mark.parametrize("background, seed", [("wood", 4), ("noise", 5)])
def test_every_coin_on_a_striped_or_noisy_table_gets_its_box(background, seed):
    # Stripes and blotches sometimes line up into a ring the edge test accepts (about 1-2% of the finds
    # on such tables in the benchmark; wood seed 4 has one): every coin must still be found.
    scene = make_scene(np.random.default_rng(seed), 5, background=background, touching=False,
                       radius_range=(0.07, 0.16))
    assert_each_coin_boxed(scene.circles, locate_coins(scene.image).boxes, false_finds_allowed=1)


def test_touching_coins_are_two_boxes():
    circles = [Circle(200, 200, 80), Circle(360, 200, 80)]  # centre distance = sum of radii
    result = locate_coins(discs((560, 400), circles))
    assert_each_coin_boxed(circles, result.boxes)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_overlapping_pair_in_a_scene(seed):
    scene = make_scene(np.random.default_rng(seed), 2, background="gradient", touching=True, shadows=True,
                       radius_range=(0.1, 0.16))
    assert scene.touching
    assert_each_coin_boxed(scene.circles, locate_coins(scene.image).boxes)


@pytest.mark.parametrize("background", ["plain", "gradient", "noise", "wood", "clutter"])
def test_no_coin_means_not_found(background):
    scene = make_scene(np.random.default_rng(21), 0, background=background, size=(640, 480))
    result = locate_coins(scene.image)
    assert not result.found
    assert result.boxes == []
    assert "no coin" in result.method


def test_blank_picture_is_not_a_coin():
    result = locate_coins(Image.new("RGB", (640, 480), (128, 128, 128)))
    assert not result.found


def test_coin_filling_the_frame_is_one_box():
    # A catalogue picture: the coin touches all four edges and is cut a little by two of them.
    circle = Circle(150, 146, 152)
    result = locate_coins(discs((300, 290), [circle], background=(255, 255, 255)))
    assert_each_coin_boxed([circle], result.boxes)


def test_holed_coin_is_boxed_round_its_rim_not_its_hole():
    circle = Circle(200, 160, 100)
    picture = np.asarray(discs((400, 320), [circle], background=(40, 60, 90))).copy()
    cv2.circle(picture, (200, 160), 22, (40, 60, 90), -1)  # the hole shows the table
    assert_each_coin_boxed([circle], locate_coins(Image.fromarray(picture)).boxes)


def test_an_offset_hough_circle_snaps_onto_the_rim():
    # Hough circles are a few pixels off; the snap fits a circle to the rim edges near the guess.
    from coinspotter.localize import ScoredCircle, _Edges, _refined, _score

    truth = Circle(190.0, 170.0, 90.0)
    edges = _Edges.of(np.asarray(discs((384, 340), [truth], background=(60, 70, 60))))
    guess = _score(edges, Circle(197.0, 165.0, 84.0))
    snapped = _refined(edges, guess)
    assert isinstance(snapped, ScoredCircle) and snapped.score >= guess.score
    assert np.hypot(snapped.circle.cx - truth.cx, snapped.circle.cy - truth.cy) < 2.0
    assert abs(snapped.circle.r - truth.r) < 2.0


def test_boxes_come_in_reading_order():
    # Two rows; the right coin of the top row sits a little lower, as coins on a table do.
    circles = [Circle(120, 110, 60), Circle(330, 130, 60), Circle(110, 330, 60), Circle(320, 320, 60)]
    boxes = locate_coins(discs((460, 440), circles)).boxes
    centres = [(box.cx, box.cy) for box in boxes]
    expected = [(c.cx, c.cy) for c in circles]
    assert len(centres) == 4
    for (x, y), (ex, ey) in zip(centres, expected):
        assert abs(x - ex) < 10 and abs(y - ey) < 10


def test_large_photo_boxes_are_in_full_resolution_pixels():
    circles = [Circle(900, 1000, 380), Circle(2100, 1100, 420)]
    scene = discs((3000, 2200), circles, background=(90, 120, 70))
    assert_each_coin_boxed(circles, locate_coins(scene).boxes)


# --- boxes and crops ------------------------------------------------------------------------------------


def test_box_is_a_square_with_the_margin_round_the_circle():
    box = box_for_circle(Circle(100.4, 80.6, 40.0), score=0.9)
    assert box.x1 - box.x0 == box.y1 - box.y0 == round(2 * 40.0 * (1 + BOX_MARGIN))
    assert abs((box.x0 + box.x1) / 2 - 100.4) <= 0.5 and abs((box.y0 + box.y1) / 2 - 80.6) <= 0.5
    assert (box.cx, box.cy, box.radius, box.score) == (100.4, 80.6, 40.0, 0.9)


def test_boxes_of_found_coins_are_square_with_margin():
    circle = Circle(160, 130, 70)
    (box,) = locate_coins(discs((320, 260), [circle])).boxes
    side = box.x1 - box.x0
    assert side == box.y1 - box.y0
    assert 2 * 70 * (1 + BOX_MARGIN) * 0.95 <= side <= 2 * 70 * (1 + BOX_MARGIN) * 1.05


def test_box_of_a_coin_at_the_edge_stays_square_and_clips_for_drawing():
    box = box_for_circle(Circle(20, 80, 40))  # side round(2 * 40 * 1.08) = 86, half 43
    assert box.as_list() == [-23, 37, 63, 123]
    assert box.clipped(200, 100).as_list() == [0, 37, 63, 100]
    inside = box_for_circle(Circle(100, 50, 20))
    assert inside.clipped(200, 100) == inside


def test_crop_box_partly_outside_is_padded_with_the_edge_colour():
    array = np.zeros((60, 80, 3), np.uint8)
    array[:, :40] = (200, 10, 10)
    array[:, 40:] = (10, 200, 10)
    image = Image.fromarray(array)
    crop = np.asarray(crop_box(image, CoinBox(-10, -5, 30, 35)))
    assert crop.shape == (40, 40, 3)
    assert (crop == (200, 10, 10)).all()  # the inside part and the padding both show the left colour
    crop = np.asarray(crop_box(image, CoinBox(60, 40, 100, 80)))
    assert crop.shape == (40, 40, 3)
    assert (crop[:20, :20] == array[40:60, 60:80]).all()  # inside: the picture itself
    assert (crop[20:, 20:] == (10, 200, 10)).all()  # outside: the nearest edge pixel


def test_crop_box_inside_is_a_plain_crop():
    array = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    crop = np.asarray(crop_box(Image.fromarray(array), CoinBox(5, 10, 35, 40)))
    assert (crop == array[10:40, 5:35]).all()


# --- two faces ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(600, 300), (400, 400)])
def test_two_faces_side_by_side_split_left_then_right(size):
    width, height = size
    r = min(height / 2, width / 4) * 0.92
    circles = [Circle(width / 4, height / 2, r), Circle(3 * width / 4, height / 2 + 3, r * 0.97)]
    boxes = split_faces(discs(size, circles, background=(255, 255, 255)))
    assert len(boxes) == 2
    assert boxes[0].cx < boxes[1].cx
    for box, circle in zip(boxes, circles):
        assert iou(box, box_for_circle(circle)) >= MIN_IOU


def test_two_faces_one_above_the_other_split_top_then_bottom():
    circles = [Circle(150, 150, 135), Circle(150, 450, 135)]
    boxes = split_faces(discs((300, 600), circles, background=(255, 255, 255)))
    assert [round(box.cy / 100) for box in boxes] == [2, 4]  # 150 and 450, top first


def test_single_coin_picture_gives_one_face():
    circle = Circle(150, 150, 130)
    image = discs((300, 300), [circle], background=(255, 255, 255))
    (box,) = split_faces(image)
    assert iou(box, box_for_circle(circle)) >= MIN_IOU
    (crop,) = face_crops(image)
    assert crop.size == (box.x1 - box.x0, box.y1 - box.y0)


def test_two_coins_of_different_sizes_are_not_two_faces():
    circles = [Circle(150, 150, 130), Circle(450, 180, 70)]
    boxes = split_faces(discs((600, 300), circles, background=(255, 255, 255)))
    assert len(boxes) == 1 and abs(boxes[0].radius - 130) < 10


def test_split_without_any_circle_returns_the_whole_picture():
    (box,) = split_faces(Image.new("RGB", (300, 200), (250, 250, 250)))
    assert (box.as_list(), box.score, box.radius) == ([0, 0, 300, 200], 0.0, None)


# --- synthetic scenes -----------------------------------------------------------------------------------


def test_scenes_are_deterministic_under_a_seed():
    first = make_scene(np.random.default_rng(7), 4)
    second = make_scene(np.random.default_rng(7), 4)
    other = make_scene(np.random.default_rng(8), 4)
    assert first.circles == second.circles and first.background == second.background
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert first.circles != other.circles


def test_scene_circles_lie_inside_and_apart_unless_touching():
    scene = make_scene(np.random.default_rng(3), 6, touching=False)
    width, height = scene.image.size
    for index, a in enumerate(scene.circles):
        assert a.r <= a.cx <= width - a.r and a.r <= a.cy <= height - a.r
        for b in scene.circles[index + 1 :]:
            assert np.hypot(a.cx - b.cx, a.cy - b.cy) > a.r + b.r
    pair = make_scene(np.random.default_rng(3), 2, touching=True).circles
    gap = np.hypot(pair[0].cx - pair[1].cx, pair[0].cy - pair[1].cy)
    assert 0.8 * (pair[0].r + pair[1].r) <= gap <= (pair[0].r + pair[1].r) + 1e-6


def test_scene_coins_are_pasted_at_their_true_circles():
    # Pure red coins on a plain table: red inside each true circle, never just outside it.
    side = 101
    red = CoinCutout(np.zeros((side, side, 3), np.float32) + (255, 0, 0), _disc(side))
    scene = make_scene(np.random.default_rng(5), 4, coins=[red], background="plain", shadows=False,
                       uneven_light=False, touching=False)
    array = np.asarray(scene.image).astype(int)

    def is_red(x: float, y: float) -> bool:
        r, g, b = array[int(round(y)), int(round(x))]
        return r > 225 and g < 30 and b < 30

    for circle in scene.circles:
        for angle in np.linspace(0, 2 * np.pi, 8, endpoint=False):
            inside = (circle.cx + 0.9 * circle.r * np.cos(angle), circle.cy + 0.9 * circle.r * np.sin(angle))
            outside = (circle.cx + 1.1 * circle.r * np.cos(angle), circle.cy + 1.1 * circle.r * np.sin(angle))
            assert is_red(*inside)
            if 0 <= outside[0] < array.shape[1] - 0.5 and 0 <= outside[1] < array.shape[0] - 0.5:
                assert not is_red(*outside)


def _disc(side: int) -> np.ndarray:
    yy, xx = np.mgrid[0:side, 0:side] - side / 2 + 0.5
    return (np.hypot(xx, yy) <= side / 2).astype(np.float32)
