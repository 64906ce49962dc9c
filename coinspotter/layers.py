"""Custom Keras layers. Each is registered and serialisable, so a bundled ``.h5`` loads with
``keras.models.load_model`` alone (no ``Lambda`` layers, no ``custom_objects``)."""
from __future__ import annotations

import keras
from keras import ops

PACKAGE = "coinspotter"


@keras.saving.register_keras_serializable(package=PACKAGE)
class BilinearPooling(keras.layers.Layer):
    """Bilinear (second-order) pooling of a feature map with itself.

    For features ``x`` of shape (batch, h, w, c): the outer product x xᵀ averaged over the h·w
    locations, flattened to c², then signed square root and L2 normalisation, as in Lin et al.'s
    bilinear CNNs. Reduce ``c`` first (a 1×1 convolution): c² grows fast.
    """

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, inputs):
        shape = ops.shape(inputs)
        channels = inputs.shape[-1]
        flat = ops.reshape(inputs, (shape[0], -1, channels))  # (b, hw, c)
        locations = ops.cast(ops.shape(flat)[1], inputs.dtype)
        outer = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat) / locations  # (b, c, c)
        outer = ops.reshape(outer, (shape[0], channels * channels))
        signed_root = ops.sign(outer) * ops.sqrt(ops.abs(outer) + self.epsilon)
        return signed_root / ops.sqrt(ops.sum(ops.square(signed_root), axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1] * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
