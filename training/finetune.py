"""Fine-tune a whole network on catalogue faces and real photographs, augmented afresh at every step.

    python training/finetune.py --name student_real --init web-app/models/student.h5 \
        --data ../shared/data/coin-images --audit reports/audit.json \
        --real-photos ../shared/data/real-photos-train --holdout-sources casa0018-jyshen-gbp \
        --epochs 8 --steps-per-epoch 200 --resume

What ``train.py`` cannot do on cached features: every layer learns (BatchNorm layers keep their statistics
and scale, as small-data fine-tuning wants: a batch of 32 mixed pictures is a poor estimate of them), and
every picture is augmented anew each time it is seen (``coinspotter.augment.photo_augmenter``), so the
model never sees the same view twice. Each batch is ``--real-share`` real photographs and the rest
catalogue faces, both drawn class-balanced (each class equally likely, then a picture of it), so the 36
classes with photographs count as much as the 211 without. Catalogue faces get new surfaces behind them;
real photos keep their own.

Every picture is cut by the coin search the server uses (``--finder``; the learned finder unless
COINSPOTTER_FINDER=hough), so the model trains on the crops it is served: a real photo and a validation
picture as an upload (``evaluate.classifier_view``), a catalogue picture into its faces
(``evaluate.catalogue_face_crops``), each letterboxed (``preprocessing.to_model_input``) once and kept in
memory, and cached under the search's name and its files' hash.
``--holdout-sources`` keeps whole real-photo sources out of training, to measure on photographers and
cameras the model has not seen (``evaluate.py --real-holdout``).

Checkpoints every epoch (weights, optimizer and the sampler's position); ``--resume`` continues a stopped
run exactly where it was. The last epoch of the schedule is saved as ``<out>/<name>.h5`` with its card
(``--select best``: the best by leak-free validation top-1 instead; catalogue validation says little about
real photos, and it picked the first, least real-trained epoch of a short run). Leak-free validation and
the held-out real sources are reported each epoch.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from coinspotter import dataset  # noqa: E402
from coinspotter.catalog import load_catalog  # noqa: E402
from coinspotter.evaluation import classification_metrics  # noqa: E402
from coinspotter.modelcard import ModelCard  # noqa: E402

log = logging.getLogger("finetune")


def parse_args(argv=None):
    from evaluate import LOCALISERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="model name: <out>/<name>.h5 and .json")
    parser.add_argument("--data", required=True, help="coin-images folder (train faces, validation)")
    parser.add_argument("--audit", help="reports/audit.json: training pictures to drop and leak-free validation")
    parser.add_argument("--real-photos", help="real-photos-train folder (labels.csv, images/)")
    parser.add_argument("--holdout-sources", nargs="*", default=[], help="real-photo sources (labels.csv source short names) kept out")
    parser.add_argument("--init", help="a served .h5 to start from (same classes); else --weights")
    parser.add_argument("--weights", default="imagenet", help="backbone weights when there is no --init: 'imagenet', a .weights.h5, or 'none'")
    parser.add_argument("--arch", default="mobilenetv2", help="with --weights: the architecture (train.py's ARCHS)")
    parser.add_argument("--out", default="web-app/models")
    parser.add_argument("--work", default="runs", help="prepared pictures, checkpoints, logs")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--real-share", type=float, default=0.5, help="share of each batch that is real photos")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="peak rate (Adam), after a linear warm-up, cosine down")
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=1e-5, help="AdamW decoupled weight decay")
    parser.add_argument("--mixed-precision", action="store_true", help="bfloat16 compute (float32 weights); the saved model is float32")
    parser.add_argument("--teachers", nargs="*", default=[], help="model cards of trained teachers to distil from")
    parser.add_argument("--temperature", type=float, default=5.0, help="distillation temperature T")
    parser.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term (with --teachers)")
    parser.add_argument("--finder", choices=LOCALISERS, default=None,
                        help="the coin search that cuts every picture (catalogue faces, real photos, validation): "
                             "Hough circles or the learned finder (default: the server's, i.e. learned unless "
                             "COINSPOTTER_FINDER=hough), so the model trains on the crops it is served")
    parser.add_argument("--finder-dir", type=Path, default=None,
                        help="the learned finder's folder for --finder learned (default: the bundled one)")
    parser.add_argument("--select", choices=("last", "best"), default="last",
                        help="the epoch saved: the last of the schedule, or the best by leak-free validation top-1")
    parser.add_argument("--limit", type=int, help="at most this many catalogue pictures (tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.real_share <= 1:
        parser.error("--real-share must be within 0..1")
    if args.real_share > 0 and not args.real_photos:
        parser.error("--real-share above 0 needs --real-photos")
    return args


# ---------------------------------------------------------------------------------------------- data
def read_real_photo_labels(root: Path) -> list[dict]:
    """real-photos-*/labels.csv rows, each with its source's short name (the file name's prefix)."""
    with open(root / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["source"] = Path(row["file"]).name.split("__", 1)[0]
        row["class_id"] = int(row["class_id"])
    return rows


def prepared(path: Path, make):
    """(pictures, meta) cached as <path>.npy and <path>.json: made once, read by every later run."""
    pictures_path, meta_path = path.with_suffix(".npy"), path.with_suffix(".json")
    if not (pictures_path.is_file() and meta_path.is_file()):
        pictures, meta = make()
        np.save(pictures_path, pictures)
        meta_path.write_text(json.dumps(meta))
    return np.load(pictures_path), json.loads(meta_path.read_text())


def catalogue_faces(args) -> tuple[np.ndarray, dict]:
    """Every face of every training picture the audit keeps, cut by the search in use (``--finder``)."""
    from evaluate import catalogue_face_crops, coin_search_tag

    from coinspotter.imageio import decode_image
    from coinspotter.preprocessing import to_model_input

    def make():
        samples = dataset.list_split(args.data, "train")
        if args.audit:
            samples = dataset.read_audit(args.audit).training_samples(samples)
        samples = samples[: args.limit] if args.limit else samples
        crops, class_ids = [], []
        for sample in tqdm(samples, desc="catalogue faces", unit="img", mininterval=5):
            for crop in catalogue_face_crops(decode_image(sample.path.read_bytes())):
                crops.append(to_model_input(crop, args.image_size).astype(np.uint8))
                class_ids.append(sample.class_id)
        return np.stack(crops), {"class_ids": class_ids, "pictures": len(samples), "audit": bool(args.audit)}

    tag = (f"catalogue_{args.image_size}_{coin_search_tag()}" + ("_audit" if args.audit else "")
           + (f"_limit{args.limit}" if args.limit else ""))
    return prepared(Path(args.work) / "prepared" / tag, make)


def real_photos(args) -> tuple[np.ndarray, dict]:
    """Every real photo, cut by the search in use (``--finder``) as the server cuts an upload."""
    from evaluate import classifier_view, coin_search_tag

    from coinspotter.imageio import decode_image
    from coinspotter.preprocessing import to_model_input

    root = Path(args.real_photos)

    def make():
        rows = read_real_photo_labels(root)
        pictures = [to_model_input(classifier_view(decode_image((root / row["file"]).read_bytes()))[0], args.image_size).astype(np.uint8)
                    for row in tqdm(rows, desc="real photos", unit="img", mininterval=5)]
        return np.stack(pictures), {"class_ids": [row["class_id"] for row in rows], "sources": [row["source"] for row in rows],
                                    "files": [row["file"] for row in rows]}

    return prepared(Path(args.work) / "prepared" / f"real_{root.name}_{args.image_size}_{coin_search_tag()}", make)


class BalancedSampler:
    """Indices of a class-balanced draw: a class uniformly, then one of its pictures uniformly."""

    def __init__(self, labels: np.ndarray):
        self.classes = np.unique(labels)
        self.members = [np.flatnonzero(labels == c) for c in self.classes]

    def draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        picks = rng.integers(0, len(self.classes), count)
        return np.array([self.members[c][rng.integers(0, len(self.members[c]))] for c in picks], dtype=np.int64)


# ---------------------------------------------------------------------------------------------- model
def logits_of(model):
    import keras

    return keras.Model(model.input, model.get_layer("logits").output, name="logits_of_" + model.name)


def make_distiller(model, classes: int, label_smoothing: float, teachers=(), temperature: float = 5.0, alpha: float = 0.0):
    """A small Model that owns its loss, in the shape of keras-io's "Knowledge Distillation" ``Distiller``:

        loss = alpha * T^2 * KL(softmax(teachers / T) || softmax(student / T)) + (1 - alpha) * CE(labels)

    The teachers (frozen served models, logits out) see the very augmented picture the student sees, each
    resized to its own input size; their mean logits are the soft target. Without teachers it is plain
    label-smoothed cross-entropy."""
    import keras
    from keras import ops

    class Distiller(keras.Model):
        def __init__(self, student, teacher_models, **kwargs):
            super().__init__(**kwargs)
            self.student = student
            self.teacher_models = list(teacher_models)
            for teacher in self.teacher_models:
                teacher.trainable = False

        def call(self, inputs, training=False):
            return self.student(inputs, training=training)

        def teacher_logits(self, pictures):
            import tensorflow as tf

            outputs = []
            for teacher in self.teacher_models:
                size = teacher.input_shape[1]
                seen = pictures if size == pictures.shape[1] else tf.image.resize(pictures, (size, size))
                outputs.append(ops.cast(teacher(seen, training=False), "float32"))
            return ops.mean(ops.stack(outputs), axis=0)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            one_hot = ops.one_hot(ops.cast(y, "int32"), classes)
            smoothed = one_hot * (1 - label_smoothing) + label_smoothing / classes
            student_logits = ops.cast(y_pred, "float32")
            label_loss = ops.mean(keras.losses.categorical_crossentropy(smoothed, student_logits, from_logits=True))
            if not self.teacher_models or alpha == 0:
                return label_loss
            t = temperature
            teacher_soft = ops.softmax(ops.stop_gradient(self.teacher_logits(x)) / t, axis=-1)
            student_log_soft = ops.log_softmax(student_logits / t, axis=-1)
            kl = ops.sum(teacher_soft * (ops.log(teacher_soft + 1e-12) - student_log_soft), axis=-1)
            return alpha * (t * t) * ops.mean(kl) + (1 - alpha) * label_loss

    return Distiller(logits_of(model), [logits_of(teacher) for teacher in teachers])


def load_teachers(cards: list[str], class_ids: list[int]):
    """The teachers' served models from their cards; they must name the same classes in the same order."""
    from coinspotter.inference import load_keras_model
    from coinspotter.modelcard import read_card

    teachers = []
    for path in cards:
        card = read_card(path)
        if card.is_ensemble or card.class_ids != class_ids:
            raise SystemExit(f"teacher {path}: needs a single model with the catalogue's classes in order")
        teachers.append(load_keras_model(card.model_path))
    return teachers


def build_network(args, classes: int):
    """The served model (pictures 0..255 in, probabilities out), every layer trainable but BatchNorm."""
    import keras

    from coinspotter.inference import load_keras_model
    from train import build_model

    if args.init:
        init = load_keras_model(Path(args.init))
        model, _ = build_model(arch_of(init, args.arch), args.image_size, "none", classes, 0.3, 256)
        model.set_weights(init.get_weights())
    else:
        model, _ = build_model(args.arch, args.image_size, args.weights, classes, 0.3, 256)
    for layer in iter_layers(model):
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    return model


def arch_of(model, default: str) -> str:
    """train.py's architecture name of a model it built (it names them after the architecture)."""
    from train import ARCHS

    name = model.name.replace("_", "-")
    return name if name in ARCHS else "mobilenetv2" if "mobilenet" in name else default


def iter_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from iter_layers(layer)


def learning_rate(step: int, total: int, args) -> float:
    if step < args.warmup_steps:
        return args.learning_rate * (step + 1) / args.warmup_steps
    progress = (step - args.warmup_steps) / max(1, total - args.warmup_steps)
    return args.learning_rate * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    from evaluate import coin_search

    with coin_search(args.finder, args.finder_dir):
        return train_and_save(args, argv)


def train_and_save(args, argv) -> int:
    import keras
    import tensorflow as tf

    from coinspotter.augment import photo_augmenter
    from evaluate import coin_search_tag
    from train import ARCHS, plot_history, validation_pictures

    keras.utils.set_random_seed(args.seed)
    work = Path(args.work) / args.name
    (Path(args.work) / "prepared").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        handlers=[logging.StreamHandler(), logging.FileHandler(work / "train.log")])
    log.info("arguments %s; pictures cut by %s", vars(args), coin_search_tag())
    class_ids = load_catalog().class_ids
    index_of = {c: i for i, c in enumerate(class_ids)}
    classes = len(class_ids)

    faces, faces_meta = catalogue_faces(args)
    face_labels = np.array([index_of[c] for c in faces_meta["class_ids"]])
    real_count = round(args.batch_size * args.real_share)
    real_sources: dict[str, int] = {}
    holdout = None
    if args.real_photos:
        photos, photos_meta = real_photos(args)
        sources = np.array(photos_meta["sources"])
        unknown = set(args.holdout_sources) - set(sources)
        if unknown:
            raise SystemExit(f"no real-photo source named {sorted(unknown)}; the sources are {sorted(set(sources))}")
        held = np.isin(sources, args.holdout_sources)
        photo_labels = np.array([index_of[c] for c in photos_meta["class_ids"]])
        holdout = (photos[held], photo_labels[held])
        photos, photo_labels = photos[~held], photo_labels[~held]
        real_sources = {s: int(n) for s, n in zip(*np.unique(sources[~held], return_counts=True))}
        log.info("real photos: %d for training from %s; %d held out (%s)", len(photos), real_sources, int(held.sum()), args.holdout_sources)
    if real_count == 0:
        photos, photo_labels = np.zeros((0,) + faces.shape[1:], np.uint8), np.zeros(0, int)
    catalogue_sampler = BalancedSampler(face_labels)
    real_sampler = BalancedSampler(photo_labels) if real_count else None
    val_class_ids, val_pictures, clean = validation_pictures(args.data, args.image_size, args.audit)
    val_labels = np.array([index_of[c] for c in val_class_ids])

    # the augmenters are made before the precision policy is set: they work on float32 pictures
    catalogue_augmenter = photo_augmenter(seed=args.seed * 100 + 1, background_rate=0.6)
    real_augmenter = photo_augmenter(seed=args.seed * 100 + 2, background_rate=0.0)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build_network(args, classes)
    teachers = load_teachers(args.teachers, class_ids)
    alpha = args.alpha if teachers else 0.0
    trainer = make_distiller(model, classes, args.label_smoothing, teachers, args.temperature, alpha)
    optimizer = keras.optimizers.AdamW(args.learning_rate, weight_decay=args.weight_decay)
    trainer.compile(optimizer=optimizer, jit_compile=False)

    @tf.function
    def augment(catalogue_batch, real_batch):
        parts = [catalogue_augmenter(tf.cast(catalogue_batch, tf.float32), training=True)]
        if real_count:
            parts.append(real_augmenter(tf.cast(real_batch, tf.float32), training=True))
        return tf.concat(parts, axis=0)

    checkpoint = work / "checkpoint.weights.h5"
    optimizer_state = work / "optimizer.npz"
    state_path = work / "state.json"
    best_path = work / "best.weights.h5"
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    if args.resume and state_path.is_file() and checkpoint.is_file():
        state = json.loads(state_path.read_text())
        model.load_weights(checkpoint)
        if optimizer_state.is_file():
            trainer.optimizer.build(trainer.trainable_variables)
            saved = np.load(optimizer_state)
            for variable, value in zip(trainer.optimizer.variables, [saved[f"v{i}"] for i in range(len(saved.files))]):
                variable.assign(value)
        log.info("resumed after epoch %d (best leak-free top-1 %.4f at epoch %d)", state["epoch"], state["best"], state["best_epoch"])

    total_steps = args.epochs * args.steps_per_epoch
    for epoch in range(state["epoch"], args.epochs):
        rng = np.random.default_rng([args.seed, epoch])  # the draw of an epoch does not depend on a resume
        started = time.perf_counter()
        losses = []
        bar = tqdm(range(args.steps_per_epoch), desc=f"epoch {epoch + 1}/{args.epochs}", unit="step", mininterval=10)
        for step in bar:
            trainer.optimizer.learning_rate.assign(learning_rate(epoch * args.steps_per_epoch + step, total_steps, args))
            cat_index = catalogue_sampler.draw(rng, args.batch_size - real_count)
            real_index = real_sampler.draw(rng, real_count) if real_count else np.zeros(0, np.int64)
            x = augment(faces[cat_index], photos[real_index])
            y = np.concatenate([face_labels[cat_index], photo_labels[real_index]])
            losses.append(float(trainer.train_on_batch(x, y)))
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        entry = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4), "seconds": round(time.perf_counter() - started, 1)}
        val_probs = model.predict(val_pictures.astype(np.float32), batch_size=64, verbose=0)
        entry["val_leak_free_top1"] = classification_metrics(val_probs[clean], val_labels[clean], class_ids)["top1"]
        entry["val_top1"] = classification_metrics(val_probs, val_labels, class_ids)["top1"]
        if holdout is not None and len(holdout[0]):
            holdout_probs = model.predict(holdout[0].astype(np.float32), batch_size=64, verbose=0)
            entry["real_holdout_top1"] = classification_metrics(holdout_probs, holdout[1], class_ids)["top1"]
        state["history"].append(entry)
        log.info("epoch %s", entry)
        if entry["val_leak_free_top1"] > state["best"]:
            state.update(best=entry["val_leak_free_top1"], best_epoch=epoch + 1)
            model.save_weights(best_path)
        state["epoch"] = epoch + 1
        model.save_weights(checkpoint)
        np.savez(optimizer_state, **{f"v{i}": np.asarray(v) for i, v in enumerate(trainer.optimizer.variables)})
        state_path.write_text(json.dumps(state, indent=1))

    plot_history(state["history"], work / "curves.png", args.name)
    if state["epoch"] == 0:
        raise SystemExit("no epoch was trained (--epochs 0): there is no model to save")
    chosen = state["epoch"] if args.select == "last" else state["best_epoch"]
    model.load_weights(checkpoint if args.select == "last" else best_path)
    keras.mixed_precision.set_global_policy("float32")
    arch = arch_of(model, args.arch)
    served = build_network(argparse.Namespace(**{**vars(args), "arch": arch, "init": None, "weights": "none"}), classes)
    served.set_weights(model.get_weights())  # float32 layers: what the server loads

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{args.name}.h5"
    served.save(model_path)
    card = ModelCard(
        name=args.name,
        display_name=f"{ARCHS[arch][2]}, " + ("distilled" if teachers else "fine-tuned")
        + " end to end on catalogue faces and real photos",
        architecture=f"{ARCHS[arch][2]}, {args.image_size} px; every layer fine-tuned (BatchNorm statistics kept), head: "
        + ("1x1 reduction, bilinear pooling, signed sqrt, L2 norm, dense" if arch == "bilinear-xception" else "global average pooling, dense"),
        class_ids=class_ids,
        input_size=args.image_size,
        file=model_path.name,
        training={
            "recipe": f"end to end, {state['epoch']} epochs of {args.steps_per_epoch} steps of {args.batch_size} pictures "
            f"({real_count} real photos and {args.batch_size - real_count} catalogue faces per batch, each class-balanced), "
            "fresh augmentation every step (coinspotter.augment.photo_augmenter), AdamW with warm-up and cosine, "
            f"label smoothing {args.label_smoothing}" + (", bfloat16 mixed precision" if args.mixed_precision else "")
            + (f"; the last epoch kept ({chosen})" if args.select == "last"
               else f"; the best epoch by leak-free validation kept ({chosen})"),
            "init": Path(args.init).name if args.init else None,
            "weights": None if args.init else (args.weights if args.weights in ("imagenet", "none") else Path(args.weights).name),
            "teachers": [Path(t).stem for t in args.teachers], "temperature": args.temperature if teachers else None,
            "alpha": alpha,
            "catalogue": {"faces": int(len(faces)), "pictures": faces_meta["pictures"], "audit": faces_meta["audit"]},
            "real_photos": {"folder": Path(args.real_photos).name if args.real_photos else None, "pictures": int(len(photos)),
                            "sources": real_sources, "held_out_sources": args.holdout_sources,
                            "held_out_pictures": int(len(holdout[0])) if holdout is not None else 0},
            "coin_search": coin_search_tag(),
            "command": "python training/finetune.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "history": state["history"],
        },
        metrics={"validation_leak_free_top1_at_selection": state["history"][chosen - 1]["val_leak_free_top1"] if chosen else None},
    )
    card.save(out / f"{args.name}.json")
    log.info("saved %s (%.1f MB): epoch %d (%s); best leak-free validation top-1 %.4f at epoch %d",
             model_path, model_path.stat().st_size / 1e6, chosen, args.select, state["best"], state["best_epoch"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
