"""TensorFlow Lite copies of a Keras model: what ``benchmarks/compact.py`` measures and serving may use.

Variants (all take and give float32, so serving feeds them exactly as it feeds the ``.h5``):

- ``float32``: the same network in TFLite, no quantisation (tells the runtime's share of any speed-up);
- ``float16``: weights stored as float16 (half the size); on a CPU they are widened back to float32 at
  load, so the arithmetic is the same as float32;
- ``dynamic_int8``: weights stored as int8, activations quantised on the fly per call (no calibration data);
- ``full_int8``: weights and activations int8, activation ranges calibrated on a representative set of
  pictures prepared the way serving prepares them (float32 in and out: quantise/dequantise at the edges).

Every file takes any batch size (its input's batch dimension is open; the interpreter resizes it).

The ``.h5`` stays the source of truth: every file here is derived from it and can be made again.
"""
from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable

import numpy as np

log = logging.getLogger(__name__)

VARIANTS = ("float32", "float16", "dynamic_int8", "full_int8")


def tflite_bytes(model, variant: str, representative: np.ndarray | None = None) -> bytes:
    """Convert a Keras model (pictures in, probabilities out) to a TFLite flatbuffer of ``variant``.

    ``representative``: pictures as the model takes them (n, size, size, 3), float 0..255; required for
    ``full_int8``, ignored otherwise.
    """
    import tensorflow as tf

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
