"""Train a teacher or a student on the fixed views of ``views.py``, optionally by knowledge distillation.

    # teachers
    python training/train.py --arch xception --name xception --views runs/views --weights W/xception_imagenet_notop.weights.h5
    python training/train.py --arch bilinear-xception --name bilinear_xception --views runs/views --weights ...
    # students: the baseline without a teacher, then distilled from the teachers' average
    python training/train.py --arch mobilenetv2 --name student_baseline --views runs/views --weights ...
    python training/train.py --arch mobilenetv2 --name student --views runs/views --weights ... \
        --teachers xception bilinear_xception --temperature 5 --alpha 0.7

CPU recipe (partial fine-tuning on cached features): the network is cut at ``--freeze-until``; the part
below is frozen and run once over every view (its outputs cached on disk, float16), the part above is
trained. Each epoch visits one random view of every face. BatchNorm layers keep their ImageNet
statistics (small data). Checkpoints every epoch; ``--resume`` continues a stopped run. When training
ends, the script writes ``<out>/<name>.h5`` (the whole network, pictures in, probabilities out), its
model card, and the model's logits over all views for the students that distil from it.
"""
from __future__ import annotations

import argparse
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

log = logging.getLogger("train")

# arch -> (keras.applications constructor, default cut, what the card calls it). A cut names the last
# frozen layer, or "<layer" for the input of a layer (Keras numbers unnamed "add" layers per process).
ARCHS = {
    "mobilenetv2": ("MobileNetV2", "block_12_add", "MobileNetV2 alpha 1.0"),  # trains blocks 13-16 (7×7)
    "xception": ("Xception", "<block14_sepconv1", "Xception"),  # trains the exit flow's last block
    "bilinear-xception": ("Xception", "<block14_sepconv1", "bilinear Xception"),
    "inceptionv3": ("InceptionV3", "mixed8", "InceptionV3"),  # trains the last two mixed blocks
}


def cut_tensor(backbone, cut: str):
    return backbone.get_layer(cut[1:]).input if cut.startswith("<") else backbone.get_layer(cut).output


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=sorted(ARCHS), required=True)
    parser.add_argument("--name", required=True, help="model name: <out>/<name>.h5 and .json")
    parser.add_argument("--views", required=True, help="folder written by training/views.py")
    parser.add_argument("--data", required=True, help="coin-images folder (for validation)")
    parser.add_argument("--audit", help="reports/audit.json: leak-free validation from the audit")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' (Keras download), a .weights.h5 path, or 'none' (random, for tests)")
    parser.add_argument("--out", default="web-app/models")
    parser.add_argument("--work", default="runs", help="feature caches, checkpoints, logs")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--freeze-until", help="last frozen layer, or <layer for its input (default per arch)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="stage 1 (head); stage 2 starts at a tenth")
    parser.add_argument("--warmup-epochs", type=int, default=3, help="epochs training the head alone (stage 1)")
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--patience", type=int, default=6, help="early stopping on leak-free validation top-1")
    parser.add_argument("--teachers", nargs="*", default=[], help="names of trained models to distil from")
    parser.add_argument("--temperature", type=float, default=5.0)
    parser.add_argument("--alpha", type=float, default=0.7, help="weight of the distillation term")
    parser.add_argument("--bilinear-channels", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------- model
def build_model(arch: str, image_size: int, weights: str, classes: int, dropout: float, bilinear_channels: int):
    """(served model, backbone): pictures 0..255 in, probabilities out; the logits layer is named "logits"."""
    import keras

    from coinspotter.layers import BilinearPooling

    constructor = getattr(keras.applications, ARCHS[arch][0])
    backbone = constructor(include_top=False, input_shape=(image_size, image_size, 3), weights=None if weights == "none" else weights)
    inputs = keras.Input((image_size, image_size, 3), name="picture")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)  # all three want [-1, 1]
    features = backbone(scaled)
    if arch == "bilinear-xception":
        x = keras.layers.Conv2D(bilinear_channels, 1, use_bias=False, name="bilinear_reduce")(features)
        x = keras.layers.BatchNormalization(name="bilinear_reduce_bn")(x)
        x = keras.layers.Activation("relu", name="bilinear_reduce_relu")(x)
        x = BilinearPooling(name="bilinear_pool")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(classes, name="logits")(x)
    probabilities = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probabilities, name=arch.replace("-", "_")), backbone


def split_model(model, backbone, cut: str):
    """(bottom, top_logits): pictures -> cached features, and features -> logits, sharing the model's layers."""
    import keras

    cut_output = cut_tensor(backbone, cut)
    backbone_bottom = keras.Model(backbone.input, cut_output, name="backbone_bottom")
    backbone_top = keras.Model(cut_output, backbone.output, name="backbone_top")
    picture = model.input
    bottom = keras.Model(picture, backbone_bottom(model.get_layer("to_minus1_1")(picture)), name="bottom")

    features = keras.Input(cut_output.shape[1:], name="features")
    x = backbone_top(features)
    head_layers = model.layers[model.layers.index(backbone) + 1 :]
    for layer in head_layers:
        if layer.name == "probabilities":
            break
        x = layer(x)
    top_logits = keras.Model(features, x, name="top_logits")
    for layer in backbone_bottom.layers:
        layer.trainable = False
    for layer in backbone_top.layers:
        # BatchNorm keeps its ImageNet statistics: a few thousand pictures cannot re-estimate them well
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    return bottom, top_logits, backbone_top


def make_distillation_model(top_logits, temperature: float, alpha: float, label_smoothing: float, classes: int):
    """A small Model that owns its loss, like keras-io's "Knowledge Distillation" example:

        loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)

    The teacher's logits for the very view the student sees arrive with the labels (``y``), computed
    once by the teachers on the same cached views; with ``alpha = 0`` it is plain label training.
    """
    import keras
    from keras import ops

    class DistillationModel(keras.Model):
        def __init__(self, student, **kwargs):
            super().__init__(**kwargs)
            self.student = student
            self.temperature = temperature
            self.alpha = alpha

        def call(self, inputs, training=False):
            return self.student(inputs, training=training)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            labels, teacher_logits = y
            one_hot = ops.one_hot(ops.cast(labels, "int32"), classes)
            smoothed = one_hot * (1 - label_smoothing) + label_smoothing / classes
            label_loss = ops.mean(keras.losses.categorical_crossentropy(smoothed, y_pred, from_logits=True))
            if self.alpha == 0:
                return label_loss
            t = self.temperature
            teacher_soft = ops.softmax(teacher_logits / t, axis=-1)
            student_log_soft = ops.log_softmax(y_pred / t, axis=-1)
            kl = ops.sum(teacher_soft * (ops.log(teacher_soft + 1e-12) - student_log_soft), axis=-1)
            return self.alpha * (t * t) * ops.mean(kl) + (1 - self.alpha) * label_loss

    return DistillationModel(top_logits)


# ---------------------------------------------------------------------------------------------- data
def cached_features(bottom, pictures, path: Path, batch_size: int, desc: str) -> np.ndarray:
    """Run the frozen bottom over ``pictures`` once, into a float16 memmap; resumable chunk by chunk."""
    shape = (len(pictures),) + tuple(bottom.output_shape[1:])
    done_path = path.with_suffix(".done")
    done = int(done_path.read_text()) if done_path.is_file() and path.is_file() else 0
    store = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=np.float16, shape=shape)
    chunk = batch_size * 8
    with tqdm(total=len(pictures), initial=done, desc=desc, unit="img", mininterval=5) as bar:
        for start in range(done, len(pictures), chunk):
            batch = np.asarray(pictures[start : start + chunk], dtype=np.float32)
            store[start : start + len(batch)] = bottom.predict(batch, batch_size=batch_size, verbose=0).astype(np.float16)
            store.flush()
            done_path.write_text(str(start + len(batch)))
            bar.update(len(batch))
    return np.load(path, mmap_mode="r")


def validation_pictures(data: str, image_size: int, audit_path: str | None):
    """Validation pictures prepared as the server prepares an upload (evaluation's own path), and which
    are leak-free."""
    from evaluate import load_catalogue_split

    from coinspotter.preprocessing import to_model_input

    audit = dataset.read_audit(audit_path) if audit_path else None
    validation = load_catalogue_split(Path(data), "validation", audit, localise=True)
    pictures = np.stack([to_model_input(p, image_size).astype(np.uint8) for p in validation.pictures])
    return validation.class_ids, pictures, validation.leak_free


def teacher_logits(names: list[str], work: Path, views_dir: Path, count: int, classes: int) -> np.ndarray:
    """The teachers' mean logits on every view (zeros when there is no teacher).

    Softening the mean logits at temperature T gives the normalised geometric mean of the teachers'
    softened distributions: one smooth target, cheap to store, standard for ensemble distillation.
    """
    if not names:
        return np.zeros((count, classes), dtype=np.float32)
    stacks = []
    for name in names:
        path = work / name / f"logits_{views_dir.name}.npy"
        if not path.is_file():
            raise SystemExit(f"teacher {name!r} has no logits over these views ({path}); train it first")
        stacks.append(np.load(path).astype(np.float32))
    return np.mean(stacks, axis=0)


def plot_history(history: list[dict], path: Path, name: str) -> None:
    """Training curves: loss and validation top-1 (all and leak-free) per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [entry["epoch"] for entry in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, [entry["loss"] for entry in history], marker="o")
    left.set(title=f"{name}: training loss", xlabel="epoch")
    right.plot(epochs, [entry["val_top1"] for entry in history], marker="o", label="validation, all")
    right.plot(epochs, [entry["val_leak_free_top1"] for entry in history], marker="o", label="validation, leak-free")
    right.set(title="top-1", xlabel="epoch", ylim=(0, 1))
    right.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ---------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    work = Path(args.work) / args.name
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(work / "train.log")],
    )
    log.info("arguments %s", vars(args))
    catalog = load_catalog()
    class_ids = catalog.class_ids
    index_of = {c: i for i, c in enumerate(class_ids)}
    classes = len(class_ids)

    views_dir = Path(args.views)
    meta = json.loads((views_dir / "meta.json").read_text())
    if meta["image_size"] != args.image_size:
        raise SystemExit(f"the views are {meta['image_size']} px; pass --image-size {meta['image_size']}")
    views = np.load(views_dir / "views.npy", mmap_mode="r")
    faces, view_count = meta["faces"], meta["views"]
    labels = np.array([index_of[c] for c in np.load(views_dir / "labels.npy")])
    all_labels = np.tile(labels, view_count)

    model, backbone = build_model(args.arch, args.image_size, args.weights, classes, args.dropout, args.bilinear_channels)
    cut = args.freeze_until or ARCHS[args.arch][1]
    bottom, top_logits, backbone_top = split_model(model, backbone, cut)

    cache_dir = Path(args.work) / "features"
    cache_dir.mkdir(parents=True, exist_ok=True)
    backbone_tag = f"{ARCHS[args.arch][0]}_{cut.lstrip('<')}_{args.image_size}"
    train_features = cached_features(bottom, views, cache_dir / f"{backbone_tag}_{views_dir.name}.npy", args.batch_size, "features (views)")
    val_class_ids, val_pictures, clean = validation_pictures(args.data, args.image_size, args.audit)
    val_features = np.asarray(cached_features(bottom, val_pictures, cache_dir / f"{backbone_tag}_validation.npy", args.batch_size, "features (validation)"))
    val_labels = np.array([index_of[c] for c in val_class_ids])
    soft_targets = teacher_logits(args.teachers, Path(args.work), views_dir, len(all_labels), classes)
    alpha = args.alpha if args.teachers else 0.0

    trainer = make_distillation_model(top_logits, args.temperature, alpha, args.label_smoothing, classes)
    trainer.build((None,) + tuple(train_features.shape[1:]))

    checkpoint = work / "checkpoint.weights.h5"
    state_path = work / "state.json"
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "history": []}
    if args.resume and state_path.is_file() and checkpoint.is_file():
        state = json.loads(state_path.read_text())
        top_logits.load_weights(checkpoint)
        log.info("resumed after epoch %d (best leak-free top-1 %.4f)", state["epoch"], state["best"])
    best_path = work / "best.weights.h5"

    rng = np.random.default_rng(args.seed + state["epoch"])
    stage = None
    for epoch in range(state["epoch"], args.epochs):
        # stage 1 (warm-up): the new head alone at --learning-rate; stage 2: the backbone's top part too,
        # from a tenth of that rate down a cosine. A new optimizer per stage: its variables change.
        if stage != (epoch >= args.warmup_epochs):
            stage = epoch >= args.warmup_epochs
            backbone_top.trainable = stage
            for layer in backbone_top.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            trainer.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
        if stage:
            progress = (epoch - args.warmup_epochs) / max(1, args.epochs - args.warmup_epochs)
            trainer.optimizer.learning_rate.assign(0.1 * args.learning_rate * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))))
        started = time.perf_counter()
        pick = rng.integers(0, view_count, faces) * faces + rng.permutation(faces)  # one random view per face
        losses = []
        for start in tqdm(range(0, faces, args.batch_size), desc=f"epoch {epoch + 1}/{args.epochs}", unit="batch", mininterval=10):
            index = np.sort(pick[start : start + args.batch_size])
            x = np.asarray(train_features[index], dtype=np.float32)
            y = (all_labels[index], soft_targets[index])
            losses.append(float(trainer.train_on_batch(x, y)))
        val_probs = keras.ops.convert_to_numpy(keras.ops.softmax(top_logits.predict(val_features, batch_size=128, verbose=0)))
        figures = classification_metrics(val_probs[clean], val_labels[clean], class_ids)
        entry = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4), "val_leak_free_top1": figures["top1"],
                 "val_top1": classification_metrics(val_probs, val_labels, class_ids)["top1"],
                 "seconds": round(time.perf_counter() - started, 1)}
        state["history"].append(entry)
        log.info("epoch %s", entry)
        if figures["top1"] > state["best"]:
            state.update(best=figures["top1"], best_epoch=epoch + 1)
            top_logits.save_weights(best_path)
        state["epoch"] = epoch + 1
        top_logits.save_weights(checkpoint)
        state_path.write_text(json.dumps(state, indent=1))
        if epoch + 1 - state["best_epoch"] >= args.patience:
            log.info("no better leak-free validation for %d epochs: stopping", args.patience)
            break

    plot_history(state["history"], work / "curves.png", args.name)
    top_logits.load_weights(best_path)
    # logits of the chosen model over every view, for the students that distil from it; chunk by chunk from
    # the memory-mapped cache, since a low cut's features do not fit in memory as float32 (block_2_add: 10 GB)
    logits = np.concatenate([
        top_logits.predict(np.asarray(train_features[start : start + 2048], dtype=np.float32), batch_size=128, verbose=0)
        for start in range(0, len(train_features), 2048)
    ])
    np.save(work / f"logits_{views_dir.name}.npy", logits.astype(np.float16))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{args.name}.h5"
    model.save(model_path)
    card = ModelCard(
        name=args.name,
        display_name=f"{ARCHS[args.arch][2]}" + (" (distilled)" if args.teachers else ""),
        architecture=f"{ARCHS[args.arch][2]}, {args.image_size} px; layers above {cut} fine-tuned, head: "
        + ("1x1 reduction, bilinear pooling, signed sqrt, L2 norm, dense" if args.arch == "bilinear-xception" else "global average pooling, dense"),
        class_ids=class_ids,
        input_size=args.image_size,
        file=model_path.name,
        training={
            "recipe": "CPU: frozen bottom cached over fixed augmented views (training/views.py), top trained "
            f"{state['epoch']} epochs (head alone for {args.warmup_epochs}, then the top at a tenth of the rate, cosine), Adam, label smoothing "
            f"{args.label_smoothing}, early stopping on leak-free validation (best epoch {state['best_epoch']})",
            "teachers": args.teachers, "temperature": args.temperature if args.teachers else None,
            "alpha": alpha, "views": meta, "weights": args.weights if args.weights == "imagenet" else Path(args.weights).name,
            "command": "python training/train.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "history": state["history"],
        },
        metrics={"validation_leak_free_top1_at_selection": state["best"]},
    )
    card.save(out / f"{args.name}.json")
    log.info("saved %s (%.1f MB); best leak-free validation top-1 %.4f at epoch %d",
             model_path, model_path.stat().st_size / 1e6, state["best"], state["best_epoch"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
