"""Grad-CAM (coinspotter.explain) on real tiny Keras models: real gradients, checked against the formula worked
out by hand, and the pictures the page, the API and the CLI hand out."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from coinspotter.explain import (PNG_URL_PREFIX, ExplainError, GradCam, explainer_for, feature_layer, layer_label,
                                 png_bytes)
from coinspotter.inference import ModelRegistry
from coinspotter.preprocessing import batch_model_input
from coinspotter.tta import RotationAveraged
from helpers import TINY_CLASS_IDS, build_colour_model, coin_picture, write_model_dir

RED, GREEN, BLUE = range(3)  # the colour model's output indices


def inputs(*pictures, size=32):
    return batch_model_input(list(pictures), size)


def coin_at(corner: bool) -> Image.Image:
    """A red coin in the middle of a white picture, or small in its upper left corner."""
    if not corner:
        return coin_picture("red", (64, 64))
    picture = Image.new("RGB", (64, 64), (250, 250, 250))
    picture.paste(coin_picture("red", (24, 24)), (0, 0))
    return picture


@pytest.fixture(scope="module")
def colour_model():
    return build_colour_model()


@pytest.fixture(scope="module")
def conv_model():
    """A small convolutional classifier shaped like the bundled student: a nested backbone whose last layer is
    ``out_relu``, global pooling, a logits layer and a separate softmax."""
    import keras

    rng = np.random.default_rng(7)
    picture = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same")(picture)
    x = keras.layers.ReLU(name="out_relu")(keras.layers.Conv2D(6, 3, strides=2, padding="same")(x))
    backbone = keras.Model(picture, x, name="backbone")
    inputs_ = keras.Input((32, 32, 3), name="picture")
    features = backbone(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs_))
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D(name="pool")(features))
    model = keras.Model(inputs_, keras.layers.Activation("softmax", name="probabilities")(logits))
    for layer in model.layers:  # weights from a fixed seed: the test does not depend on Keras's initialisers
        layer.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in layer.get_weights()])
    return model


def test_the_layer_explained_is_the_last_convolutional_block(colour_model, conv_model):
    assert feature_layer(conv_model).name == "backbone"  # nested, as MobileNetV2 is in the student
    assert layer_label(feature_layer(conv_model)) == "out_relu"
    assert feature_layer(colour_model).name.startswith("rescaling")  # the only 4-D layer before the pooling


def test_heat_maps_have_the_feature_maps_shape_and_lie_in_0_to_1(colour_model, conv_model):
    pictures = [coin_picture(colour, (48, 48)) for colour in ("red", "green", "blue")]
    maps = GradCam(colour_model).heatmaps(inputs(*pictures), [RED, GREEN, BLUE])
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1)  # each scaled so its peak is 1
    conv_maps = GradCam(conv_model).heatmaps(inputs(*pictures), [0, 1, 2])
    assert conv_maps.shape == (3, 8, 8) and 0 <= conv_maps.min() and conv_maps.max() <= 1


def test_the_predicted_class_lights_up_the_coin_not_the_background(colour_model):
    (heat,) = GradCam(colour_model).heatmaps(inputs(coin_picture("red", (32, 32))), [RED])
    yy, xx = np.mgrid[:32, :32]
    distance = np.hypot(yy - 15.5, xx - 15.5)
    assert heat[distance < 10].mean() > 0.9  # the red disc (radius 12.8 px)
    assert heat[distance > 15].max() < 0.05  # the white corners say nothing for "red"


def test_the_map_differs_between_classes_and_follows_the_coin(colour_model):
    grad_cam = GradCam(colour_model)
    red, green = grad_cam.heatmaps(inputs(coin_at(False), coin_at(False)), [RED, GREEN])
    assert red.max() == 1 and green.max() == 0  # the red coin speaks against "green": nothing to show
    middle, corner = grad_cam.heatmaps(inputs(coin_at(False), coin_at(True)), [RED, RED])
    assert middle[16, 16] == pytest.approx(1, abs=0.05) and corner[16, 16] < 0.05
    assert corner[4, 4] == pytest.approx(1, abs=0.05) and middle[2, 2] < 0.05


def test_the_map_is_grad_cam_of_the_log_probability_worked_out_by_hand(conv_model):
    """Global average pooling then dense: d log p_c / dA_k(x, y) = (W_kc - sum_j p_j W_kj) / (h w), the same at
    every (x, y), so the map is relu(sum_k that weight * A_k), scaled to a peak of 1."""
    import keras

    picture = inputs(coin_picture("blue", (40, 40)))
    backbone = feature_layer(conv_model)
    features = np.asarray(backbone(conv_model.get_layer(index=1)(picture)))[0]  # (8, 8, 6)
    weights, bias = conv_model.get_layer("logits").get_weights()
    logits = features.mean(axis=(0, 1)) @ weights + bias
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert np.allclose(p, np.asarray(conv_model(picture))[0], atol=1e-5)
    for target in range(3):
        alpha = (weights[:, target] - weights @ p) / (8 * 8)
        expected = np.maximum(features @ alpha, 0)
        expected = expected / expected.max() if expected.max() > 0 else expected
        (got,) = GradCam(conv_model).heatmaps(picture, [target])
        assert np.allclose(got, expected, atol=1e-4), target
    assert isinstance(conv_model.layers[-1], keras.layers.Activation)  # the logits path was the one tested


def test_a_model_without_a_convolutional_block_is_refused():
    import keras

    flat = keras.Input((12,))
    with pytest.raises(ExplainError, match="no layer with a 4-D output"):
        GradCam(keras.Model(flat, keras.layers.Dense(3, activation="softmax")(flat)))


def test_bad_batches_are_refused_clearly(colour_model):
    with pytest.raises(ValueError, match="2 class indices for a batch of shape"):
        GradCam(colour_model).heatmaps(inputs(coin_picture("red")), [RED, RED])


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    registry = ModelRegistry(write_model_dir(tmp_path_factory.mktemp("models")))
    registry.load_all(warm_up=False)
    return registry


def decoded(url: str) -> Image.Image:
    assert url.startswith(PNG_URL_PREFIX)
    image = Image.open(io.BytesIO(base64.b64decode(url[len(PNG_URL_PREFIX):])))
    assert image.format == "PNG"
    return image.convert("RGB")


def test_explanations_are_pngs_of_the_coin_coloured_where_it_was_seen(registry):
    explainer = explainer_for(registry.get("student"))
    assert explainer.model_name == "student" and not explainer.via_member
    crops = [coin_picture("red", (120, 120)), coin_picture("green", (90, 90))]
    urls = explainer.explain(crops, [1, 60])  # class ids: 1 Cent (red), 1 Euro (green)
    pictures = [np.asarray(decoded(url), dtype=int) for url in urls]
    assert all(picture.shape == (224, 224, 3) for picture in pictures)
    plain = np.asarray(crops[1].resize((224, 224)), dtype=int)
    changed = np.abs(pictures[1] - plain).max(axis=-1) > 40
    assert changed[112, 112] and not changed[5, 5]  # the coin is coloured over, the background left alone
    assert png_bytes(urls[0]) == base64.b64decode(urls[0][len(PNG_URL_PREFIX):])
    assert explainer_for(registry.get("student")) is explainer  # built once per classifier


def test_an_ensemble_and_test_time_augmentation_are_explained_through_the_model_inside(registry):
    ensemble = explainer_for(registry.get("ensemble"))
    assert ensemble.model_name == "member_a" and ensemble.via_member
    turned = explainer_for(RotationAveraged(registry.get("student"), 4))
    assert turned.model_name == "student"
    (url,) = ensemble.explain([coin_picture("blue")], [TINY_CLASS_IDS[BLUE]])
    decoded(url)
