"""Test-time augmentation: turned crops, their averaged probabilities, and the card switch that serves it."""
import json
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from coinspotter.config import REPO_ROOT
from coinspotter.inference import ModelRegistry
from coinspotter.modelcard import ModelCardError, read_card
from coinspotter.tta import RotationAveraged, turned_views
from helpers import coin_picture, write_model_dir


def quadrant_picture() -> Image.Image:
    """Black with a white top-left quadrant: every right-angle turn moves the white corner."""
    array = np.zeros((8, 8, 3), dtype=np.uint8)
    array[:4, :4] = 255
    return Image.fromarray(array)


def test_right_angle_turns_are_exact_and_the_first_view_is_the_picture():
    picture = quadrant_picture()
    views = turned_views(picture, 4)
    assert len(views) == 4
    assert np.array_equal(np.asarray(views[0]), np.asarray(picture))
    # PIL turns counter-clockwise: 90 degrees brings the top-left corner to the bottom-left
    assert np.asarray(views[1])[6, 1].tolist() == [255, 255, 255]
    assert np.asarray(views[1])[1, 1].tolist() == [0, 0, 0]
    assert np.array_equal(np.asarray(views[2]), np.asarray(picture)[::-1, ::-1])


def test_odd_angles_fill_the_corners_with_the_border_colour_not_black():
    picture = Image.new("RGB", (40, 40), (200, 180, 160))
    turned = np.asarray(turned_views(picture, 8)[1])  # 45 degrees
    assert np.abs(turned[0, 0].astype(int) - [200, 180, 160]).max() <= 1


class WhiteCornerModel:
    """Two 'classes': where the white quadrant of a picture lies (top half or bottom half)."""

    class card:
        name = "corner"

    class_ids = [1, 2]

    def __init__(self):
        self.batches = []

    def predict_images(self, images):
        self.batches.append(len(images))
        top = [float(np.asarray(image)[:4].mean() > np.asarray(image)[4:].mean()) for image in images]
        return np.array([[t, 1 - t] for t in top], dtype=np.float32)


def test_probabilities_are_averaged_over_the_turns_in_one_batch():
    inner = WhiteCornerModel()
    averaged = RotationAveraged(inner, 4).predict_images([quadrant_picture(), quadrant_picture()])
    assert inner.batches == [8]
    # top-left, bottom-left, bottom-right, top-right: the corner is on top in two of four turns
    np.testing.assert_allclose(averaged, [[0.5, 0.5], [0.5, 0.5]])
    assert RotationAveraged(inner, 1).predict_images([quadrant_picture()]).tolist() == [[1.0, 0.0]]
    with pytest.raises(ValueError):
        RotationAveraged(inner, 0)


def test_many_pictures_go_to_the_network_in_bounded_batches_in_order():
    inner = WhiteCornerModel()
    pictures = [quadrant_picture() if i % 2 else quadrant_picture().rotate(90) for i in range(9)]
    averaged = RotationAveraged(inner, 8).predict_images(pictures)
    assert max(inner.batches) <= 16 and sum(inner.batches) == 9 * 8
    assert averaged.shape == (9, 2)
    one_by_one = np.concatenate([RotationAveraged(WhiteCornerModel(), 8).predict_images([p]) for p in pictures])
    np.testing.assert_allclose(averaged, one_by_one)


def test_a_card_with_tta_rotations_is_served_averaged(tmp_path):
    models = write_model_dir(tmp_path)
    card_path = models / "student.json"
    card = json.loads(card_path.read_text())
    plain = ModelRegistry(models).get("student").predict_images([coin_picture("green")])
    card["tta_rotations"] = 4
    card_path.write_text(json.dumps(card))
    served = ModelRegistry(models).get("student")
    assert isinstance(served, RotationAveraged) and served.rotations == 4
    turned = served.predict_images([coin_picture("green")])
    assert turned.shape == plain.shape and abs(float(turned.sum()) - 1) < 1e-5
    assert int(turned.argmax()) == int(plain.argmax())  # a centred round coin reads the same at any turn


def test_a_temperature_sharpens_the_average_without_changing_its_ranking():
    from coinspotter.tta import temperature_scaled

    probabilities = np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    sharper = temperature_scaled(probabilities, 0.5)
    np.testing.assert_allclose(sharper.sum(axis=1), 1.0)
    assert sharper.argmax(1).tolist() == [0, 2]
    np.testing.assert_allclose(sharper[0], np.array([0.25, 0.09, 0.04]) / 0.38)  # p^2, renormalised
    assert temperature_scaled(probabilities, 1.0) is probabilities
    with pytest.raises(ValueError):
        RotationAveraged(WhiteCornerModel(), 4, temperature=0)


@pytest.mark.parametrize("field,value", [("tta_temperature", 0), ("tta_temperature", 25), ("tta_temperature", "1"),
                                         ("tta_temperature", True)])
def test_a_card_with_a_bad_tta_temperature_is_refused(tmp_path, field, value):
    models = write_model_dir(tmp_path)
    card_path = models / "student.json"
    card = json.loads(card_path.read_text())
    card[field] = value
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match=field):
        read_card(card_path)


@pytest.mark.parametrize("value", [0, 17, 2.5, True, "4"])
def test_a_card_with_a_bad_tta_setting_is_refused(tmp_path, value):
    models = write_model_dir(tmp_path)
    card_path = models / "student.json"
    card = json.loads(card_path.read_text())
    card["tta_rotations"] = value
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="tta_rotations"):
        read_card(card_path)


# ------------------------------------------------------------------- near-upright views (views.py --max-turn)


def _marker_rows(max_turn_degrees: float, seed: int) -> np.ndarray:
    """Mean row of a bright bar drawn at the top of a dark picture, after each of 12 augmentations."""
    from coinspotter.augment import coin_augmenter

    picture = np.zeros((12, 48, 48, 3), np.float32)
    picture[:, 4:10, 14:34] = 255.0  # a bar near the top edge: where it ends up says how far it was turned
    keras.utils.set_random_seed(seed)
    turned = np.asarray(coin_augmenter(seed=seed, phone_conditions=False, max_turn_degrees=max_turn_degrees)(
        picture, training=True))
    bright = turned.mean(axis=3) > 128
    rows = np.arange(48)[None, :, None]
    return (bright * rows).sum(axis=(1, 2)) / np.maximum(bright.sum(axis=(1, 2)), 1)


def test_near_upright_views_keep_the_top_at_the_top_and_any_angle_views_do_not():
    assert (_marker_rows(12, seed=3) < 20).all()  # turned at most 12°: the bar stays in the top part
    assert (_marker_rows(180, seed=3) > 28).any()  # any angle: some views carry it to the bottom half


@pytest.mark.parametrize("degrees", [-1, 181])
def test_a_turn_limit_outside_half_a_turn_is_refused(degrees):
    from coinspotter.augment import coin_augmenter

    with pytest.raises(ValueError, match="max_turn_degrees"):
        coin_augmenter(max_turn_degrees=degrees)


def test_turn_search_rules_trust_the_turns_that_know_the_coin():
    """Two turns of one picture: one sure of class 1, one unsure leaning to class 2. The mean of all turns
    follows the many unsure turns, the best-quarter and most-confident-turn rules follow the sure one."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import turn_search
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    sure, unsure = [0.05, 0.9, 0.05], [0.3, 0.1, 0.6]
    per_turn = np.array([[unsure, sure, unsure, unsure]])
    rules = {name: int(p.argmax()) for name, p in turn_search.combined(per_turn).items()}
    assert rules == {"first turn only": 2, "mean of all turns": 2,
                     "mean of each class's best quarter of turns": 1, "the most confident turn": 1}


def test_turns_vote_for_the_pictures_angle_and_the_turn_undoing_it_weighs_most():
    """Picture at angle bin 3 of 8: turn j shows bin 3 + j. Each turn guesses its own bin a little noisily,
    one turn is plain wrong; the vote still finds bin 3, so turn 5 (3 + 5 = 8 ≡ 0, upright) weighs most."""
    import orientation

    bins, picture_bin = 8, 3
    guesses = np.full((1, bins, bins), 0.02)
    for j in range(bins):
        guesses[0, j, (picture_bin + j) % bins] = 0.86
    guesses[0, 2] = np.roll(guesses[0, 2], 4)  # one turn fooled
    weights = orientation.turn_weights(guesses)
    assert weights.shape == (1, bins) and np.isclose(weights.sum(), 1.0)
    assert weights[0].argmax() == 5 and weights[0, 5] > 0.9
