"""TensorFlow Lite copies of a Keras model: what ``benchmarks/compact.py`` measures and serving may use.

Variants (all take and give float32, so serving feeds them exactly as it feeds the ``.h5``):

- ``float32``: the same network in TFLite, no quantisation (tells the runtime's share of any speed-up);
- ``float16``: weights stored as float16 (half the size); on a CPU they are widened back to float32 at
  load, so the arithmetic is the same as float32;
- ``dynamic_int8``: weights stored as int8, activations quantised on the fly per call (no calibration data);
- ``full_int8``: weights and activations int8, activation ranges calibrated on a representative set of
  pictures prepared the way serving prepares them (float32 in and out: quantise/dequantise at the edges).

Every file takes any batch size (its input's batch dimension is open; the interpreter resizes it).

A model whose head is global average pooling then a dense layer (every bundled one) is exported with a second
output, its last convolutional feature map (``serving_model``), and its dense kernel is written beside the file
(``<name>.cam.npz``, ``write_cam_kernel``): for such a head, Grad-CAM at that layer is the class activation map,
a forward pass (``coinspotter.explain.ClassActivationMap``), so "Show why" needs no TensorFlow where the copy is
served.

The ``.h5`` stays the source of truth: every file here is derived from it and can be made again
(``training/export_tflite.py`` refreshes every copy of a models folder).
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable

import numpy as np

log = logging.getLogger(__name__)

VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")


class NotPooledDense(ValueError):
    """The model's head is not global average pooling then dense: no class activation map can stand for Grad-CAM."""


def pooled_dense_head(model):
    """(feature layer, dense kernel (channels, classes) as float32) when ``model`` is a classifier whose last 4-D
    layer (``explain.feature_layer``, as Grad-CAM explains it) is followed by global average pooling, any dropout,
    one dense layer (its logits, temperature included) and at most a softmax; NotPooledDense otherwise."""
    import keras

    from .explain import ExplainError, feature_layer

    try:
        features = feature_layer(model)
    except ExplainError as error:
        raise NotPooledDense(str(error)) from None
    after = model.layers[model.layers.index(features) + 1:]
    kinds = [type(layer) for layer in after]
    dense = [layer for layer in after if isinstance(layer, keras.layers.Dense)]
    allowed = (keras.layers.GlobalAveragePooling2D, keras.layers.Dropout, keras.layers.Dense, keras.layers.Activation)
    if (not after or kinds[0] is not keras.layers.GlobalAveragePooling2D or len(dense) != 1
            or not all(issubclass(kind, allowed) for kind in kinds)
            or any(isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] != "softmax"
                   for layer in after)
            or dense[0].get_config()["activation"] not in ("linear", "softmax")):
        raise NotPooledDense(f"model {model.name!r}: the layers after {features.name!r} are "
                             f"{[layer.name for layer in after]}, not global average pooling then one dense layer")
    return features, np.asarray(dense[0].get_weights()[0], dtype=np.float32)


def serving_model(model):
    """``model`` with its last convolutional feature map as a second output (probabilities first), for a
    pooled-then-dense head; ``model`` itself otherwise."""
    import keras

    from .explain import _tensor_in

    try:
        features, _ = pooled_dense_head(model)
    except NotPooledDense:
        return model
    return keras.Model(model.inputs, [model.outputs[0], _tensor_in(model, features, "output")], name=model.name)


def cam_file_name(card_name: str) -> str:
    return f"{card_name}.cam.npz"


def write_cam_kernel(model, path) -> str:
    """The dense kernel of ``model``'s pooled-then-dense head into ``path`` (``kernel``: (channels, classes)
    float32, ``layer``: what the explained layer is called); returns that name (``out_relu`` for the student)."""
    from .explain import layer_label

    features, kernel = pooled_dense_head(model)
    label = layer_label(features)
    with open(path, "wb") as handle:
        np.savez(handle, kernel=kernel, layer=np.array(label))
    return label


def tflite_bytes(model, variant: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras model (pictures in, probabilities out) to a TFLite flatbuffer of ``variant``; a model with a
    pooled-then-dense head gets its last feature map as a second output (``serving_model``).

    ``representative``: pictures as the model takes them (n, size, size, 3), float 0..255; required for
    ``full_int8``, ignored otherwise.
    """
    import tensorflow as tf

    model = serving_model(model)
    if variant not in VARIANTS:
        raise ValueError(f"unknown TFLite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    # from_keras_model: the converter's current path (from_concrete_functions without a trackable object is
    # deprecated, and with the model as that object it leaves the weights out of the file in TF 2.21). It
    # exports the model first, with an open batch dimension, and prints the export's whole signature: muted.
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if variant != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "full_int8":
        if representative is None or len(representative) == 0:
            raise ValueError("full_int8 needs a representative set of pictures to calibrate activation ranges")
        pictures = np.asarray(representative, dtype=np.float32)

        def calibration() -> Iterable[list[np.ndarray]]:
            for picture in pictures:
                yield [picture[None]]

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()
