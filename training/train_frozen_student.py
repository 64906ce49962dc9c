"""First bundled student: a MobileNetV2 whose ImageNet backbone stays frozen, with a softmax head
trained on cached backbone features. A CPU recipe (about 10 minutes on 2 cores) that gives the app an
honest first model; the distilled student of ``train.py`` replaces it.

    python training/train_frozen_student.py --data ../shared/data/coin-images \
        --weights /path/mobilenet_v2_imagenet_notop.weights.h5 --out web-app/models

Features of every training picture are computed once per view (the picture and one copy turned by a
random multiple of 90°: coins have no "up" in a photo) and cached in ``--cache``; the head trains in
seconds on them. The saved ``.h5`` is the whole network (rescaling, backbone, head), so serving
feeds it pictures, not features.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter import dataset  # noqa: E402
from coinspotter.catalog import load_catalog  # noqa: E402
from coinspotter.evaluation import classification_metrics  # noqa: E402
from coinspotter.modelcard import ModelCard  # noqa: E402

log = logging.getLogger("train_frozen_student")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="coin-images folder (train/validation/test)")
    parser.add_argument("--weights", default="imagenet", help="'imagenet' (Keras download) or a .weights.h5 path")
    parser.add_argument("--out", default="web-app/models", help="folder for student.h5 and student.json")
    parser.add_argument("--name", default="student")
    parser.add_argument("--cache", default="runs/frozen_student", help="feature cache and logs")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--views", type=int, default=2, help="feature views per training picture")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit-per-class", type=int, default=0, help="for smoke tests: pictures per class")
    return parser.parse_args(argv)


def build_backbone(image_size: int, weights: str):
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="picture")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_minus1_1")(inputs)
    base = keras.applications.MobileNetV2(
        include_top=False, input_shape=(image_size, image_size, 3), weights=weights, pooling="avg"
    )
    base.trainable = False
    return keras.Model(inputs, base(scaled), name="mobilenetv2_features")


def build_head(feature_dim: int, classes: int, dropout: float):
    import keras

    inputs = keras.Input((feature_dim,), name="features")
    x = keras.layers.Dropout(dropout)(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


def cached_features(backbone, pictures: np.ndarray, path: Path, batch_size: int) -> np.ndarray:
    if path.is_file():
        features = np.load(path)
        if len(features) == len(pictures):
            log.info("features from cache %s", path)
            return features
    started = time.perf_counter()
    features = backbone.predict(pictures.astype(np.float32), batch_size=batch_size, verbose=1)
    log.info("%d features in %.0f s", len(features), time.perf_counter() - started)
    np.save(path, features.astype(np.float32))
    return features


def main(argv=None) -> int:
    args = parse_args(argv)
    import keras

    keras.utils.set_random_seed(args.seed)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(cache / "train.log")],
    )
    catalog = load_catalog()
    class_ids = catalog.class_ids
    index_of = {class_id: i for i, class_id in enumerate(class_ids)}

    train = dataset.list_split(args.data, "train")
    validation = dataset.list_split(args.data, "validation")
    if args.limit_per_class:
        train = [s for s in train if sum(t.class_id == s.class_id for t in train[: train.index(s)]) < args.limit_per_class]
        validation = validation[:: max(1, len(validation) // (args.limit_per_class * 20))]
    hashes = dataset.read_original_hashes(args.data)
    clean_keys = {s.key for s in dataset.leak_free(validation, train, hashes)}
    log.info("train %d, validation %d (leak-free %d)", len(train), len(validation), len(clean_keys))

    train_pictures = dataset.load_pictures(train, args.image_size, "train")
    val_pictures = dataset.load_pictures(validation, args.image_size, "validation")
    y_train = np.array([index_of[s.class_id] for s in train])
    y_val = np.array([index_of[s.class_id] for s in validation])
    clean = np.array([s.key in clean_keys for s in validation])

    backbone = build_backbone(args.image_size, args.weights)
    rng = np.random.default_rng(args.seed)
    feature_views = []
    for view in range(args.views):
        turns = np.zeros(len(train_pictures), int) if view == 0 else rng.integers(1, 4, len(train_pictures))
        turned = np.stack([np.rot90(p, k) for p, k in zip(train_pictures, turns)])
        tag = f"{args.image_size}_{len(train)}_view{view}_seed{args.seed}"
        feature_views.append(cached_features(backbone, turned, cache / f"train_{tag}.npy", args.batch_size))
    x_train = np.concatenate(feature_views)
    y_train_views = np.tile(y_train, args.views)
    x_val = cached_features(backbone, val_pictures, cache / f"val_{args.image_size}_{len(validation)}.npy", args.batch_size)

    head = build_head(x_train.shape[1], len(class_ids), args.dropout)
    head.compile(
        optimizer=keras.optimizers.Adam(args.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    # Model selection on the leak-free validation images only: the others are copies of training images.
    history = head.fit(
        x_train, y_train_views,
        validation_data=(x_val[clean], y_val[clean]),
        epochs=args.epochs, batch_size=args.batch_size, verbose=2,
        callbacks=[keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=10, restore_best_weights=True)],
    )

    inputs = keras.Input((args.image_size, args.image_size, 3), name="picture")
    full = keras.Model(inputs, head(backbone(inputs)), name=f"{args.name}_mobilenetv2_frozen")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_path = out / f"{args.name}.h5"
    full.save(model_path)

    # Measure the saved file through the serving loader, on pictures prepared the serving way.
    from coinspotter.inference import load_keras_model

    served = load_keras_model(model_path)
    probabilities = served.predict(val_pictures.astype(np.float32), batch_size=args.batch_size, verbose=0)
    metrics = {
        "validation": classification_metrics(probabilities, y_val, class_ids),
        "validation_leak_free": classification_metrics(probabilities[clean], y_val[clean], class_ids),
        "measured_by": "python training/train_frozen_student.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    card = ModelCard(
        name=args.name,
        display_name="MobileNetV2 (frozen backbone, first model)",
        architecture="MobileNetV2 alpha 1.0, ImageNet backbone frozen, global average pooling, dropout, dense softmax",
        class_ids=class_ids,
        input_size=args.image_size,
        file=model_path.name,
        training={
            "recipe": f"CPU: cached frozen-backbone features, {args.views} views per training picture "
            "(original + a random multiple of 90° turn); softmax head with Adam, early stopping on leak-free validation",
            "script": "training/train_frozen_student.py",
            "weights": "imagenet" if args.weights == "imagenet" else Path(args.weights).name,
            "train_images": len(train),
            "epochs_run": len(history.history["loss"]),
            "args": {k: v for k, v in vars(args).items() if k not in ("data", "weights", "out", "cache")},
        },
        metrics=metrics,
    )
    card.save(out / f"{args.name}.json")
    log.info("saved %s (%.1f MB)", model_path, model_path.stat().st_size / 1e6)
    log.info("metrics %s", json.dumps(metrics, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
