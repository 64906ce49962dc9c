"""training/train_finder.py end to end on tiny generated data (seconds): train with close-ups, resume, tune on the
held-out photos, synthetic scenes and catalogue close-ups, export a finder the app can load.

Nothing is read from ../shared: the scenes, the catalogue and the real photos are drawn here.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "training"))

import finder_data  # noqa: E402
import train_finder  # noqa: E402

from coinspotter.finder import GRID, TOUCH_REACH, TOUCH_REACHES, TOUCHING_THRESHOLDS, CoinFinder  # noqa: E402
from coinspotter.localize import Circle  # noqa: E402
from coinspotter.synthetic import _paste, _texture, draw_coin  # noqa: E402


def drawn_photo(rng, circles, size=(320, 240), kind="wood") -> Image.Image:
    canvas = _texture(rng, kind, *size).astype(np.float32)
    for circle in circles:
        _paste(canvas, draw_coin(rng, int(2 * circle.r) | 1), circle)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("finder_data")
    rng = np.random.default_rng(0)
    scenes = root / "scenes"
    (scenes / "images").mkdir(parents=True)
    with open(scenes / "boxes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "x0", "y0", "x1", "y1", "class_id", "source_repo", "source_commit", "source_path",
                         "licence"])
        for index in range(5):  # one source: the 5th photo is held out for tuning
            circles = [Circle(80 + 150 * k, 120, 40) for k in range(1 + index % 2)]
            name = f"images/src__{index}.jpg"
            drawn_photo(rng, circles).save(scenes / name)
            for c in circles:
                writer.writerow([name, c.cx - c.r, c.cy - c.r, c.cx + c.r, c.cy + c.r, "", "r", "c", "p", "l"])
    for split in ("train", "validation"):
        for class_id in ("1", "2"):
            folder = root / "coin-images" / split / class_id
            folder.mkdir(parents=True)
            for index in range(2):
                drawn_photo(rng, [Circle(100, 100, 85)], size=(200, 200), kind="plain").save(folder / f"{index}.jpg")
    (root / "real" / "images").mkdir(parents=True)
    for index in range(3):
        drawn_photo(rng, [Circle(120, 110, 70)], size=(240, 220), kind="plain").save(
            root / "real" / "images" / f"src__{index}.jpg")
    return root


def test_train_resume_tune_and_export_give_a_finder_the_app_loads(data, tmp_path):
    work, out = tmp_path / "work", tmp_path / "export"
    train = ["train", "--scenes", str(data / "scenes"), "--coin-images", str(data / "coin-images"),
             "--real-photos", str(data / "real"), "--weights", "none", "--work", str(work), "--synthetic", "4",
             "--catalogue-faces", "2", "--real-repeat", "1", "--close-ups", "2", "--close-up-pool", "2",
             "--epochs", "1", "--steps", "1", "--batch", "2", "--calibration-batches", "1"]
    assert train_finder.main(train) == 0
    assert json.loads((work / "state.json").read_text())["epochs_done"] == 1
    split = json.loads((work / "split.json").read_text())
    assert split["held_out"] == ["images/src__4.jpg"] and "images/src__4.jpg" not in split["train"]
    close_ups = json.loads((work / "close_ups.json").read_text())
    assert sum("coin-images" in item["path"] for item in close_ups) == 2  # the pool's catalogue pictures
    for item in close_ups:  # each boxed round its one drawn coin, as the classifier's crop is cut
        (box,) = item["boxes"]
        assert abs((box[0] + box[2]) / 2 - (100 if "coin-images" in item["path"] else 120)) < 12
    # resume: one more epoch from the checkpoint, not from scratch
    assert train_finder.main([*train[:train.index("--epochs")], "--epochs", "2", "--steps", "1", "--batch", "2",
                              "--calibration-batches", "1", "--resume"]) == 0
    assert json.loads((work / "state.json").read_text())["epochs_done"] == 2
    assert "resumed from" in (work / "train.log").read_text()

    # a budget of one network run a photo: neither the flip test nor a second look for every photo
    assert train_finder.main(["tune", "--scenes", str(data / "scenes"), "--work", str(work), "--synthetic-check",
                              "2", "--max-runs", "1"]) == 0
    frugal = json.loads((work / "tuning.json").read_text())
    assert not frugal["flip_test"] and frugal["second_look"] == "large" and frugal["max_runs_allowed"] == 1
    assert frugal["second_looks_allowed"] == ["large", "always", "zoom"]
    # the second look restricted to every photo: within the default budget of 2 runs that leaves no flip test
    assert train_finder.main(["tune", "--scenes", str(data / "scenes"), "--work", str(work), "--synthetic-check",
                              "2", "--second-looks", "always"]) == 0
    restricted = json.loads((work / "tuning.json").read_text())
    assert restricted["second_looks_allowed"] == ["always"]
    assert restricted["second_look"] == "always" and not restricted["flip_test"]
    with pytest.raises(SystemExit, match="--max-runs is at least 1"):
        train_finder.main(["tune", "--scenes", str(data / "scenes"), "--work", str(work), "--synthetic-check", "2",
                           "--max-runs", "0"])
    assert train_finder.main(["tune", "--scenes", str(data / "scenes"), "--work", str(work), "--synthetic-check",
                              "2", "--coin-images", str(data / "coin-images"), "--close-up-check", "2"]) == 0
    tuning = json.loads((work / "tuning.json").read_text())
    assert set(tuning["at_choice"]) == {"held-out train photos", "synthetic check scenes (drawn coins)",
                                        "catalogue close-ups (validation)"}
    runs = (2 if tuning["flip_test"] else 1) * (2 if tuning["second_look"] in ("always", "zoom") else 1)
    assert runs <= tuning["max_runs_allowed"] == 2  # the default time budget
    assert train_finder.main(["export", "--work", str(work), "--out", str(out)]) == 0
    card = json.loads((out / "coin_finder.json").read_text())
    assert card["score_threshold"] == tuning["score_threshold"]
    assert card["second_look"] == tuning["second_look"] in ("large", "always", "zoom")
    assert card["peak_window"] == tuning["peak_window"] in (3, 1)
    assert card["touching_threshold"] == tuning["touching_threshold"] in TOUCHING_THRESHOLDS
    assert card["touching_threshold"] is None or card["touching_threshold"] < card["score_threshold"]
    assert card["touch_reach"] == tuning.get("touch_reach", TOUCH_REACH) in TOUCH_REACHES
    assert all(v["network_runs_per_photo"] >= 1 for v in tuning["at_choice"].values())
    assert card["trained"]["arguments"]["epochs"] == 1 and card["trained"]["arguments"]["weights"] == "none"
    finder = CoinFinder(out, backend="keras")
    assert finder.load(), finder.error
    assert card["input_side"] == finder.input_side == 384
    assert finder.outputs(Image.new("RGB", (100, 80)))[0].shape == (GRID, GRID, 5)

    # the exported finder as a run folder again (its run gone): the same network, split and state; tune works on it
    adopted = tmp_path / "adopted"
    assert train_finder.main(["adopt", "--finder", str(out), "--scenes", str(data / "scenes"),
                              "--work", str(adopted)]) == 0
    assert json.loads((adopted / "split.json").read_text()) == split
    assert json.loads((adopted / "state.json").read_text())["epochs_done"] == card["trained"]["epochs"] == 2
    assert json.loads((adopted / "arguments.json").read_text()) == card["trained"]["arguments"]
    adopted_tuning = json.loads((adopted / "tuning.json").read_text())
    assert {key: adopted_tuning[key] for key in train_finder.TUNED_KEYS} == {key: card[key] for key in
                                                                            train_finder.TUNED_KEYS}

    # an integer .tflite of the adopted finder: ranges measured on its training photos; the card keeps the settings
    with pytest.raises(SystemExit):
        train_finder.main(["export", "--work", str(adopted), "--out", str(tmp_path / "int8"), "--int8"])
    assert train_finder.main(["export", "--work", str(adopted), "--out", str(tmp_path / "int8"), "--int8",
                              "--scenes", str(data / "scenes")]) == 0
    int8_card = json.loads((tmp_path / "int8" / "coin_finder.json").read_text())
    assert int8_card["tflite"].startswith("int8") and card["tflite"] == "float32"
    assert {key: int8_card[key] for key in train_finder.TUNED_KEYS} == {key: card[key] for key in
                                                                        train_finder.TUNED_KEYS}
    int8_finder = CoinFinder(tmp_path / "int8", backend="tflite")
    assert int8_finder.load(), int8_finder.error
    int8_output = int8_finder.outputs(Image.new("RGB", (100, 80), (90, 120, 60)))[0]
    assert int8_output.shape == (GRID, GRID, 5) and np.isfinite(int8_output).all()
    # one byte a weight instead of four (how close it stays to the float file is measured on trained finders, in
    # the finder's README: an untrained network's activations give its ranges nothing to hold)
    assert (tmp_path / "int8" / "coin_finder.tflite").stat().st_size < 0.5 * (out / "coin_finder.tflite").stat().st_size
    assert train_finder.main(["tune", "--scenes", str(data / "scenes"), "--work", str(adopted), "--synthetic-check",
                              "2", "--second-looks", "zoom"]) == 0
    again = json.loads((adopted / "tuning.json").read_text())
    assert again["second_look"] == "zoom" and again["network_runs_at_choice"] <= 2

    # a further stage at another input side: the trained weights carried over, the card and the app follow it
    bigger, bigger_out = tmp_path / "bigger", tmp_path / "bigger_export"
    with pytest.raises(SystemExit, match="multiple of 32"):
        train_finder.main([*train[:train.index("--work")], "--work", str(bigger), "--input-side", "100"])
    with pytest.raises(SystemExit, match="--frame-cuts is a share"):
        train_finder.main([*train[:train.index("--work")], "--work", str(bigger), "--frame-cuts", "1.5"])
    assert train_finder.main([*train[:train.index("--work")], "--work", str(bigger), *train[train.index("--work") + 2:],
                              "--init", str(work / "final.keras"), "--input-side", "128", "--frame-cuts", "0.5",
                              "--min-visible", "0.15", "--stride", "4"]) == 0
    assert json.loads((bigger / "arguments.json").read_text())["frame_cuts"] == 0.5
    assert "input side 128, stride 4 (the init model's were 384 and 8)" in (bigger / "train.log").read_text()
    with pytest.raises(SystemExit, match="has stride 4: resume with --stride 4"):
        train_finder.main([*train[:train.index("--work")], "--work", str(bigger), *train[train.index("--work") + 2:],
                           "--input-side", "128", "--resume"])
    (bigger / "tuning.json").write_text((work / "tuning.json").read_text())
    assert train_finder.main(["export", "--work", str(bigger), "--out", str(bigger_out)]) == 0
    small = CoinFinder(bigger_out, backend="tflite")
    assert small.load(), small.error
    assert small.input_side == 128 and small.backend == "tflite" and small.stride == 4
    assert json.loads((bigger_out / "coin_finder.json").read_text())["stride"] == 4
    output, scale = small.outputs(Image.new("RGB", (256, 200)))
    assert output.shape == (32, 32, 5) and np.isclose(scale, 0.5)
    assert isinstance(small.detect(Image.new("RGB", (256, 200))), list)


def test_targets_put_one_peak_per_coin_with_its_size():
    boxes = np.array([[16, 16, 48, 48], [100, 40, 180, 120]], np.float32)
    target = finder_data.encode_targets(boxes)
    assert target[..., 5].sum() == 2 and (target[..., 0] == 1.0).sum() == 2
    assert np.isclose(np.exp(target[4, 4, 1]) * 8, 32)  # centre (32, 32) -> cell (4, 4), width 32 px
    assert np.isclose(np.exp(target[10, 17, 2]) * 8, 80)


def closest_pair_ratio(boxes) -> float:
    """The smallest centre distance over the sum of the two coins' half sizes, over all pairs (9 when < 2)."""
    centres = [((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) / 2) for x0, y0, x1, y1 in boxes]
    return min((np.hypot(ax - bx, ay - by) / (ar + br) for i, (ax, ay, ar) in enumerate(centres)
                for bx, by, br in centres[i + 1:]), default=9.0)


def test_heaps_lay_coins_on_each_other_and_scenes_without_them_do_not():
    from coinspotter.synthetic import make_photo_scene

    def closest(heap_share):
        return [closest_pair_ratio(make_photo_scene(np.random.default_rng([3, index]), 10, hard_negatives=False,
                                                    heap_share=heap_share).boxes) for index in range(8)]

    assert min(closest(0.0)) >= 0.75  # touching at most: a box half size is at most the coin's radius
    assert sum(ratio < 0.75 for ratio in closest(1.0)) >= 4  # most heaps have a coin half on another
    with pytest.raises(ValueError, match="heap_share"):
        make_photo_scene(np.random.default_rng(0), 3, heap_share=1.5)


def test_solid_coins_show_their_edge_on_the_near_side_and_their_box_holds_it():
    from coinspotter.synthetic import _edge_band, _slanted, draw_coin

    _, alpha, _, _ = _slanted(draw_coin(np.random.default_rng(0), 129), 40.0, 0.5, 0.0)
    band, (shift_x, shift_y) = _edge_band(alpha, 6.0, 0.0, 1.0)
    assert np.isclose(shift_x, 0.0, atol=1e-6) and np.isclose(shift_y, 6.0)  # squashed along y: the edge below
    pad = (band.shape[0] - alpha.shape[0]) // 2
    rows = np.flatnonzero((band > 0.5).any(axis=1)) - pad
    face_rows = np.flatnonzero((alpha > 0.5).any(axis=1))
    assert rows.min() == face_rows.min() and rows.max() - face_rows.max() in (5, 6, 7)  # swept 6 px down, not up
    assert band[pad:pad + alpha.shape[0], pad:pad + alpha.shape[1]][alpha > 0.5].min() > 0.5  # under the face too
    _, (shift_x, shift_y) = _edge_band(alpha, 6.0, 90.0, -1.0)  # squashed along x, the near side the other way
    assert np.isclose(shift_x, 6.0) and np.isclose(shift_y, 0.0, atol=1e-6)


def test_solid_heaps_pack_coins_closer_than_the_heaps_before():
    from coinspotter.synthetic import make_photo_scene

    def closest(solid_share):
        return [closest_pair_ratio(make_photo_scene(np.random.default_rng([3, index]), 10, hard_negatives=False,
                                                    heap_share=1.0, solid_share=solid_share).boxes)
                for index in range(12)]

    assert np.median(closest(1.0)) < np.median(closest(0.0))
    with pytest.raises(ValueError, match="solid_share"):
        make_photo_scene(np.random.default_rng(0), 3, solid_share=1.5)


def test_coins_half_hidden_in_a_heap_are_labelled_down_to_the_visible_share():
    from coinspotter.synthetic import make_photo_scene

    def labelled(share):
        return sum(len(make_photo_scene(np.random.default_rng([5, index]), 12, hard_negatives=False, heap_share=1.0,
                                        min_visible_share=share).boxes) for index in range(6))

    everything, served, stages_1_to_7 = labelled(0.0), labelled(0.15), labelled(0.4)
    assert everything >= served > stages_1_to_7  # the same drawn heaps: fewer coins left unlabelled
    with pytest.raises(ValueError, match="min_visible_share"):
        make_photo_scene(np.random.default_rng(0), 3, min_visible_share=-0.1)


def test_frame_cut_clips_coins_at_its_edge_and_leaves_out_slivers():
    image = Image.new("RGB", (200, 100))
    boxes = np.array([[10, 10, 50, 50],      # wholly inside any window that keeps the left part
                      [90, 30, 130, 70],     # in the middle
                      [180, 40, 220, 80]], np.float32)  # half outside the photo already
    rng = np.random.default_rng(0)
    for _ in range(50):
        cut, kept = finder_data.frame_cut(image, boxes, rng)
        assert 100 <= cut.width <= 180 and 50 <= cut.height <= 90
        assert np.all(kept[:, :2] >= 0) and np.all(kept[:, 2] <= cut.width) and np.all(kept[:, 3] <= cut.height)
        assert np.all(kept[:, 2:] - kept[:, :2] >= 2)
        assert len(kept) <= 3
    # the whole photo as the window: a coin a quarter inside stays, clipped; a sliver (under 0.15) is left out
    cut, kept = finder_data.frame_cut(Image.new("RGB", (100, 100)),
                                       np.array([[10, 10, 50, 50], [90, 10, 130, 50], [97, 60, 137, 100]], np.float32),
                                       rng, share=(1.0, 1.0))
    assert cut.size == (100, 100)
    assert kept.tolist() == [[10, 10, 50, 50], [90, 10, 100, 50]]


def test_a_stride_4_finder_starts_from_a_stride_8_one_with_its_weights_and_sizes():
    coarse = train_finder.build_model(None, 64)
    fine = train_finder.build_model(None, 64, stride=4)
    assert train_finder.output_stride(coarse) == 8 and train_finder.output_stride(fine) == 4
    assert fine.output_shape[1:] == (16, 16, 5)
    untouched = fine.get_layer("finder_lateral4_conv").get_weights()[0].copy()
    train_finder.carry_weights(coarse, fine)
    for name in ("block_12_add", "finder_mix2_conv", "finder_heat_out"):
        for mine, theirs in zip(fine.get_layer(name).get_weights(), coarse.get_layer(name).get_weights()):
            assert np.array_equal(mine, theirs)
    # a coin is twice as many cells across: log width and height start log 2 higher, the offsets as they were
    bias, coarse_bias = fine.get_layer("finder_reg_out").get_weights()[1], coarse.get_layer("finder_reg_out").get_weights()[1]
    assert np.allclose(bias[:2] - coarse_bias[:2], np.log(2)) and np.array_equal(bias[2:], coarse_bias[2:])
    assert np.array_equal(fine.get_layer("finder_lateral4_conv").get_weights()[0], untouched)  # only the fine one has it
    with pytest.raises(ValueError, match="stride"):
        train_finder.build_model(None, 64, stride=2)


def test_targets_at_stride_4_are_twice_as_many_cells_across():
    boxes = np.array([[16, 16, 48, 48]], np.float32)
    target = finder_data.encode_targets(boxes, side=128, stride=4)
    assert target.shape == (32, 32, 6) and target[8, 8, 5] == 1.0  # centre (32, 32) -> cell (8, 8) of 4 px
    assert np.isclose(np.exp(target[8, 8, 1]) * 4, 32)
