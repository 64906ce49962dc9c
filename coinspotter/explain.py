"""Grad-CAM: where in a coin crop the served model looked to name its class, as a heat map over the crop.

Selvaraju et al.'s recipe on the model's last convolutional block: the gradient of the class score with respect
to that block's feature maps, averaged over each map, weights the maps; their weighted sum, less its negative
part, is the heat map (7 x 7 for MobileNetV2's ``out_relu``), scaled to 0..1 and laid over the crop.

Computed only when a caller asks (``explain=True`` in the service): one extra forward pass plus a short backward
pass from the class score to the feature maps, per coin. Shared by the page, the API and the CLI.

Where the served model is a TFLite copy with its feature map as a second output and its dense kernel beside it
(``coinspotter.compact``; every bundled model), no gradient is needed: after global average pooling and one dense
layer, d log p_c / dA_k(x, y) = (W_kc - sum_j p_j W_kj) / (h w), the same at every (x, y), so Grad-CAM is that
weighting of the feature maps, a forward pass and a product (``ClassActivationMap``, numpy and LiteRT only: the
deployed app has no TensorFlow). ``GradCam`` (TensorFlow) explains any other Keras model, and the tests check that
the two agree.
"""
from __future__ import annotations

import base64
import io
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .inference import Classifier, EnsembleClassifier
from .modelcard import ModelCardError
from .preprocessing import batch_model_input, letterbox

PNG_URL_PREFIX = "data:image/png;base64,"
OVERLAY_PX = 224  # side of the picture handed out: the student's own input size, sharp on a card or a phone
MAX_HEAT_OPACITY = 0.65  # the hottest parts are mostly colour; cold parts show the coin untouched
BATCH = 16  # crops per gradient call: bounds the memory one request's explanations take
NEGLIGIBLE = 1e-4  # a heat map's peak below this share of its largest possible term is rounding noise


class ExplainError(ValueError):
    """The model cannot be explained this way (no convolutional block, not a Keras model...)."""


def feature_layer(model):
    """The model's last convolutional block: the last top-level layer with a 4-D (batch, height, width,
    channels) output, i.e. the one before global pooling. In the bundled student that is the nested MobileNetV2,
    whose output is its ``out_relu``; in a flat model, that layer itself."""
    import keras

    candidates = [layer for layer in model.layers
                  if not isinstance(layer, keras.layers.InputLayer) and len(layer.output.shape) == 4]
    if not candidates:
        raise ExplainError(f"model {model.name!r} has no layer with a 4-D output to explain")
    return candidates[-1]


def layer_label(layer) -> str:
    """What a report calls the layer: a nested backbone by its own last layer (``out_relu``), as papers do."""
    inner = getattr(layer, "layers", None)
    return inner[-1].name if inner else layer.name


def _tensor_in(model, layer, which: str):
    """``layer``'s output (or input) as a tensor of ``model``'s own graph. Keras 3's ``layer.output`` of a nested
    model is the tensor inside that model's graph, not connected to the outer inputs; the node that calls the
    layer in the outer graph carries the connected one."""
    for node in layer._inbound_nodes:  # one per call of the layer; a shared layer has several
        tensors = node.output_tensors if which == "output" else node.input_tensors
        if tensors and _connected(model, tensors[0]):
            return tensors[0]
    raise ExplainError(f"layer {layer.name!r} is not reached from the inputs of model {model.name!r}")


def _connected(model, tensor) -> bool:
    import keras

    try:
        keras.Model(model.inputs, tensor)
    except ValueError:
        return False
    return True


def _log_probabilities(model):
    """The tensor Grad-CAM differentiates: the log-probability of each class.

    Grad-CAM's usual score is the raw logit, but the student's logits are all negative (its predicted class wins
    by being the least negative), so the logit's map was empty for most photos. The log-probability's gradient
    is the class's own evidence less the probability-weighted evidence for all classes: what makes this class
    win over the others. Computed from the logits where the model ends in a separate softmax (the bundled
    student: its temperature is baked into the logits layer), which stays exact where p saturates near 1.
    """
    import keras
    import tensorflow as tf

    last = model.layers[-1]
    if isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax":
        return _tensor_in(model, last, "input"), tf.nn.log_softmax
    return model.outputs[0], lambda probabilities: tf.math.log(tf.maximum(probabilities, 1e-30))


class GradCam:
    """Grad-CAM heat maps of one Keras classifier model, on its ``feature_layer`` (or the ``layer`` given)."""

    def __init__(self, model, layer=None):
        import keras
        import tensorflow as tf

        self.layer = layer or feature_layer(model)
        features = _tensor_in(model, self.layer, "output")
        scores, to_log_probabilities = _log_probabilities(model)
        two_outputs = keras.Model(model.inputs, [features, scores])

        def heatmaps(batch, class_indices):
            with tf.GradientTape() as tape:
                # the tape records only what depends on a watched tensor: without the input, a block with no
                # trainable weights below it (frozen, or plain rescaling) would get no gradient at all
                tape.watch(batch)
                maps, scores = two_outputs(batch, training=False)
                chosen = tf.gather(to_log_probabilities(scores), class_indices, axis=1, batch_dims=1)
            gradients = tape.gradient(chosen, maps)
            weights = tf.reduce_mean(gradients, axis=(1, 2))  # one weight per feature map
            heat = tf.nn.relu(tf.einsum("nhwc,nc->nhw", maps, weights))
            # the largest term the sum could have had: a peak far below it is rounding, not evidence
            reach = tf.reduce_max(tf.einsum("nhwc,nc->nhw", tf.abs(maps), tf.abs(weights)), axis=(1, 2))
            return heat, reach

        # One traced graph, as the classifier's own call (inference.KerasClassifier): inside it TensorFlow keeps
        # only what the backward pass from the score to the feature maps needs, not the whole backbone's tape.
        self._heatmaps = tf.function(
            heatmaps, autograph=False,
            input_signature=[tf.TensorSpec((None, *model.input_shape[1:]), tf.float32),
                             tf.TensorSpec((None,), tf.int32)])
        self.input_size = model.input_shape[1]

    @property
    def layer_name(self) -> str:
        return layer_label(self.layer)

    def heatmaps(self, batch: np.ndarray, class_indices) -> np.ndarray:
        """(n, h, w) float32 heat maps in 0..1, one per picture of ``batch`` (model input, (n, size, size, 3)),
        for the output index ``class_indices[i]``; all zeros where nothing in the picture speaks for that class."""
        batch, indices = _checked(batch, class_indices)
        if len(batch) == 0:
            return np.zeros((0, 0, 0), dtype=np.float32)
        raw, reach = (np.asarray(part, dtype=np.float32) for part in self._heatmaps(batch, indices))
        return _scaled(raw, reach)


def _checked(batch, class_indices) -> tuple[np.ndarray, np.ndarray]:
    batch = np.asarray(batch, dtype=np.float32)
    indices = np.asarray(class_indices, dtype=np.int32)
    if batch.ndim != 4 or len(indices) != len(batch):
        raise ValueError(f"{len(indices)} class indices for a batch of shape {batch.shape}")
    return batch, indices


def _scaled(raw: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """Each raw map (n, h, w) divided by its peak, or all zeros where the peak is under NEGLIGIBLE of ``reach``, the
    largest term its sum could have had: where the evidence cancels out exactly (a white background: its colour
    channels weigh +1 and -1), float32 leaves crumbs of 1e-8, which scaled to a peak of 1 would paint everything."""
    peaks = raw.max(axis=(1, 2), keepdims=True)
    evident = peaks > NEGLIGIBLE * reach[:, None, None]
    return np.divide(raw, peaks, out=np.zeros_like(raw), where=evident)


class ClassActivationMap:
    """Grad-CAM of a pooled-then-dense classifier served as a TFLite copy (``inference.TFLiteClassifier`` with a
    feature-map output and ``cam_kernel``), without gradients or TensorFlow: one forward pass gives the feature maps
    A (n, h, w, k) and the probabilities p; the weight of map k for class c is (W_kc - sum_j p_j W_kj) / (h w), the
    gradient of log p_c (see the module's docstring); the map is relu(A . weights), scaled as ``GradCam``'s."""

    def __init__(self, classifier):
        if getattr(classifier, "cam_kernel", None) is None:
            raise ExplainError(f"model {classifier.card.name!r} serves no feature map with a dense kernel beside it")
        self.classifier = classifier
        self.kernel = classifier.cam_kernel  # (k, classes)
        self.input_size = classifier.card.input_size

    @property
    def layer_name(self) -> str:
        return self.classifier.cam_layer

    def heatmaps(self, batch: np.ndarray, class_indices) -> np.ndarray:
        batch, indices = _checked(batch, class_indices)
        if len(batch) == 0:
            return np.zeros((0, 0, 0), dtype=np.float32)
        probabilities, maps = self.classifier.forward(batch)
        height, width = maps.shape[1:3]
        weights = (self.kernel[:, indices].T - probabilities @ self.kernel.T) / (height * width)  # (n, k)
        raw = np.maximum(np.einsum("nhwk,nk->nhw", maps, weights), 0).astype(np.float32)
        reach = np.einsum("nhwk,nk->nhw", np.abs(maps), np.abs(weights)).max(axis=(1, 2)).astype(np.float32)
        return _scaled(raw, reach)


def overlay(crop: Image.Image, heatmap: np.ndarray, size: int = OVERLAY_PX) -> Image.Image:
    """``heatmap`` (0..1, over the model's letterboxed square) in colour over ``crop`` letterboxed the same way,
    ``size`` pixels square: red where the class was seen most, blue least; opacity grows with the heat."""
    import cv2

    view = np.asarray(letterbox(crop, size), dtype=np.float32)
    heat = cv2.resize(np.asarray(heatmap, dtype=np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, 1.0)
    colours = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
    opacity = (MAX_HEAT_OPACITY * heat)[..., None]
    blended = view * (1 - opacity) + colours.astype(np.float32) * opacity
    return Image.fromarray(np.round(blended).astype(np.uint8), "RGB")


def png_data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # optimize=True: 10% smaller, 3x slower
    return PNG_URL_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def png_bytes(data_url: str) -> bytes:
    """The PNG inside one of our data URLs (the CLI writes it to a file)."""
    if not data_url.startswith(PNG_URL_PREFIX):
        raise ValueError("not a PNG data URL")
    return base64.b64decode(data_url[len(PNG_URL_PREFIX):])


@dataclass
class CoinExplainer:
    """Grad-CAM for a served classifier. An ensemble is explained through its first member: averaging members'
    heat maps would mix feature maps of different shapes and meanings, and one real map says more than a blend."""

    classifier: Classifier  # the served one (an ensemble, or a single model)
    explained: Classifier  # the single model whose maps are shown
    grad_cam: "GradCam | ClassActivationMap"

    @property
    def model_name(self) -> str:
        """The card name of the model explained: ``student``, or an ensemble's first member."""
        return self.explained.card.name

    @property
    def via_member(self) -> bool:
        return self.explained is not self.classifier

    def explain(self, crops: list[Image.Image], class_ids: list[int]) -> list[str]:
        """A PNG data URL per coin crop: its heat map for the class id given (the prediction), over the crop."""
        urls = []
        for start in range(0, len(crops), BATCH):
            chunk, ids = crops[start:start + BATCH], class_ids[start:start + BATCH]
            indices = [self.explained.class_ids.index(class_id) for class_id in ids]
            maps = self.grad_cam.heatmaps(batch_model_input(chunk, self.explained.card.input_size), indices)
            urls.extend(png_data_url(overlay(crop, heat)) for crop, heat in zip(chunk, maps))
        return urls


_explainers: "weakref.WeakKeyDictionary[Classifier, CoinExplainer]" = weakref.WeakKeyDictionary()
_explainers_lock = threading.Lock()


def explainer_for(classifier: Classifier) -> CoinExplainer:
    """The classifier's explainer, built on first use (no cost to a server nobody asks for explanations) and
    kept as long as the classifier is. ExplainError when the model cannot be explained."""
    with _explainers_lock:
        if classifier not in _explainers:
            explained = classifier
            while isinstance(explained, EnsembleClassifier) or hasattr(explained, "inner"):
                # an ensemble: its first member; test-time augmentation (tta.RotationAveraged): the model it
                # turns the crop for, explained on the crop as it is
                explained = explained.members[0] if isinstance(explained, EnsembleClassifier) else explained.inner
            if getattr(explained, "cam_kernel", None) is not None:  # a TFLite copy with its feature map: no TensorFlow
                _explainers[classifier] = CoinExplainer(classifier, explained, ClassActivationMap(explained))
                return _explainers[classifier]
            try:
                model = getattr(explained, "model", None)
            except ModelCardError as error:  # the .h5 cannot be loaded here (no TensorFlow)
                raise ExplainError(str(error)) from None
            if model is None or not hasattr(model, "layers"):
                raise ExplainError(f"model {explained.card.name!r} ({explained.card.file}) is not a Keras model; "
                                   "Grad-CAM needs its gradients")
            _explainers[classifier] = CoinExplainer(classifier, explained, GradCam(model))
        return _explainers[classifier]
