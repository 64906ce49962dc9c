"""Loading bundled models once and classifying batches of pictures with them."""
from __future__ import annotations

import logging
import os
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


def load_keras_model(path: Path):
    """Load one ``.h5`` with Keras alone; custom layers register themselves on import."""
    import keras

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
        raise NotImplementedError


class KerasClassifier(Classifier):
    def __init__(self, card: ModelCard):
        super().__init__(card)
        import tensorflow as tf

        self.model = load_keras_model(card.model_path)
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

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        return self.predict_arrays(batch_model_input(images, self.card.input_size))


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
    return RotationAveraged(classifier, rotations) if rotations > 1 else classifier


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
        classifier = KerasClassifier(card)
        log.info("loaded %s from %s in %.1f s", name, card.file, time.perf_counter() - started)
        return with_tta(classifier)

    def warm_up(self) -> None:
        """One prediction per model, so the first user does not pay for graph tracing."""
        blank = Image.new("RGB", (64, 64), (128, 128, 128))
        for classifier in list(self._loaded.values()):
            classifier.predict_images([blank])

    @property
    def available(self) -> list[str]:
        return [name for name in self.cards if name not in self.unavailable]
