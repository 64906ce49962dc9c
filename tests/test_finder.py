"""The learned coin finder (coinspotter/finder.py) on generated scenes: touching coins, no coin, a ring that is
not a coin, a bimetallic coin's inner ring; its decoding rules; and its fallback to Hough without its files.

The scenes are drawn here (``synthetic.draw_coin`` and OpenCV), never read from ../shared. The detector is the
bundled one (web-app/models/coin_finder); these tests are skipped only if it is not bundled.
"""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from PIL import Image

from coinspotter import finder as finder_module
from coinspotter.finder import (
    DEFAULT_DIR,
    GRID,
    STRIDE,
    CoinFinder,
    Detection,
    add_touching,
    decode,
    drop_far_smaller,
    one_box_per_coin,
    search,
)
from coinspotter.localize import Circle
from coinspotter.scene_metrics import iou
from coinspotter.synthetic import _paste, _texture, draw_coin

bundled = pytest.mark.skipif(not (DEFAULT_DIR / "coin_finder.h5").exists(), reason="no bundled coin finder")


@pytest.fixture(scope="module")
def finder():
    found = CoinFinder(DEFAULT_DIR, backend="keras")  # the .h5 (the .tflite is checked against it below)
    assert found.load(), found.error
    return found


def scene(circles, background="wood", size=(640, 480), seed=0, extra=None) -> Image.Image:
    rng = np.random.default_rng(seed)
    canvas = _texture(rng, background, *size).astype(np.float32)
    if extra is not None:
        extra(canvas)
    for circle in circles:
        _paste(canvas, draw_coin(rng, int(2 * circle.r) | 1), circle)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def box_of(circle: Circle):
    return (circle.cx - circle.r, circle.cy - circle.r, circle.cx + circle.r, circle.cy + circle.r)


def assert_found(truth: list[Circle], found: list[Detection]):
    assert len(found) == len(truth), f"{len(found)} boxes for {len(truth)} coins: {found}"
    for circle in truth:
        assert max(iou(box_of(circle), (d.x0, d.y0, d.x1, d.y1)) for d in found) >= 0.5, (circle, found)


@bundled
@pytest.mark.parametrize("background, seed", [("wood", 1), ("plain", 2), ("fabric", 3)])
def test_touching_coins_are_two_coins(finder, background, seed):
    a = Circle(250, 240, 60)
    b = Circle(250 + 118, 240, 58)  # touching: centres 118 px apart, radii 60 + 58
    assert_found([a, b], finder.detect(scene([a, b], background, seed=seed)))


@bundled
def test_overlapping_coins_stay_apart(finder):
    a, b = Circle(300, 250, 70), Circle(300 + 120, 250 + 20, 65)  # overlapping by about an eighth
    assert_found([a, b], finder.detect(scene([a, b], "plain", seed=4)))


@bundled
@pytest.mark.parametrize("background, seed", [("wood", 5), ("fabric", 6), ("plain", 7), ("grid", 8)])
def test_no_coin_on_an_empty_table(finder, background, seed):
    assert finder.detect(scene([], background, seed=seed)) == []


@bundled
def test_a_ring_that_is_not_a_coin_is_not_found(finder):
    def rings(canvas):
        cv2.circle(canvas, (200, 240), 70, (40, 40, 40), 3, cv2.LINE_AA)  # a drawn ring
        cv2.circle(canvas, (460, 240), 60, (200, 60, 30), 2, cv2.LINE_AA)
    assert finder.detect(scene([], "plain", seed=9, extra=rings)) == []


@bundled
def test_a_bimetallic_coin_is_one_coin_not_two(finder):
    rng = np.random.default_rng(10)
    canvas = _texture(rng, "wood", 640, 480).astype(np.float32)
    circle = Circle(320, 240, 90)
    coin = draw_coin(rng, 181)
    side = coin.alpha.shape[0]
    yy, xx = np.mgrid[0:side, 0:side] - side / 2 + 0.5
    core = np.hypot(xx, yy) < 0.62 * side / 2
    relief = coin.rgb.mean(axis=2, keepdims=True) / coin.rgb.mean()  # keep the drawn relief, recolour the metal
    silver, brass = relief * np.array([195, 195, 190]), relief * np.array([205, 170, 70])
    coin.rgb[:] = np.clip(np.where(core[..., None], silver, brass), 0, 255)  # a silver core in a brass ring
    _paste(canvas, coin, circle)
    found = finder.detect(Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8)))
    assert_found([circle], found)


@bundled
def test_many_small_coins_are_counted(finder):
    circles = [Circle(80 + 100 * i, 120 + 150 * j, 30) for i in range(5) for j in range(2)]
    assert_found(circles, finder.detect(scene(circles, "plain", seed=11)))


@bundled
def test_the_tflite_file_gives_the_keras_answer(finder):
    pytest.importorskip("ai_edge_litert")
    lite = CoinFinder(DEFAULT_DIR, backend="tflite")
    assert lite.load() and lite.backend == "tflite", lite.error
    picture = scene([Circle(200, 200, 60), Circle(400, 300, 50)], "wood", seed=12)
    keras_out, _ = finder.outputs(picture)
    lite_out, _ = lite.outputs(picture)
    assert np.abs(keras_out[..., 0] - lite_out[..., 0]).max() < 0.02
    assert [(round(d.cx), round(d.cy)) for d in finder.detect(picture)] == \
           [(round(d.cx), round(d.cy)) for d in lite.detect(picture)]


# --- decoding, without a network --------------------------------------------------------------------------


def output_with(peaks, grid=GRID, stride=STRIDE):
    """A network output with the given (x, y, probability, width px, height px) centres, cells of ``stride`` px."""
    output = np.zeros((grid, grid, 5), np.float32)
    for x, y, p, w, h in peaks:
        ix, iy = int(x // stride), int(y // stride)
        output[iy, ix] = [p, np.log(w / stride), np.log(h / stride), x / stride - ix, y / stride - iy]
    return output


@pytest.mark.parametrize("stride", [8, 4])
def test_decode_gives_peaks_above_the_threshold_in_photo_pixels(stride):
    output = output_with([(100, 100, 0.9, 80, 60), (300, 200, 0.2, 40, 40)], GRID * 8 // stride, stride)
    (found,) = decode(output, threshold=0.5, scale=0.5, stride=stride)  # the photo was scaled by a half
    assert (found.x0, found.y0, found.x1, found.y1) == pytest.approx((120, 140, 280, 260), abs=1e-3)
    assert found.score == pytest.approx(0.9)
    # the largest box is the same number of pixels at either stride
    huge = output_with([(192, 192, 0.9, 5000, 5000)], GRID * 8 // stride, stride)
    (capped,) = decode(huge, threshold=0.5, stride=stride)
    assert capped.x1 - capped.x0 == pytest.approx(np.exp(4) * 8, rel=1e-4)


@pytest.mark.parametrize("grid, stride", [(GRID, 8), (64, 8), (128, 4)])  # 384, 512 and 512 input pixels
def test_the_second_look_is_for_a_coin_half_the_photo_across_whatever_the_input_side(grid, stride):
    side, photo_side = grid * stride, 1000
    scale = side / photo_side

    def searched(diameter_share):
        asked = []

        def outputs_at(fill):
            asked.append(fill)
            width = diameter_share * side * fill
            return output_with([(side * fill / 2, side * fill / 2, 0.9, width, width)], grid, stride), scale * fill
        found = finder_module.search(outputs_at, 0.5, 0.7, stride=stride)
        return asked, [round(d.x1 - d.x0) for d in found]

    assert searched(0.3) == ([1.0], [300])  # a coin 0.3 of the photo across: one look
    assert searched(0.6) == ([1.0, 0.5], [600])  # more than half: taken from the second look


def test_second_look_always_finds_the_close_up_boxed_small_at_the_first_look():
    """At the first look a close-up's coin is boxed on its middle (too small to ask for a second look); the
    second look sees it whole. "large" keeps the small box, "always" takes the whole coin in its place."""
    def outputs_at(fill):
        if fill == 1.0:  # a 384-px photo: the first look boxes 120 px in the middle of a 340-px coin
            return output_with([(192, 192, 0.9, 120, 120)]), 1.0
        return output_with([(96, 96, 0.9, 170, 170)]), 0.5  # the whole coin, at half size

    (small,) = finder_module.search(outputs_at, 0.5, 0.7, "large")
    (whole,) = finder_module.search(outputs_at, 0.5, 0.7, "always")
    assert round(small.x1 - small.x0) == 120 and round(whole.x1 - whole.x0) == 340
    with pytest.raises(ValueError, match="second_look"):
        finder_module.search(outputs_at, 0.5, 0.7, "sometimes")


def test_zoom_region_holds_the_coins_found_widened_and_at_most_doubles_the_scale():
    """A 1024 x 768 photo at 384 px (scale 0.375): two 40-px coins near the middle. The box round them, widened by
    a coin's diameter each side, is grown to half the photo's longer side (a 2x zoom at most) round its middle."""
    scale = 384 / 1024

    def first_look(coins):  # (x, y, diameter) in photo pixels
        return output_with([(x * scale, y * scale, 0.9, d * scale, d * scale) for x, y, d in coins])

    region = finder_module.zoom_region(first_look([(500, 400, 40), (560, 420, 40)]), scale, STRIDE, (1024, 768))
    assert region == pytest.approx((274, 154, 786, 666), abs=1)
    # near the photo's corner the region is kept inside it
    corner = finder_module.zoom_region(first_look([(30, 30, 40)]), scale, STRIDE, (1024, 768))
    assert corner[:2] == (0, 0) and corner[2] == pytest.approx(512, abs=1) and corner[3] == pytest.approx(512, abs=1)
    # no zoom: no coin, a close-up's large coin, or coins all over the photo (nothing to enlarge)
    assert finder_module.zoom_region(first_look([]), scale, STRIDE, (1024, 768)) is None
    assert finder_module.zoom_region(first_look([(512, 384, 600)]), scale, STRIDE, (1024, 768)) is None
    assert finder_module.zoom_region(first_look([(60, 60, 40), (960, 700, 40)]), scale, STRIDE, (1024, 768)) is None


def test_zoomed_second_look_adds_the_small_coins_it_sees_but_not_those_its_edge_cuts():
    """The first look finds one coin of a heap; the zoomed look (the photo's region enlarged twice) finds it again,
    a small coin beside it, and a coin cut by the region's edge inside the photo, which is left to the first look.
    Without a coin at the first look the half-size look runs instead."""
    scale = 384 / 1024
    asked = []

    def outputs_at(fill, region=None):
        asked.append(region if region is not None else fill)
        if region is None:
            coins = [(500 * scale, 400 * scale, 0.9, 40 * scale, 40 * scale)] if fill == 1.0 else []
            return output_with(coins), scale * fill
        zoom = 384 / (region[2] - region[0])  # the region's photo pixels to the input's
        in_region = [(500, 400, 0.8, 40), (545, 400, 0.6, 24), (region[0] + 6, 400, 0.9, 30)]
        return output_with([((x - region[0]) * zoom, (y - region[1]) * zoom, p, d * zoom, d * zoom)
                            for x, y, p, d in in_region]), zoom

    found = finder_module.search(outputs_at, 0.5, 0.7, "zoom", photo_size=(1024, 768))
    assert len(asked) == 2 and asked[0] == 1.0 and len(asked[1]) == 4
    assert sorted((round(d.cx), round(d.x1 - d.x0)) for d in found) == [(500, 40), (545, 24)]
    assert [d.score for d in found if round(d.cx) == 500] == [pytest.approx(0.9)]  # the first look's, more sure

    def nothing_at(fill, region=None):
        asked.append(region if region is not None else fill)
        return output_with([]), scale * fill
    asked.clear()
    assert finder_module.search(nothing_at, 0.5, 0.7, "zoom", photo_size=(1024, 768)) == []
    assert asked == [1.0, 0.5]
    with pytest.raises(ValueError, match="photo's size"):
        finder_module.search(outputs_at, 0.5, 0.7, "zoom")


def test_peak_window_one_keeps_small_coins_in_next_cells_and_merges_a_coins_own_cells():
    """Two small coins lying on each other, centres in next cells: a 3 x 3 maximum keeps one; every cell, merged
    by the same-coin overlap, keeps both, and a larger coin's two cells stay one coin."""
    output = output_with([(100, 100, 0.9, 24, 24), (110, 104, 0.8, 24, 24),  # half of each box on the other
                          (200, 200, 0.9, 60, 60), (208, 200, 0.6, 60, 60)])  # one coin, two cells
    served = one_box_per_coin(decode(output, 0.5), 0.7)
    every_cell = one_box_per_coin(decode(output, 0.5, peak_window=1), 0.7)
    assert sorted(round(d.cx) for d in served) == [100, 200]
    assert sorted(round(d.cx) for d in every_cell) == [100, 110, 200]
    with pytest.raises(ValueError, match="peak_window"):
        decode(output, 0.5, peak_window=2)
    with pytest.raises(ValueError, match="peak_window"):
        finder_module.search(lambda fill: (output, 1.0), 0.5, 0.7, "large", peak_window=5)


def test_one_box_per_coin_drops_an_inner_ring_but_keeps_touching_coins():
    coin = Detection(100, 100, 200, 200, 0.9)
    inner = Detection(125, 125, 175, 175, 0.6)  # the core of a bimetallic coin
    touching = Detection(200, 100, 300, 200, 0.8)
    overlapping = Detection(180, 110, 280, 210, 0.7)  # a fifth of it lies on the first coin
    assert one_box_per_coin([inner, coin, touching]) == [coin, touching]
    assert one_box_per_coin([coin, overlapping]) == [coin, overlapping]


# --- without its files --------------------------------------------------------------------------------------


def test_the_size_prior_drops_a_speck_far_smaller_than_the_coins_beside_it_and_nothing_else():
    coins = [Detection(100, 100, 300, 300, 0.9), Detection(400, 100, 580, 280, 0.8), Detection(100, 400, 260, 560, 0.7)]
    speck = Detection(50, 10, 72, 32, 0.41)  # glare 22 px across beside coins about 180 px across
    small_coin = Detection(400, 400, 500, 500, 0.6)  # a 1-cent coin beside 2-euro coins: 0.55 of their size
    assert drop_far_smaller([*coins, speck, small_coin], 0.33) == [*coins, small_coin]
    assert drop_far_smaller([*coins, speck], 0.0) == [*coins, speck]  # 0: the prior is off
    assert drop_far_smaller([coins[0], speck], 0.5) == [coins[0], speck]  # two boxes: no size is typical


def test_a_doubtful_coin_counts_only_where_it_touches_a_sure_one():
    sure = [Detection(100, 100, 300, 300, 0.9)]  # radius 100, centre (200, 200)
    hidden = Detection(270, 150, 370, 250, 0.32)  # half under the sure coin: centres 120 apart, radii 100 + 50
    on_the_table = Detection(600, 600, 700, 700, 0.35)  # as doubtful, alone on open wood: grain or glare
    chained = Detection(380, 150, 480, 250, 0.33)  # touches only the doubtful one
    inner_ring = Detection(150, 150, 250, 250, 0.3)  # inside the sure coin: the same coin
    kept = add_touching(sure, [hidden, on_the_table, chained, inner_ring], threshold=0.4)
    assert kept == [*sure, hidden]
    assert add_touching(sure, [], threshold=0.4) == sure
    assert add_touching([], [hidden, on_the_table], threshold=0.4) == []  # no sure coin: nothing to touch
    # hidden's centre is 120 px from the sure coin's, their radii 100 + 50: 0.8 of the reach it needs
    assert add_touching(sure, [hidden], threshold=0.4, reach=0.85) == [*sure, hidden]
    assert add_touching(sure, [hidden], threshold=0.4, reach=0.75) == sure


def test_a_box_under_the_threshold_is_marked_doubtful_for_the_service(monkeypatch):
    finder = CoinFinder(DEFAULT_DIR)
    finder.card = {"score_threshold": 0.4}
    monkeypatch.setattr(finder, "detect", lambda image: [Detection(10, 10, 110, 110, 0.9),
                                                         Detection(100, 10, 180, 90, 0.33)])
    boxes = finder.locate(Image.new("RGB", (300, 200))).boxes
    assert [(box.score, box.doubtful) for box in boxes] == [(0.9, False), (0.33, True)]
    assert boxes[1].clipped(150, 150).doubtful  # clipping for the API keeps it


def test_the_touching_step_reads_the_first_look_at_its_own_threshold():
    # a 32 x 32 centre map (stride 8, 256 px): a sure coin and a doubtful one touching it, a doubtful one alone
    output = np.zeros((32, 32, 5), dtype=np.float32)
    output[..., 1:3] = np.log(6.0)  # every box 6 cells (48 px) across
    output[..., 3:5] = 0.5
    for (y, x), score in {(10, 10): 0.9, (10, 15): 0.3, (25, 25): 0.3}.items():
        output[y, x, 0] = score

    def outputs_at(fill, region=None):
        return (output, 1.0) if fill == 1.0 else (np.zeros_like(output), 1.0)
    plain = search(outputs_at, 0.4, 0.7, second_look="large", stride=8)
    touching = search(outputs_at, 0.4, 0.7, second_look="large", stride=8, touching_threshold=0.25)
    assert len(plain) == 1 and len(touching) == 2
    assert {round(item.cx) for item in touching} == {84, 124}  # the one alone at (204, 204) stays out
    assert search(outputs_at, 0.4, 0.7, second_look="large", stride=8, touching_threshold=0.5) == plain


def test_without_its_files_the_finder_falls_back_to_hough_and_says_so(tmp_path, caplog):
    missing = CoinFinder(tmp_path / "nowhere")
    picture = scene([Circle(200, 200, 70)], "plain", seed=13)
    with caplog.at_level(logging.WARNING, logger="coinspotter.finder"):
        result = missing.locate(picture)
    assert "falling back to the Hough localiser" in caplog.text
    assert result.method.startswith("hough-edges (coin finder unavailable")
    assert len(result.boxes) == 1  # Hough still finds the coin
    assert missing.locate(picture).boxes == result.boxes  # and the warning is logged once
    assert caplog.text.count("falling back") == 1


def test_a_broken_model_file_falls_back_too(tmp_path):
    (tmp_path / "coin_finder.h5").write_bytes(b"not a model")
    broken = CoinFinder(tmp_path, backend="keras")
    assert not broken.load() and broken.error
    assert broken.locate(Image.new("RGB", (320, 240), (128, 128, 128))).boxes == []


@bundled
@pytest.mark.parametrize("setting, value", [("second_look", "sometimes"), ("peak_window", 2), ("min_size_share", 1.5),
                                            ("touching_threshold", 1.5), ("touch_reach", 0)])
def test_a_card_with_an_unknown_search_setting_falls_back_too(tmp_path, setting, value):
    import json
    import shutil

    shutil.copy(DEFAULT_DIR / "coin_finder.tflite", tmp_path)
    card = json.loads((DEFAULT_DIR / "coin_finder.json").read_text())
    (tmp_path / "coin_finder.json").write_text(json.dumps({**card, setting: value}))
    odd = CoinFinder(tmp_path)
    assert not odd.load() and setting in odd.error
    assert "hough" in odd.locate(Image.new("RGB", (320, 240), (128, 128, 128))).method


@bundled
def test_the_input_side_is_the_model_files_own(finder):
    assert finder.input_side == finder.card.get("input_side", 384)
    assert finder.outputs(Image.new("RGB", (100, 80)))[0].shape[0] * finder.stride == finder.input_side
    assert finder.stride == finder.card.get("stride", STRIDE)


@bundled
def test_the_service_finds_coins_with_the_learned_finder(monkeypatch, finder):
    monkeypatch.setattr(finder_module, "_default", finder)
    a, b = Circle(250, 240, 60), Circle(368, 240, 58)
    result = finder_module.find_coins(scene([a, b], "wood", seed=1))
    assert result.method == "coin-finder (keras)"
    assert len(result.boxes) == 2
    assert [box.cx < 300 for box in result.boxes] == [True, False]  # reading order


@bundled
@pytest.mark.parametrize("picture", [
    Image.new("RGB", (1, 1), (200, 150, 50)),
    Image.new("RGB", (4000, 12), (90, 90, 90)),  # a thin strip: scaled to 384 x 1
    Image.new("L", (300, 200), 128),
    Image.new("RGBA", (300, 200), (10, 20, 30, 0)),
], ids=["1x1", "strip", "grey", "rgba"])
def test_odd_pictures_give_an_answer_not_an_error(finder, picture):
    found = finder.detect(picture)
    assert isinstance(found, list)
    for item in found:
        assert 0 <= item.x0 <= item.x1 <= picture.width and 0 <= item.y0 <= item.y1 <= picture.height


@bundled
def test_a_close_up_coin_filling_the_photo_is_one_coin(finder):
    circle = Circle(200, 200, 180)  # 90% of the picture across: the second, half-size look finds it
    found = finder.detect(scene([circle], "plain", size=(400, 400), seed=14))
    assert_found([circle], found)


@pytest.mark.parametrize("setting, learned", [(None, True), ("learned", True), ("hough", False), (" Hough ", False)])
def test_the_served_search_is_the_learned_finder_unless_hough_is_asked_for(monkeypatch, setting, learned):
    if setting is None:
        monkeypatch.delenv("COINSPOTTER_FINDER", raising=False)
    else:
        monkeypatch.setenv("COINSPOTTER_FINDER", setting)
    monkeypatch.setattr(finder_module, "_default", None)
    chosen = finder_module.default_finder()
    assert (chosen.folder is not None) == learned
    monkeypatch.setattr(finder_module, "_default", None)


def test_the_flip_test_maps_the_mirror_image_back_onto_the_photo():
    from coinspotter.finder import merge_flipped

    def answer(x, offset):  # the network's answer for one coin whose centre is at cell x + offset, row 20
        output = np.zeros((GRID, GRID, 5), np.float32)
        output[20, x] = [0.9, np.log(4.0), np.log(4.0), offset, 0.5]
        return output

    photo, mirrored = answer(10, 0.3), answer(GRID - 1 - 10, 0.7)  # 10.3 cells from the left = 10.3 from the right
    merged = merge_flipped(photo, mirrored)
    assert np.allclose(merged[..., 0], photo[..., 0]) and np.allclose(merged[20, 10], photo[20, 10])
    (found,) = decode(merged, threshold=0.5)
    assert np.isclose(found.cx, 10.3 * STRIDE) and np.isclose(found.x1 - found.x0, 4 * STRIDE)
    # the coin only one view is sure of: half its probability, at the photo's place
    assert np.isclose(merge_flipped(photo, np.zeros_like(photo))[20, 10, 0], 0.45)


@bundled
def test_with_the_flip_test_the_coins_are_still_found_once(monkeypatch, finder, background="wood"):
    circles = [Circle(150, 200, 60), Circle(330, 210, 70)]
    monkeypatch.setitem(finder.card, "flip_test", True)
    assert_found(circles, finder.detect(scene(circles, background, seed=21)))
