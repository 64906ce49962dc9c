"""Train the learned coin finder (coinspotter/finder.py), tune its threshold, export it.

    python training/train_finder.py train --scenes ../shared/data/coin-scenes/train \
        --coin-images ../shared/data/coin-images --real-photos ../shared/data/real-photos-train \
        --weights ../shared/weights/mobilenet_v2_imagenet_notop.weights.h5 \
        --work runs/finder [--synthetic 2400] [--epochs 8] [--batch 16] [--resume]
    python training/train_finder.py calibrate --scenes ../shared/data/coin-scenes/train --work runs/finder
                                         # only for a run stopped early: train does it at its end
    python training/train_finder.py tune --scenes ../shared/data/coin-scenes/train --work runs/finder \
        [--synthetic-check 200] [--coin-images ../shared/data/coin-images --close-up-check 150]
                                         # threshold, overlap rule and flip test on the held-out train photos,
                                         # synthetic scenes and catalogue close-ups of the validation split
    python training/train_finder.py export --work runs/finder --out web-app/models/coin_finder

What ``train`` does, each step logged to ``WORK/train.log`` with a progress bar on the terminal:
1. keeps the run's first train command in ``WORK/arguments.json`` (the card quotes it) and holds out every
   5th photo of each source of coin-scenes/train (sorted by name) for ``tune``: never trained on;
2. cuts coin faces: catalogue pictures of coin-images/train (circles by ``localize.split_faces``) and the
   single-coin crops of real-photos-train (centred, 8% margin; whole photos of casa0018 are skipped);
   background patches are cut from the training photos outside their boxes (``synthetic.patch_outside_boxes``);
   with ``--close-ups N``, close-up single coins too (``load_close_ups``: catalogue pictures and real single-coin
   photos boxed where the classifier's crops are cut; boxes computed once into ``WORK/close_ups.json``);
3. renders ``--synthetic`` photo-like scenes (``synthetic.make_photo_scene``) into ``WORK/synthetic/`` as
   JPEG (quality 45-95) with their boxes, once (resumable: scenes already there are kept); a coin under others
   is labelled when ``--min-visible`` of it is seen;
4. trains the detector (``build_model``) on the synthetic scenes plus the training photos (each repeated
   ``--real-repeat`` times an epoch, scaled down 0.45-1x, flipped, turned by 90-degree steps, colour
   jittered; ``--frame-cuts`` of them seen through a smaller window, coins cut by its edge: ``frame_cut``) and
   N close-ups an epoch, drawn afresh from their pool; the whole model with its optimiser is
   saved to ``WORK/checkpoint.keras`` after every epoch, and ``--resume`` carries on from there;
5. re-estimates the batch-norm statistics over 40 batches (``recalibrate_batch_norm``) -> ``WORK/final.keras``,
   which ``tune`` and ``export`` use.
Loss: CenterNet's penalty-reduced focal loss on the centre map (Gaussian peaks), L1 on log size and
offset at the centres. The data of steps 1-4 (reading, cutting, rendering, targets, augmentation, batches) is
``finder_data.py``; the network, the loss and the commands are here.
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.finder import (  # noqa: E402
    CLOSE_UP_FILL,
    INPUT_SIDE,
    SECOND_LOOKS,
    STRIDE,
    STRIDES,
    TOUCH_REACH,
    letterbox,
    model_input,
)
from coinspotter.synthetic import MIN_VISIBLE_SHARE  # noqa: E402
from finder_data import (  # noqa: E402  (training/ is this script's folder, hence on sys.path)
    Samples,
    close_up_boxes,
    load_close_ups,
    load_faces,
    read_scene_boxes,
    render_synthetic,
    write_split,
)

log = logging.getLogger("train_finder")
EARN_ITS_PLACE = 0.005  # tuning: how much more merit a setting that runs the network more often must bring


# ------------------------------------------------------------------------------------------ model


def build_model(weights: str | None, side: int = INPUT_SIDE, stride: int = STRIDE):
    """MobileNetV2 (alpha 1) cut at block_12_add (stride 16) and block_5_add (stride 8), a light FPN merge at
    stride 8 and two heads: centre probability (sigmoid) and 4 regressions (log w, log h, offset x, y), for a
    ``side`` x ``side`` input. With ``stride`` 4 the merge goes one level further, with block_2_add (stride 4),
    before the same heads: coins lying on each other have their centres a cell or less apart at stride 8."""
    import keras
    from keras import layers

    base = keras.applications.MobileNetV2(include_top=False, input_shape=(side, side, 3),
                                          weights=weights)
    c8, c16 = base.get_layer("block_5_add").output, base.get_layer("block_12_add").output

    def conv_bn(x, filters, kernel, name, separable=False, gamma="ones"):
        Conv = layers.SeparableConv2D if separable else layers.Conv2D
        x = Conv(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(gamma_initializer=gamma, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    p16 = conv_bn(c16, 96, 1, "finder_lateral16")
    p16 = layers.UpSampling2D(2, interpolation="bilinear", name="finder_up")(p16)
    p8 = conv_bn(c8, 96, 1, "finder_lateral8")
    x = layers.Add(name="finder_merge")([p16, p8])
    x = conv_bn(x, 96, 3, "finder_mix1", separable=True)
    x = conv_bn(x, 96, 3, "finder_mix2", separable=True)
    if stride == 4:  # the layers above keep their names, so a stride-8 finder's weights carry over (carry_weights)
        x = layers.UpSampling2D(2, interpolation="bilinear", name="finder_up4")(x)
        p4 = conv_bn(base.get_layer("block_2_add").output, 96, 1, "finder_lateral4")
        merged = layers.Add(name="finder_merge4")([x, p4])
        # a residual whose last scale starts at zero: the new finder starts as the stride-8 one's answer, upsampled
        x = layers.Add(name="finder_fine4")([x, conv_bn(merged, 96, 3, "finder_mix4", separable=True, gamma="zeros")])
    elif stride != 8:
        raise ValueError(f"stride is one of {STRIDES}, not {stride}")
    heat = conv_bn(x, 64, 3, "finder_heat", separable=True)
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="finder_heat_out",
                         bias_initializer=keras.initializers.Constant(-2.19))(heat)
    reg = conv_bn(x, 64, 3, "finder_reg", separable=True)
    reg = layers.Conv2D(4, 1, name="finder_reg_out")(reg)
    out = layers.Concatenate(name="finder_out")([heat, reg])
    return keras.Model(base.input, out, name="coin_finder")


def finder_loss(target, output):
    from keras import ops

    heat_true, heat = target[..., 0], ops.clip(output[..., 0], 1e-4, 1 - 1e-4)
    positive = ops.cast(ops.equal(heat_true, 1.0), "float32")
    negative_weight = ops.power(1.0 - heat_true, 4.0)
    focal_pos = -ops.log(heat) * ops.square(1.0 - heat) * positive
    focal_neg = -ops.log(1.0 - heat) * ops.square(heat) * negative_weight * (1.0 - positive)
    mask = target[..., 5]
    count = ops.maximum(ops.sum(mask), 1.0)
    focal = (ops.sum(focal_pos) + ops.sum(focal_neg)) / count
    size = ops.sum(ops.abs(output[..., 1:3] - target[..., 1:3]) * mask[..., None]) / count
    offset = ops.sum(ops.abs(output[..., 3:5] - target[..., 3:5]) * mask[..., None]) / count
    return focal + size + offset


# ------------------------------------------------------------------------------------------ commands


def setup_logging(work: Path) -> None:
    """This script's log to WORK/train.log (appended) and the terminal. Its own handlers, not the root logger's:
    a second command in the same process (or a test runner's logging) must not leave the file empty."""
    work.mkdir(parents=True, exist_ok=True)
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter("%(asctime)s %(message)s")
    for handler in (logging.FileHandler(work / "train.log"), logging.StreamHandler(sys.stdout)):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def load_real(scenes: Path, files: list[str], photos: dict):
    return [(Image.open(scenes / name).convert("RGB"), np.array(photos[name], np.float32).reshape(-1, 4))
            for name in files]


def command_train(args) -> int:
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    from coinspotter.synthetic import patch_outside_boxes

    work = args.work
    if args.input_side % 32 or args.input_side < 64:
        raise SystemExit(f"--input-side must be a multiple of 32 from 64 up, not {args.input_side}")
    for flag, share in (("--heaps", args.heaps), ("--min-visible", args.min_visible),
                        ("--frame-cuts", args.frame_cuts), ("--solid-coins", args.solid_coins)):
        if not 0.0 <= share <= 1.0:
            raise SystemExit(f"{flag} is a share from 0 to 1, not {share}")
    setup_logging(work)
    log.info("train: %s", vars(args))
    arguments = work / "arguments.json"  # the first train command of the run; the card quotes it
    if not arguments.exists():
        arguments.write_text(json.dumps({key: str(value) if isinstance(value, Path) else value
                                         for key, value in vars(args).items()}, indent=1))
    photos = read_scene_boxes(args.scenes)
    train_files, held = write_split(work, photos)
    log.info("coin-scenes/train: %d photos for training, %d held out for tuning", len(train_files), len(held))
    real = load_real(args.scenes, train_files, photos)
    rng = np.random.default_rng(args.seed)
    labels_done = (work / "synthetic" / "labels.jsonl").exists() and \
        len((work / "synthetic" / "labels.jsonl").read_text().splitlines()) >= args.synthetic
    faces, backgrounds = [], []
    if not labels_done:
        faces = load_faces(args.coin_images, args.real_photos, args.catalogue_faces, rng)
        for image, boxes in real:
            for _ in range(4):
                patch = patch_outside_boxes(rng, np.asarray(image), boxes.tolist())
                if patch is not None:
                    backgrounds.append(patch)
        log.info("%d coin faces, %d background patches", len(faces), len(backgrounds))
    side = args.input_side
    synthetic = render_synthetic(work, args.synthetic, faces, backgrounds, args.seed, side, args.heaps,
                                 args.min_visible, args.solid_coins)
    close_ups = load_close_ups(work, args.coin_images, args.real_photos, args.close_up_pool, rng, side) \
        if args.close_ups else []
    samples = Samples(synthetic, work / "synthetic", real, args.real_repeat, args.batch, args.seed,
                      close_ups, args.close_ups, side, args.frame_cuts, args.stride)
    log.info("%d samples an epoch (%d synthetic, %d real x %d, %d close-ups from %d), %d steps of %d",
             len(samples.items), len(synthetic), len(real), args.real_repeat, args.close_ups if close_ups else 0,
             len(close_ups), len(samples), args.batch)

    checkpoint, state_path = work / "checkpoint.keras", work / "state.json"
    start_epoch = 0
    if args.resume and checkpoint.exists():
        model = keras.saving.load_model(checkpoint, custom_objects={"finder_loss": finder_loss})
        start_epoch = json.loads(state_path.read_text())["epochs_done"]
        log.info("resumed from %s after epoch %d", checkpoint, start_epoch)
        if output_stride(model) != args.stride:  # its samples would be encoded for another grid
            raise SystemExit(f"{checkpoint} has stride {output_stride(model)}: resume with --stride "
                             f"{output_stride(model)}")
    else:
        if args.init:  # a trained finder's weights, a fresh optimiser and schedule (a second stage)
            model = keras.saving.load_model(args.init, compile=False)
            log.info("weights from %s", args.init)
            if input_side(model) != side or output_stride(model) != args.stride:
                # the network is convolutional: the same weights serve any input side; a finer output adds layers
                log.info("input side %d, stride %d (the init model's were %d and %d)", side, args.stride,
                         input_side(model), output_stride(model))
                rebuilt = build_model(None, side, args.stride)
                carry_weights(model, rebuilt)
                model = rebuilt
        else:
            model = build_model(None if str(args.weights) == "none" else str(args.weights), side, args.stride)
        for layer in model.layers:  # the stem and first blocks stay as ImageNet made them (speed, small data)
            if layer.name.startswith(("Conv1", "bn_Conv1", "expanded_conv", "block_1_", "block_2_")):
                layer.trainable = False
        steps = len(samples) * args.epochs
        schedule = keras.optimizers.schedules.CosineDecay(args.lr, steps, alpha=0.05,
                                                          warmup_target=None, warmup_steps=0)
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=finder_loss)
    log.info("model: %d parameters (%d trainable)", model.count_params(),
             sum(int(np.prod(w.shape)) for w in model.trainable_weights))

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = finder_loss(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_weights)
        model.optimizer.apply_gradients(zip(grads, model.trainable_weights))
        return loss

    for epoch in range(start_epoch, args.epochs):
        samples.shuffle(epoch)
        losses, started = [], time.time()
        bar = tqdm(range(args.steps or len(samples)), desc=f"epoch {epoch + 1}/{args.epochs}", file=sys.stdout,
                   mininterval=15)
        for step in bar:
            x, y = samples.batch_at(step)
            losses.append(float(train_step(tf.constant(x), tf.constant(y))))
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
        log.info("epoch %d: loss %.4f, %.0f s (%.2f s/step)", epoch + 1, np.mean(losses), time.time() - started,
                 (time.time() - started) / len(losses))
        model.save(checkpoint)
        state_path.write_text(json.dumps({"epochs_done": epoch + 1, "loss": float(np.mean(losses))}))
        log.info("saved %s", checkpoint)
    recalibrate_batch_norm(model, samples, args.calibration_batches)
    model.save(work / "final.keras")
    log.info("saved %s", work / "final.keras")
    return 0


def input_side(model) -> int:
    """The side of the square a finder network takes (384 for the first stages)."""
    return int(model.input_shape[1])


def output_stride(model) -> int:
    """Input pixels a cell of a finder network's output (8; 4 for one built with ``--stride 4``)."""
    return input_side(model) // int(model.output_shape[1])


def carry_weights(trained, model) -> None:
    """A trained finder's weights into ``model`` (another input side or stride), layer by layer by name; a layer
    only ``model`` has keeps its initial weights. From stride 8 to 4 a coin is twice as many cells across, so the
    regression's log width and height start log 2 higher."""
    by_name = {layer.name: layer for layer in trained.layers}
    for layer in model.layers:
        if layer.name in by_name and layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    ratio = output_stride(trained) / output_stride(model)
    if ratio != 1:
        kernel, bias = model.get_layer("finder_reg_out").get_weights()
        bias[:2] += np.log(ratio)
        model.get_layer("finder_reg_out").set_weights([kernel, bias])


def recalibrate_batch_norm(model, samples: "Samples", batches: int) -> None:
    """Re-estimate the moving mean and variance of every trainable BatchNormalization layer as the plain average
    over ``batches`` training batches (weights untouched). The moving averages of a short run lag the weights
    (MobileNetV2's layers keep 99.9% of the old value a step): measured after one epoch, the centre map's peaks
    were 0.09 in inference mode where training mode gave 0.6-0.9 at the same places."""
    import keras

    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    saved = [layer.momentum for layer in norms]
    samples.shuffle(10_000)
    for step in range(batches):
        for layer in norms:
            layer.momentum = step / (step + 1)  # a running plain average: the first batch replaces the old value
        x, _ = samples.batch_at(step)
        model(x, training=True)
    for layer, momentum in zip(norms, saved):
        layer.momentum = momentum
    log.info("batch norm re-estimated over %d batches of %d (%d layers)", batches, samples.batch, len(norms))


def samples_of(work: Path, scenes: Path, batch: int, real_repeat: int, seed: int, side: int,
               stride: int = STRIDE) -> "Samples":
    """The training samples of a run, from its folder (synthetic labels, split.json) and coin-scenes/train."""
    photos = read_scene_boxes(scenes)
    train_files = json.loads((work / "split.json").read_text())["train"]
    synthetic = [json.loads(line) for line in (work / "synthetic" / "labels.jsonl").read_text().splitlines()]
    return Samples(synthetic, work / "synthetic", load_real(scenes, train_files, photos), real_repeat, batch, seed,
                   side=side, stride=stride)


def command_calibrate(args) -> int:
    """WORK/checkpoint.keras -> WORK/final.keras with its batch-norm statistics re-estimated."""
    import keras

    setup_logging(args.work)
    model = keras.saving.load_model(args.work / "checkpoint.keras", custom_objects={"finder_loss": finder_loss})
    samples = samples_of(args.work, args.scenes, args.batch, 4, args.seed, input_side(model), output_stride(model))
    recalibrate_batch_norm(model, samples, args.batches)
    model.save(args.work / "final.keras")
    log.info("saved %s", args.work / "final.keras")
    return 0


def final_model(work: Path) -> Path:
    """The run's model to tune and export: final.keras (batch norm re-estimated) when there, else the checkpoint."""
    return work / "final.keras" if (work / "final.keras").exists() else work / "checkpoint.keras"


def predict_outputs(model_path: Path, images: list[Image.Image]) -> list:
    """For each image, ``outputs_at(fill, flip, region)``: what ``finder.search`` wants (the network's output and
    the letterbox scale, of the photo or its ``region``, through the same letterbox as serving; with ``flip``, merged
    with the mirror image's as the card's flip test does), from a .keras/.h5 model, computed on first use and kept
    (tuning asks again)."""
    import keras

    from coinspotter.finder import letterbox, merge_flipped, model_input_pair

    model = keras.saving.load_model(model_path, compile=False)
    side = input_side(model)

    def outputs_of(image):
        kept = {}

        def outputs_at(fill: float, flip: bool = False, region: tuple | None = None):
            if (fill, region) not in kept:
                canvas, scale = letterbox(image if region is None else image.crop(region), side=side, fill=fill)
                plain, mirrored = np.asarray(model(model_input_pair(canvas), training=False))
                kept[fill, region] = plain, merge_flipped(plain, mirrored), scale
            plain, merged, scale = kept[fill, region]
            return (merged if flip else plain), scale
        outputs_at(1.0)
        return outputs_at
    return [outputs_of(image) for image in images]


# The settings tune chooses (a grid key holds them in this order) and the card carries.
TUNED_KEYS = ("score_threshold", "same_coin_overlap", "flip_test", "second_look", "peak_window", "touching_threshold",
              "touch_reach", "min_size_share")


def command_tune(args) -> int:
    """Pick the score threshold, the same-coin overlap, the flip test, when the second look runs, the peak
    window, the threshold for coins touching a coin (``finder.add_touching``) and the size prior's share
    (``finder.drop_far_smaller``), within the time budget (``--max-runs``), on
    the held-out train photos, synthetic scenes and catalogue close-ups of the validation split."""
    import keras

    from coinspotter.finder import (PEAK_WINDOWS, SIZE_SHARES, TOUCH_REACHES, TOUCHING_THRESHOLDS, add_touching,
                                    decode, drop_far_smaller, search)
    from coinspotter.scene_metrics import match_boxes

    if args.max_runs < 1:
        raise SystemExit(f"--max-runs is at least 1 (one look at the photo), not {args.max_runs}")
    setup_logging(args.work)
    photos = read_scene_boxes(args.scenes)
    held = json.loads((args.work / "split.json").read_text())["held_out"]
    sets = {"held-out train photos": [(Image.open(args.scenes / name).convert("RGB"), photos[name]) for name in held]}
    if args.synthetic_check:
        from coinspotter.synthetic import make_photo_scene

        scenes = []
        for index in range(args.synthetic_check):
            rng = np.random.default_rng([args.seed + 1000, index])  # not the training scenes' seeds
            n_coins = 0 if index % 10 == 9 else int(rng.integers(1, 16))
            scene = make_photo_scene(rng, n_coins)
            scenes.append((scene.image, scene.boxes))
        sets["synthetic check scenes (drawn coins)"] = scenes
    if args.close_up_check and args.coin_images is not None:
        # catalogue close-ups of the validation split (the split every model here is tuned on), boxed as the
        # classifier's crops are: a threshold that finds heaps but misses a coin filling the frame is no good
        files = sorted((args.coin_images / "validation").glob("*/*.jpg"))
        chosen = np.random.default_rng(args.seed + 2000).choice(len(files), min(args.close_up_check, len(files)),
                                                                 replace=False)
        pairs = []
        for index in sorted(chosen):
            picture = Image.open(files[index]).convert("RGB")
            pairs.append((picture, close_up_boxes(picture, catalogue=True)))
        sets["catalogue close-ups (validation)"] = [(picture, boxes) for picture, boxes in pairs if boxes]
    model_path = final_model(args.work)
    stride = output_stride(keras.saving.load_model(model_path, compile=False))
    log.info("tuning %s (stride %d)", model_path, stride)
    grid = {}
    for label, pairs in sets.items():
        outputs = predict_outputs(model_path, [image for image, _ in pairs])
        touching_cells = {}  # (photo, flip, peak window, touching threshold): the first look decoded at it
        for threshold, overlap, flip, second_look, peak_window in itertools.product(
                np.arange(0.15, 0.81, 0.05), (0.5, 0.6, 0.7, 0.8, 0.9), (False, True), args.second_looks,
                PEAK_WINDOWS):
            # the touching step and the size prior work on what the search found: no search again for them
            # (the reach matters only with a touching threshold, which at or above the threshold adds nothing)
            touching_steps = [(None, TOUCH_REACH)] + [
                (touching, reach) for touching, reach in itertools.product(TOUCHING_THRESHOLDS, TOUCH_REACHES)
                if touching is not None and touching < round(float(threshold), 2)]
            after = [(*step, share) for step, share in itertools.product(touching_steps, SIZE_SHARES)]
            tp, fp, fn, exact = ({choice: 0 for choice in after} for _ in range(4))
            looks = 0
            for index, ((image, truth), outputs_at) in enumerate(zip(pairs, outputs)):
                asked = []

                def looked_at(fill, region=None, flip=flip, asked=asked):
                    asked.append(fill)
                    return outputs_at(fill, flip, region)
                found = search(looked_at, float(threshold), overlap, second_look, peak_window, stride,
                               photo_size=image.size)
                looks += len(asked) * (2 if flip else 1)
                for touching, reach in touching_steps:
                    if touching is not None and (index, flip, peak_window, touching) not in touching_cells:
                        first, scale = outputs_at(1.0, flip, None)  # as search's touching step reads it
                        touching_cells[index, flip, peak_window, touching] = decode(
                            first, touching, scale, peak_window=peak_window, stride=stride)
                    with_touching = found if touching is None else add_touching(
                        found, touching_cells[index, flip, peak_window, touching], float(threshold), overlap, reach)
                    for share in SIZE_SHARES:
                        kept, choice = drop_far_smaller(with_touching, share), (touching, reach, share)
                        hit, n_found = match_boxes(truth, [(d.x0, d.y0, d.x1, d.y1) for d in kept])
                        tp[choice], fp[choice] = tp[choice] + hit, fp[choice] + n_found - hit
                        fn[choice] = fn[choice] + len(truth) - hit
                        exact[choice] += n_found == len(truth)
            for choice in after:
                key = (round(float(threshold), 2), overlap, flip, second_look, peak_window, *choice)
                grid.setdefault(key, {})[label] = {
                    "recall": tp[choice] / max(tp[choice] + fn[choice], 1),
                    "precision": tp[choice] / max(tp[choice] + fp[choice], 1),
                    "count_exact": exact[choice] / len(pairs), "network_runs_per_photo": looks / len(pairs)}

    def merit(entry):  # the choice: the best mean F1 + count accuracy over the tuning sets
        return np.mean([2 * v["recall"] * v["precision"] / max(v["recall"] + v["precision"], 1e-9) + v["count_exact"]
                        for v in entry.values()])

    def cost(entry):  # network runs per photo, measured over the tuning sets (recorded, not used to choose)
        return np.mean([v["network_runs_per_photo"] for v in entry.values()])

    def price(key):  # what a setting costs at most: the flip test and the second look for every photo each double it
        # the window, the touching step and the share cost nothing
        _threshold, _overlap, flip, second_look, _peak_window, _touching, _reach, _share = key
        return (2 if flip else 1) * (2 if second_look in ("always", "zoom") else 1)
    # Only settings within the time budget (issue 13: 60 ms a 1024-px photo; a look at 512 px takes about 20 ms on
    # the 2-core machine, benchmarks/finder_speed.py) are candidates. Of those within EARN_ITS_PLACE of the best
    # merit, the cheapest wins (and among those the best), so a costlier one must earn its place.
    affordable = [key for key in grid if price(key) <= args.max_runs]  # never empty: one look costs 1
    best = max(affordable, key=lambda key: merit(grid[key]))
    close_to_best = [key for key in affordable if merit(grid[key]) >= merit(grid[best]) - EARN_ITS_PLACE]
    best = min(close_to_best, key=lambda key: (price(key), -merit(grid[key])))

    def described(key):  # a grid key as the log and tuning.json write it
        threshold, overlap, flip, second_look, peak_window, touching, reach, share = key
        return (f"{threshold:.2f}/{overlap:.1f}/{'flip' if flip else 'plain'}/{second_look}/window {peak_window}/"
                f"touching {'off' if touching is None else f'{touching:.2f} reach {reach:.2f}'}/"
                f"size share {share:.2f}")
    for key in grid:
        log.info("%s: merit %.3f, %.2f runs a photo; %s", described(key), merit(grid[key]), cost(grid[key]),
                 "; ".join(f"{label}: R {v['recall']:.3f} P {v['precision']:.3f} count {v['count_exact']:.3f}"
                           for label, v in grid[key].items()))
    log.info("chosen (threshold/same-coin overlap/flip test/second look/peak window/touching threshold and reach/"
             "size share) %s: %s", described(best), grid[best])
    (args.work / "tuning.json").write_text(json.dumps(
        {**dict(zip(TUNED_KEYS, best)),
         "at_choice": grid[best], "merit_at_choice": round(float(merit(grid[best])), 4),
         "network_runs_at_choice": round(float(cost(grid[best])), 3), "max_runs_allowed": args.max_runs,
         "second_looks_allowed": list(args.second_looks),
         "synthetic_check_min_visible": MIN_VISIBLE_SHARE,  # the check scenes' labelling (coins under others)
         "grid": {described(key): value for key, value in grid.items()}},
        indent=1))
    return 0



def command_adopt(args) -> int:
    """An exported finder (OUT of ``export``: its .h5 and card) as a run folder again, so that ``tune``, ``export``
    and ``train --init`` work on it where its run folder is gone (a new machine): WORK/final.keras, the split of
    coin-scenes/train (the same held-out photos: ``split_train_photos`` is fixed by name), and the state and
    arguments its card quotes, and its tuning when the card has one."""
    from coinspotter.inference import load_keras_model

    setup_logging(args.work)
    card = json.loads((args.finder / "coin_finder.json").read_text())
    model = load_keras_model(args.finder / "coin_finder.h5")
    model.save(args.work / "final.keras")
    write_split(args.work, read_scene_boxes(args.scenes))
    trained = card.get("trained", {})
    (args.work / "state.json").write_text(json.dumps({"epochs_done": trained.get("epochs", 0),
                                                      "loss": trained.get("final_loss", float("nan"))}))
    (args.work / "arguments.json").write_text(json.dumps(trained.get("arguments", {}), indent=1))
    if card.get("score_threshold") is not None:  # its tuning, so that export writes the same settings again
        tuning = {key: card[key] for key in TUNED_KEYS if key in card}
        (args.work / "tuning.json").write_text(json.dumps({**tuning, "at_choice": card.get("tuning_at_choice")},
                                                          indent=1))
    log.info("adopted %s (input %d, stride %d) as %s", args.finder, input_side(model), output_stride(model),
             args.work / "final.keras")
    return 0


def representative_inputs(work: Path, scenes: Path, side: int, synthetic: int = 60, photos: int = 60):
    """What an integer file's activation ranges are measured on: up to ``photos`` of the run's coin-scenes/train
    photos (never its held-out ones, which tuning reads) and ``synthetic`` of its rendered scenes, each as both
    looks see it (the photo at the input side and at half of it), as the network's float input."""
    split = json.loads((work / "split.json").read_text())
    pictures = [scenes / name for name in split["train"][:photos]]
    pictures += sorted((work / "synthetic").glob("*.jpg"))[:synthetic]
    if not pictures:
        raise SystemExit(f"no training photos or synthetic scenes found for {work} to quantise on")
    for path in pictures:
        with Image.open(path) as image:
            for fill in (1.0, CLOSE_UP_FILL):
                yield [model_input(letterbox(image, side=side, fill=fill)[0])]


def command_export(args) -> int:
    """WORK/checkpoint.keras -> OUT/coin_finder.h5 (no optimiser), OUT/coin_finder.tflite and the card."""
    import keras
    import tensorflow as tf

    setup_logging(args.work)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    model = keras.saving.load_model(final_model(args.work), compile=False)
    log.info("exporting %s", final_model(args.work))
    model.save(out / "coin_finder.h5", include_optimizer=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    side = input_side(model)
    tflite = "float32"
    if args.float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        tflite = "float16 weights"
    elif args.int8:
        # Integer weights and activations (float input and output): XNNPACK's 8-bit kernels, a quarter of the
        # file's size (stage 11: 0.907 of the float file's time, timed call for call; the finder's README); the
        # ranges come from training-side pictures (representative_inputs).
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_inputs(args.work, args.scenes, side)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        tflite = "int8 weights and activations, float input and output; ranges from the run's training photos and " \
                 "synthetic scenes"
    (out / "coin_finder.tflite").write_bytes(converter.convert())
    tuning = json.loads((args.work / "tuning.json").read_text()) if (args.work / "tuning.json").exists() else {}
    state = json.loads((args.work / "state.json").read_text())
    arguments = args.work / "arguments.json"
    train_args = json.loads(arguments.read_text()) if arguments.exists() else {}
    stride = output_stride(model)
    card = {
        "name": "coin_finder",
        "what": f"learned coin finder: CenterNet-style centre/size heat map, stride {stride}, on MobileNetV2 "
                f"(alpha 1) cut at block_12_add, input {side}x{side} (photo letterboxed top left, grey 128)",
        "input_side": side,
        "input": f"float32 (1, {side}, {side}, 3), RGB / 127.5 - 1",
        "tflite": tflite,
        "output": f"(1, {side // stride}, {side // stride}, 5): centre probability, log width and log height in "
                  f"cells of {stride} px, x and y offset",
        "stride": stride,
        "score_threshold": tuning.get("score_threshold"),
        "same_coin_overlap": tuning.get("same_coin_overlap"),
        "flip_test": bool(tuning.get("flip_test", False)),
        "second_look": tuning.get("second_look", "large"),
        "peak_window": tuning.get("peak_window", 3),
        "touching_threshold": tuning.get("touching_threshold"),
        "touch_reach": tuning.get("touch_reach", TOUCH_REACH),
        "min_size_share": tuning.get("min_size_share", 0.0),
        "tuned_on": "held-out coin-scenes/train photos (every 5th per source), synthetic check scenes and "
                    "catalogue close-ups of coin-images/validation; never on coin-scenes/dev",
        "tuning_at_choice": tuning.get("at_choice"),
        "trained": {"epochs": state["epochs_done"], "final_loss": round(state["loss"], 4), "arguments": train_args},
        "how": "python training/train_finder.py train ... ; python training/train_finder.py tune ... ; "
               "python training/train_finder.py export --work WORK --out web-app/models/coin_finder",
        "parameters": int(model.count_params()),
    }
    (out / "coin_finder.json").write_text(json.dumps(card, indent=1) + "\n")
    for name in ("coin_finder.h5", "coin_finder.tflite"):
        log.info("%s: %.2f MB", out / name, (out / name).stat().st_size / 2**20)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="render synthetic scenes and train (resumable)")
    train.add_argument("--scenes", type=Path, required=True, help="coin-scenes/train folder")
    train.add_argument("--coin-images", type=Path, default=None, help="coin-images folder (faces from train/)")
    train.add_argument("--real-photos", type=Path, default=None, help="real-photos-train folder")
    train.add_argument("--weights", type=Path, required=True,
                       help="mobilenet_v2_imagenet_notop.weights.h5 ('none': random, for tests)")
    train.add_argument("--work", type=Path, required=True, help="folder for scenes, checkpoint and log")
    train.add_argument("--synthetic", type=int, default=2400, help="synthetic scenes to render and train on")
    train.add_argument("--heaps", type=float, default=0.2,
                       help="share of the synthetic scenes whose coins lie in a heap, on each other")
    train.add_argument("--min-visible", type=float, default=MIN_VISIBLE_SHARE,
                       help="how much of a coin under others must be seen for it to be labelled in the synthetic "
                            "scenes (stages 1-7: 0.4)")
    train.add_argument("--solid-coins", type=float, default=0.0,
                       help="share of the synthetic scenes whose coins are drawn as solid discs: their edge seen at "
                            "a slant, heaps closer and each coin tilted on the ones under it (stages 1-11: none)")
    train.add_argument("--frame-cuts", type=float, default=0.0,
                       help="share of the synthetic scenes and real photos seen through a window half to nine "
                            "tenths their size, coins cut by its edge (stages 1-7: none)")
    train.add_argument("--catalogue-faces", type=int, default=600, help="catalogue pictures to cut faces from")
    train.add_argument("--real-repeat", type=int, default=5, help="times each training photo appears an epoch")
    train.add_argument("--close-ups", type=int, default=0,
                       help="close-up single coins an epoch (drawn afresh from the pool each epoch; 0: none)")
    train.add_argument("--close-up-pool", type=int, default=1200,
                       help="catalogue pictures in the close-up pool (besides the real single-coin photos)")
    train.add_argument("--input-side", type=int, default=INPUT_SIDE,
                       help="side of the square input in pixels, a multiple of 32 (with --init: the weights are "
                            "carried over to this side)")
    train.add_argument("--stride", type=int, choices=STRIDES, default=STRIDE,
                       help="input pixels a cell of the output (4: one more merge level, block_2_add; with --init "
                            "from a stride-8 finder its weights are carried over)")
    train.add_argument("--epochs", type=int, default=8)
    train.add_argument("--steps", type=int, default=0, help="steps an epoch (0: all samples); for timing runs")
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="carry on from WORK/checkpoint.keras")
    train.add_argument("--init", type=Path, default=None,
                       help="start from this trained finder (.keras) instead of ImageNet (fresh optimiser)")
    train.add_argument("--calibration-batches", type=int, default=40,
                       help="batches over which batch norm is re-estimated at the end (WORK/final.keras)")
    calibrate = commands.add_parser("calibrate", help="re-estimate batch norm of WORK/checkpoint.keras")
    calibrate.add_argument("--scenes", type=Path, required=True)
    calibrate.add_argument("--work", type=Path, required=True)
    calibrate.add_argument("--batches", type=int, default=40)
    calibrate.add_argument("--batch", type=int, default=16)
    calibrate.add_argument("--seed", type=int, default=0)
    tune = commands.add_parser("tune", help="choose the score threshold on held-out train photos + synthetic")
    tune.add_argument("--scenes", type=Path, required=True)
    tune.add_argument("--work", type=Path, required=True)
    tune.add_argument("--synthetic-check", type=int, default=200)
    tune.add_argument("--coin-images", type=Path, default=None,
                      help="coin-images folder: its validation close-ups join the tuning sets")
    tune.add_argument("--close-up-check", type=int, default=150, help="validation pictures for that set")
    tune.add_argument("--max-runs", type=int, default=2,
                      help="network runs a photo a setting may take at most (the flip test and the second look for "
                           "every photo each double them): the time budget")
    tune.add_argument("--second-looks", nargs="+", choices=SECOND_LOOKS, default=list(SECOND_LOOKS),
                      help="second looks to choose from (\"always\": a close-up at 512 px is boxed small at the "
                           "first look, and the classifier's crops suffer; \"zoom\": the part of the photo holding "
                           "the coins found, enlarged, for small coins in heaps; see the finder's README)")
    tune.add_argument("--seed", type=int, default=0)
    adopt = commands.add_parser("adopt", help="an exported finder as a run folder again (to tune it or train on)")
    adopt.add_argument("--finder", type=Path, required=True, help="exported folder (coin_finder.h5 and its card)")
    adopt.add_argument("--scenes", type=Path, required=True, help="coin-scenes/train folder (the held-out split)")
    adopt.add_argument("--work", type=Path, required=True)
    export = commands.add_parser("export", help="write the .h5, the .tflite and the card")
    export.add_argument("--work", type=Path, required=True)
    export.add_argument("--out", type=Path, default=Path("web-app/models/coin_finder"))
    precision = export.add_mutually_exclusive_group()
    precision.add_argument("--float16", action="store_true", help="float16 weights in the .tflite")
    precision.add_argument("--int8", action="store_true",
                           help="an integer .tflite (needs --scenes: its activation ranges are measured on the run's "
                                "training photos and synthetic scenes)")
    export.add_argument("--scenes", type=Path, default=None, help="coin-scenes/train folder (for --int8)")
    args = parser.parse_args(argv)
    if args.command == "export" and args.int8 and args.scenes is None:
        parser.error("export --int8 needs --scenes (the coin-scenes/train folder)")
    return {"train": command_train, "calibrate": command_calibrate, "tune": command_tune,
            "adopt": command_adopt, "export": command_export}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
