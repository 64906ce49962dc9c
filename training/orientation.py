"""Teach an upright model which way is up, then let it read each photo the right way round (an experiment).

    python training/orientation.py --model runs/models/student_upright.json --views runs/views_upright \
        --data ../shared/data/coin-images --real-photos ../shared/data/real-photos-dev --audit reports/audit.json

A model trained on near-upright views (``views.py --max-turn 12``) reads a coin best the right way up
(``benchmarks/turn_search.py``: 0.719 leak-free validation at the turn that undoes a known angle, against 0.689
for the best any-angle rule), but a photo does not say which way is up. Catalogue pictures do, for free: turn a
training view by a random angle and the angle is the label. So a small head on the upright model's last
feature map (before pooling: pooling would throw away where things are) learns the angle in ``--turns`` bins.
At test time the crop is turned ``--turns`` ways as in turn search; every turn's angle guess votes for the
picture's own angle (turn j of a picture at angle a shows angle a + j steps), and the turns' class
probabilities are averaged with the weight of the turn that undoes the voted angle.

Trains on the training views only; compares on leak-free validation (each picture turned by a seeded random
angle) and measures on the real photos. Writes ``--out``/orientation.{json,md} and the head to ``--work``.
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import evaluate  # noqa: E402
import turn_search  # noqa: E402

from coinspotter.catalog import load_catalog  # noqa: E402
from coinspotter.inference import configure_tensorflow_threads, load_keras_model  # noqa: E402
from coinspotter.modelcard import read_card  # noqa: E402
from coinspotter.preprocessing import batch_model_input  # noqa: E402
from coinspotter.tta import turned, turned_views  # noqa: E402

log = logging.getLogger("orientation")
BATCH = 32


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="card of a model trained on near-upright views")
    parser.add_argument("--views", required=True, help="the views folder it was trained on")
    parser.add_argument("--data", required=True)
    parser.add_argument("--real-photos", required=True)
    parser.add_argument("--audit")
    parser.add_argument("--turns", type=int, default=16, help="angle bins, and turns at test time")
    parser.add_argument("--samples-per-face", type=int, default=3, help="randomly turned training views per face")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="runs/orientation")
    parser.add_argument("--out", default="runs/orientation")
    return parser.parse_args(argv)


def two_outputs(model):
    """The model with a second output: its last feature map before pooling (H × W × C)."""
    import keras

    pooled = model.get_layer("pool")
    return keras.Model(model.input, [model.output, pooled.input])


def run(network, pictures: list, desc: str) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    probabilities, maps = [], []
    for start in tqdm(range(0, len(pictures), BATCH), desc=desc, unit="batch", mininterval=5):
        p, m = network(batch_model_input(pictures[start : start + BATCH], network.input_shape[1]), training=False)
        probabilities.append(np.asarray(p))
        maps.append(np.asarray(m).astype(np.float16))
    return np.concatenate(probabilities), np.concatenate(maps)


def training_set(network, views_dir: Path, turns: int, per_face: int, seed: int, work: Path):
    """Feature maps of training views turned by random angles, with the angle's bin; cached in ``work``."""
    from PIL import Image

    cache = work / "train_maps.npy", work / "train_bins.npy"
    if all(path.is_file() for path in cache):
        return np.load(cache[0]), np.load(cache[1])
    meta = json.loads((views_dir / "meta.json").read_text())
    views = np.load(views_dir / "views.npy", mmap_mode="r")
    faces, count = meta["faces"], meta["views"]
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, count, size=(faces, per_face)) * faces + np.arange(faces)[:, None]
    angles = rng.uniform(0, 360, size=chosen.shape)
    pictures = [turned(Image.fromarray(np.asarray(views[i])), a) for i, a in zip(chosen.ravel(), angles.ravel())]
    _, maps = run(network, pictures, "turned training views")
    bins = np.round(angles.ravel() / (360 / turns)).astype(int) % turns
    work.mkdir(parents=True, exist_ok=True)
    np.save(cache[0], maps)
    np.save(cache[1], bins)
    return maps, bins


def angle_head(input_shape, turns: int):
    import keras

    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(32, 1, activation="relu"),  # a few channels per place: the layout is what matters
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(turns, activation="softmax"),
    ], name="angle_head")


def turn_weights(angle_probabilities: np.ndarray) -> np.ndarray:
    """Per picture, how much to trust each turn (N × turns), from every turn's angle guess (N × turns × bins).

    Turn j of a picture at angle bin b shows bin (b + j) mod turns, so each turn's guess is shifted back by j
    and the turns' log-probabilities are added: the picture's own angle, by vote. The turn that undoes bin b
    is (turns − b) mod turns.
    """
    n, turns, _ = angle_probabilities.shape
    log_p = np.log(np.clip(angle_probabilities, 1e-6, 1.0))
    votes = sum(np.roll(log_p[:, j], -j, axis=1) for j in range(turns))  # votes[:, b] = Σ_j log p_j(b + j)
    votes -= votes.max(axis=1, keepdims=True)
    picture_angle = np.exp(votes) / np.exp(votes).sum(axis=1, keepdims=True)
    return picture_angle[:, (turns - np.arange(turns)) % turns]  # weight of turn k = P(angle bin (turns − k))


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    configure_tensorflow_threads()
    import keras

    keras.utils.set_random_seed(args.seed)
    card = read_card(args.model)
    network = two_outputs(load_keras_model(card.path.parent / card.file))
    work = Path(args.work)
    maps, bins = training_set(network, Path(args.views), args.turns, args.samples_per_face, args.seed, work)

    validation, real = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))
    angles = np.random.default_rng(args.seed).uniform(0, 360, len(validation.pictures))
    turned_validation = [turned(picture, angle) for picture, angle in zip(validation.pictures, angles)]
    true_bins = np.round(angles / (360 / args.turns)).astype(int) % args.turns

    head = angle_head(maps.shape[1:], args.turns)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    # the last tenth of the turned views (whole faces: they are stored face by face) is held out
    history = head.fit(maps.astype(np.float32), bins, batch_size=64, epochs=args.epochs, verbose=2,
                       validation_split=0.1).history
    head.save(work / "angle_head.h5")

    class_ids = np.array(card.class_ids)
    catalog = load_catalog()
    result = {"measured_by": "python training/orientation.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
              "measured_at": time.strftime("%Y-%m-%d %H:%M"), "model": card.name, "turns": args.turns,
              "angle_head_exact_bin_accuracy": {"training": round(history["accuracy"][-1], 3),
                                                "held_out_faces": round(history["val_accuracy"][-1], 3)},
              "sets": {}}
    for eval_set, pictures in ((validation, turned_validation), (real, real.pictures)):
        per_turn, angle_guess = [], []
        for start in range(0, len(pictures), 64):  # 64 pictures' turns at a time: feature maps are large
            views = [view for picture in pictures[start : start + 64] for view in turned_views(picture, args.turns)]
            probabilities, view_maps = run(network, views, f"{eval_set.name} from {start}")
            per_turn.append(probabilities.reshape(-1, args.turns, probabilities.shape[1]))
            guess = head.predict(view_maps.astype(np.float32), batch_size=256, verbose=0)
            angle_guess.append(guess.reshape(-1, args.turns, args.turns))
        per_turn, angle_guess = np.concatenate(per_turn), np.concatenate(angle_guess)
        weights = turn_weights(angle_guess)
        rules = turn_search.combined(per_turn)
        rules["turns weighted by the voted angle"] = (per_turn * weights[..., None]).sum(axis=1)
        rules["the turn undoing the voted angle"] = per_turn[np.arange(len(pictures)), weights.argmax(axis=1)]
        truth = np.array(eval_set.class_ids)
        mask = eval_set.leak_free
        row = {rule: turn_search.accuracy(p, truth, class_ids, mask) for rule, p in rules.items()}
        if eval_set is validation:
            voted_bin = (args.turns - weights.argmax(axis=1)) % args.turns
            off = np.minimum((voted_bin - true_bins) % args.turns, (true_bins - voted_bin) % args.turns)
            row["angle found within one bin"] = round(float((off <= 1)[mask].mean()), 3)
        else:
            currencies = np.array([catalog[class_id].currency for class_id in eval_set.class_ids])
            weighted = rules["turns weighted by the voted angle"]
            row["weighted, per currency"] = turn_search.per_currency(weighted, truth, class_ids, currencies)
        result["sets"][eval_set.name] = row
        log.info("%s %s", eval_set.name, json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "orientation.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
