"""Test-time augmentation: turned crops, their averaged probabilities, and the card switch that serves it."""
import json

import numpy as np
import pytest
from PIL import Image

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
