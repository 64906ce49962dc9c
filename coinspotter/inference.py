"""Loading bundled models once and classifying batches of pictures with them."""
from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .modelcard import ModelCard, ModelCardError, find_cards
from .preprocessing import batch_model_input

log = logging.getLogger(__name__)


def configure_tensorflow_threads() -> None:
    """Keep TensorFlow's pools to the cores we have; set before TensorFlow starts its pools.

    On a 2-core box one op running on both cores beats two ops fighting over them: the intra-op pool (the
    threads one convolution is split over) keeps TensorFlow's default, one per core; the inter-op pool (ops
    run side by side) gets one thread, as a MobileNet is a chain with little to run side by side and every
    extra thread is one more fighting over two cores. ``COINSPOTTER_TF_INTRA_THREADS`` and
    ``COINSPOTTER_TF_INTER_THREADS`` override them (on a larger box, leave intra at 0 = one per core).
    """
    import tensorflow as tf

    intra = int(os.environ.get("COINSPOTTER_TF_INTRA_THREADS", "0") or 0)
    inter = int(os.environ.get("COINSPOTTER_TF_INTER_THREADS", "1") or 1)
    try:
        if intra:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # already initialised (tests, notebooks): keep what is set
        pass


EXPORT_COMMAND = "python training/export_tflite.py --models DIR"  # what refreshes a folder's TFLite copies


class TensorFlowMissing(ModelCardError):
    """A ``.h5`` must be loaded, and TensorFlow is not installed (the deployed app: ``requirements.txt`` alone)."""


def tensorflow_missing(what: str) -> TensorFlowMissing:
    return TensorFlowMissing(f"{what} needs TensorFlow, which is not installed here (the deployed app serves the "
                             f"models' TFLite copies through LiteRT alone): make the copies with "
                             f"`{EXPORT_COMMAND}` where TensorFlow is installed (pip install -r requirements-dev.txt)")


def load_keras_model(path: Path):
    """Load one ``.h5`` with Keras alone; custom layers register themselves on import. TensorFlowMissing where
    TensorFlow is not installed. TensorFlow's thread pools are set first (``configure_tensorflow_threads``): this is
    where a process first needs TensorFlow, and a server serving TFLite copies never imports it."""
    try:
        import keras
    except ImportError:
        raise tensorflow_missing(f"loading {Path(path).name}") from None
    configure_tensorflow_threads()
    from . import layers  # noqa: F401  (registers the custom layers)

    return keras.models.load_model(path, compile=False)


class Classifier:
    """A model that turns pictures into class probabilities over ``card.class_ids``."""

    def __init__(self, card: ModelCard):
        self.card = card

    @property
    def class_ids(self) -> list[int]:
        return self.card.class_ids

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        # A single network's classifier defines ``predict_arrays`` (a batch from ``batch_model_input``); an
        # ensemble, which has no one input size, overrides this instead.
        return self.predict_arrays(batch_model_input(images, self.card.input_size))


class KerasClassifier(Classifier):
    def __init__(self, card: ModelCard):
        super().__init__(card)
        self.model = load_keras_model(card.model_path)  # TensorFlowMissing where TensorFlow is not installed
        import tensorflow as tf

        outputs = self.model.output_shape[-1]
        if outputs != len(card.class_ids):
            raise ModelCardError(f"{card.name}: model has {outputs} outputs, card lists {len(card.class_ids)} classes")
        # One traced graph for every batch size: an eager call pays Python overhead per layer (measured
        # ~5x slower at batch 1 on 2 cores). The signature's open batch dimension makes the warm-up's trace
        # the only one (no retrace when the first batch of 8 comes), and autograph is off because the call
        # has no Python control flow to convert: it would write converted source to a temporary file.
        signature = tf.TensorSpec((None, *self.model.input_shape[1:]), tf.float32)
        self._forward = tf.function(lambda batch: self.model(batch, training=False),
                                    input_signature=[signature], autograph=False)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) == 0:
            return np.zeros((0, len(self.class_ids)), dtype=np.float32)
        return np.asarray(self._forward(np.asarray(batch, dtype=np.float32)), dtype=np.float32)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tflite_interpreter_class():
    """LiteRT's interpreter (``ai-edge-litert``); TensorFlow's own ``tf.lite.Interpreter`` is deprecated
    (TF 2.21 warns it is scheduled for deletion) and is used only where LiteRT is not installed."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - requirements.txt pins ai-edge-litert
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def tflite_threads() -> int:
    """Threads one interpreter call uses: ``COINSPOTTER_TF_INTRA_THREADS`` when set, else one per core."""
    intra = int(os.environ.get("COINSPOTTER_TF_INTRA_THREADS", "0") or 0)
    return intra or os.cpu_count() or 1


class TFLiteClassifier(Classifier):
    """A TensorFlow Lite copy of a card's model (``card.serving``, or ``path``), run by LiteRT on the CPU.

    An interpreter is not thread-safe and gunicorn runs several threads per process, so calls take an
    interpreter from a pool (``COINSPOTTER_TFLITE_INTERPRETERS``, default 1: calls queue one behind the
    other, each using every core) and give it back. Any batch size works: the input is resized when it
    changes (the first call at a new size costs a few ms more; later ones nothing measurable).

    A file exported by ``coinspotter.compact`` from a pooled-then-dense model has a second output, the last
    convolutional feature map, and its card's ``serving["cam"]`` names the dense kernel beside it: ``forward``
    gives both and ``cam_kernel`` the kernel, which is all a Grad-CAM of that head needs
    (``explain.ClassActivationMap``), without TensorFlow. ``model`` is the card's ``.h5`` (the source of truth),
    loaded only when something asks for it (where TensorFlow is installed).
    """

    def __init__(self, card: ModelCard, path: Path | str | None = None, threads: int | None = None,
                 interpreters: int | None = None, cam: Path | str | None = None):
        super().__init__(card)
        self.path = Path(path) if path is not None else card.serving_path
        if self.path is None:
            raise ModelCardError(f"{card.name}: the card names no .tflite file to serve")
        self._content = self.path.read_bytes()
        self.threads = threads or tflite_threads()
        size = interpreters or int(os.environ.get("COINSPOTTER_TFLITE_INTERPRETERS", "1") or 1)
        self._pool: queue.LifoQueue = queue.LifoQueue()
        for _ in range(max(1, size)):
            self._pool.put(self._new_interpreter())  # built now: a broken file fails at load, not at a request
        interpreter = self._pool.get()
        try:
            details = interpreter.get_output_details()
            self.input_shape = tuple(int(d) for d in interpreter.get_input_details()[0]["shape"][1:])
        finally:
            self._pool.put(interpreter)
        # the probabilities are the output with 2 dimensions, the feature map (when there is one) the 4-D one:
        # the converter does not keep the Keras model's order of outputs
        flat = [i for i, d in enumerate(details) if len(d["shape"]) == 2]
        maps = [i for i, d in enumerate(details) if len(d["shape"]) == 4]
        self._probabilities_output = flat[0] if flat else 0
        self._features_output = maps[0] if maps else None
        outputs = int(details[self._probabilities_output]["shape"][-1])
        if outputs != len(card.class_ids):
            raise ModelCardError(f"{card.name}: {self.path.name} has {outputs} outputs, card lists "
                                 f"{len(card.class_ids)} classes")
        if cam is None and card.serving.get("cam") and self.path == card.serving_path:
            cam = self.path.parent / card.serving["cam"]  # the card's own file: its kernel beside it
        channels = int(details[self._features_output]["shape"][-1]) if self._features_output is not None else None
        self.cam_kernel, self.cam_layer = \
            self._read_cam(Path(cam), channels, outputs) if cam is not None else (None, None)
        self._keras = None
        self._keras_lock = threading.Lock()

    def _read_cam(self, path: Path, channels: int | None, classes: int):
        """(kernel (channels, classes), layer name) from ``path`` (the card's ``serving["cam"]``), or (None, None)
        when the file serves no feature map (``channels`` None: then an explanation needs the ``.h5``)."""
        name = path.name
        if channels is None:
            return None, None
        with np.load(path, allow_pickle=False) as data:
            kernel = np.asarray(data["kernel"], dtype=np.float32)
            layer = str(data["layer"]) if "layer" in data else "the last convolutional layer"
        if kernel.shape != (channels, classes):
            raise ModelCardError(f"{self.card.name}: {name} holds a kernel of shape {kernel.shape}, the file's "
                                 f"feature map has {channels} channels and {classes} classes")
        return kernel, layer

    def _new_interpreter(self):
        interpreter = tflite_interpreter_class()(model_content=self._content, num_threads=self.threads)
        interpreter.allocate_tensors()
        return interpreter

    @property
    def model(self):
        """The Keras model of the card's ``.h5``, loaded on first use (not needed to classify)."""
        with self._keras_lock:
            if self._keras is None:
                self._keras = load_keras_model(self.card.model_path)
            return self._keras

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        return self._run(batch, features=False)[0]

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (n, classes), last feature map (n, h, w, channels)) of one pass; ValueError when the
        file has no feature-map output."""
        if self._features_output is None:
            raise ValueError(f"{self.card.name}: {self.path.name} has no feature-map output")
        return self._run(batch, features=True)

    def _run(self, batch: np.ndarray, features: bool):
        batch = np.asarray(batch, dtype=np.float32)
        if len(batch) == 0:
            empty = np.zeros((0, len(self.class_ids)), dtype=np.float32)
            return empty, (np.zeros((0, 0, 0, 0), dtype=np.float32) if features else None)
        if tuple(batch.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.card.name}: expected pictures of shape {self.input_shape}, got {batch.shape[1:]}")
        interpreter = self._pool.get()
        try:
            given = interpreter.get_input_details()[0]
            if int(given["shape"][0]) != len(batch):
                interpreter.resize_tensor_input(given["index"], list(batch.shape), strict=False)
                interpreter.allocate_tensors()
            interpreter.set_tensor(given["index"], batch)
            interpreter.invoke()
            details = interpreter.get_output_details()
            probabilities = _dequantised(interpreter, details[self._probabilities_output])
            maps = _dequantised(interpreter, details[self._features_output]) if features else None
            return probabilities, maps
        finally:
            self._pool.put(interpreter)


def _dequantised(interpreter, detail) -> np.ndarray:
    """An output as float32, a copy (the interpreter's buffer is reused by the next call)."""
    output = interpreter.get_tensor(detail["index"])
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if output.dtype != np.float32 and scale:
        output = (output.astype(np.float32) - zero_point) * scale
    return np.array(output, dtype=np.float32)


def stale_serving_reason(card: ModelCard) -> str | None:
    """Why the card's compact file must not be served (missing, or exported from another ``.h5``), or None."""
    path = card.serving_path
    if path is None:
        return "the card names no compact file"
    if not path.is_file():
        return f"{path.name} is missing"
    expected = card.serving.get("source_sha256")
    if not expected:
        return "the card does not say which .h5 it was exported from (source_sha256)"
    if file_sha256(card.model_path) != expected:
        return f"{card.file} has changed since {path.name} was exported from it"
    return None


def build_classifier(card: ModelCard) -> Classifier:
    """The classifier a (non-ensemble) card asks for: its ``serving`` TFLite file when it names one that
    was exported from the very ``.h5`` beside it, else the ``.h5`` itself."""
    if card.serving:
        reason = stale_serving_reason(card)
        if reason is None:
            return TFLiteClassifier(card)
        if not tensorflow_installed():
            raise tensorflow_missing(f"{card.name}: its TFLite copy cannot be served ({reason}); serving {card.file}")
        log.warning("%s: serving %s, not %s: %s", card.name, card.file, card.serving.get("file"), reason)
    return KerasClassifier(card)


def tensorflow_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):  # hidden from this process (a test's stand-in for "not installed")
        return False


class EnsembleClassifier(Classifier):
    """The average of its members' probabilities (each member fed at its own input size)."""

    def __init__(self, card: ModelCard, members: list[Classifier]):
        super().__init__(card)
        for member in members:
            if sorted(member.class_ids) != sorted(card.class_ids):
                raise ModelCardError(f"ensemble member {member.card.name} has other classes than {card.name}")
        self.members = members
        # column j of member i's output -> column of the ensemble's output
        self._orders = [np.array([member.class_ids.index(c) for c in card.class_ids]) for member in members]

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        total = np.zeros((len(images), len(self.class_ids)), dtype=np.float64)
        for member, order in zip(self.members, self._orders):
            total += member.predict_images(images)[:, order]
        return (total / len(self.members)).astype(np.float32)


def with_tta(classifier: Classifier) -> Classifier:
    """The classifier as its card asks to serve it: averaged over turned crops when ``tta_rotations`` > 1."""
    from .tta import RotationAveraged

    rotations = classifier.card.tta_rotations
    if rotations == 1:
        return classifier
    return RotationAveraged(classifier, rotations, temperature=float(classifier.card.tta_temperature))


class ModelRegistry:
    """Every model whose card lies in ``models_dir``, loaded once and warmed up."""

    def __init__(self, models_dir: Path | str):
        self.models_dir = Path(models_dir)
        self.cards = find_cards(self.models_dir) if self.models_dir.is_dir() else {}
        self._loaded: dict[str, Classifier] = {}
        self.unavailable: dict[str, str] = {}  # name -> why it cannot be served
        self._lock = threading.Lock()

    def load_all(self, warm_up: bool = True) -> None:
        for name in self.cards:
            try:
                self.get(name)
            except (ModelCardError, OSError, ValueError) as error:
                self.unavailable[name] = str(error)
                log.warning("model %s not available: %s", name, error)
        if warm_up:
            self.warm_up()

    def get(self, name: str) -> Classifier:
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._build(name, stack=())
            return self._loaded[name]

    def _build(self, name: str, stack: tuple[str, ...]) -> Classifier:
        if name in stack:
            raise ModelCardError(f"ensemble cycle through {name}")
        card = self.cards.get(name)
        if card is None:
            raise ModelCardError(f"no model card named {name!r} in {self.models_dir}")
        if card.is_ensemble:
            members = [self._loaded.get(m) or self._build(m, stack + (name,)) for m in card.members]
            for member in members:
                self._loaded.setdefault(member.card.name, member)
            return with_tta(EnsembleClassifier(card, members))
        if not card.model_path.is_file():
            raise ModelCardError(f"model file {card.file} of {name!r} is missing")
        started = time.perf_counter()
        classifier = build_classifier(card)
        served = classifier.path.name if isinstance(classifier, TFLiteClassifier) else card.file
        log.info("loaded %s from %s in %.1f s", name, served, time.perf_counter() - started)
        return with_tta(classifier)

    def warm_up(self) -> None:
        """One prediction per model, so the first user does not pay for graph tracing."""
        blank = Image.new("RGB", (64, 64), (128, 128, 128))
        for classifier in list(self._loaded.values()):
            classifier.predict_images([blank])

    @property
    def available(self) -> list[str]:
        return [name for name in self.cards if name not in self.unavailable]
