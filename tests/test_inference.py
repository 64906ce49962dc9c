import numpy as np
import pytest

from coinspotter.inference import ModelRegistry
from coinspotter.layers import BilinearPooling
from coinspotter.modelcard import ModelCard, ModelCardError
from helpers import EXPECTED_CLASS, TINY_CLASS_IDS, build_colour_model, coin_picture, write_model_dir


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    registry = ModelRegistry(write_model_dir(tmp_path_factory.mktemp("models")))
    registry.load_all()
    return registry


@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_saved_h5_model_classifies_by_its_card(registry, colour):
    student = registry.get("student")
    probabilities = student.predict_images([coin_picture(colour)])
    assert probabilities.shape == (1, 3)
    assert abs(probabilities.sum() - 1) < 1e-5
    assert student.class_ids[int(probabilities.argmax())] == EXPECTED_CLASS[colour]


def test_a_batch_gives_the_same_answers_as_single_images(registry):
    student = registry.get("student")
    pictures = [coin_picture(c) for c in ("red", "green", "blue", "green")]
    batch = student.predict_images(pictures)
    singles = np.concatenate([student.predict_images([p]) for p in pictures])
    np.testing.assert_allclose(batch, singles, atol=1e-6)


def test_ensemble_averages_its_members(registry):
    ensemble = registry.get("ensemble")
    pictures = [coin_picture("blue")]
    expected = (registry.get("member_a").predict_images(pictures) + registry.get("member_b").predict_images(pictures)) / 2
    np.testing.assert_allclose(ensemble.predict_images(pictures), expected, atol=1e-6)
    assert set(registry.available) == {"student", "member_a", "member_b", "ensemble"}


def test_missing_file_and_mismatched_card_are_reported_not_raised(tmp_path):
    build_colour_model().save(tmp_path / "wrong.h5")
    ModelCard(name="wrong", display_name="w", architecture="a", class_ids=[1, 2], input_size=32, file="wrong.h5").save(
        tmp_path / "wrong.json"
    )
    ModelCard(name="gone", display_name="g", architecture="a", class_ids=TINY_CLASS_IDS, file="gone.h5").save(tmp_path / "gone.json")
    registry = ModelRegistry(tmp_path)
    registry.load_all(warm_up=False)
    assert "outputs" in registry.unavailable["wrong"]
    assert "missing" in registry.unavailable["gone"]
    with pytest.raises(ModelCardError):
        registry.get("nothing-here")


def test_bilinear_layer_survives_h5_save_and_load(tmp_path):
    import keras

    inputs = keras.Input((5, 5, 3))
    outputs = BilinearPooling()(inputs)
    model = keras.Model(inputs, outputs)
    x = np.random.default_rng(0).normal(size=(2, 5, 5, 3)).astype("float32")
    model.save(tmp_path / "bilinear.h5")
    loaded = keras.models.load_model(tmp_path / "bilinear.h5", compile=False)
    np.testing.assert_allclose(model(x), loaded(x), atol=1e-6)
    # by hand: mean outer product over locations, signed root, unit length
    flat = x.reshape(2, 25, 3)
    outer = np.einsum("bli,blj->bij", flat, flat).reshape(2, 9) / 25
    root = np.sign(outer) * np.sqrt(np.abs(outer) + 1e-8)
    np.testing.assert_allclose(loaded(x), root / np.linalg.norm(root, axis=1, keepdims=True), atol=1e-5)
