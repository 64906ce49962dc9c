"""The end-to-end recipe (training/finetune.py) on a tiny generated data set: catalogue pictures and
real photos from two sources, one held out; and the augmentation it draws afresh at every step."""
import csv
import json
import sys

import numpy as np
import pytest

from coinspotter.config import REPO_ROOT
from helpers import coin_picture, encode

sys.path.insert(0, str(REPO_ROOT / "training"))

CLASS_OF_COLOUR = {"red": 1, "green": 60, "blue": 209}


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    catalogue = root / "coin-images"
    for split, first in (("train", 0), ("validation", 4)):
        for colour, class_id in CLASS_OF_COLOUR.items():
            folder = catalogue / split / str(class_id)
            folder.mkdir(parents=True)
            for i in range(first, first + (3 if split == "train" else 2)):
                picture = coin_picture(colour, (120 + 10 * i, 120), background=(240 - 20 * i, 240, 235))
                (folder / f"{i}.jpg").write_bytes(encode(picture, quality=90))
    photos = root / "real-photos-train"
    (photos / "images").mkdir(parents=True)
    rows = []
    for source, shade in (("phoneA", (120, 90, 60)), ("phoneB", (60, 60, 70))):  # wood, slate
        for colour, class_id in CLASS_OF_COLOUR.items():
            for i in range(2):
                name = f"images/{source}__{colour}{i}.jpg"
                (photos / name).write_bytes(encode(coin_picture(colour, (160, 140 + 10 * i), background=shade), quality=85))
                rows.append({"file": name, "class_id": class_id, "name": "x", "currency": "x", "country": "x",
                             "source_repo": source, "source_commit": "0", "source_path": name, "licence": "none"})
    with open(photos / "labels.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def run(tiny_sets, work, *extra):
    import finetune

    return finetune.main([
        "--name", "student_real", "--data", str(tiny_sets / "coin-images"), "--weights", "none",
        "--real-photos", str(tiny_sets / "real-photos-train"), "--holdout-sources", "phoneB",
        "--out", str(work / "models"), "--work", str(work / "runs"), "--image-size", "32",
        "--batch-size", "4", "--steps-per-epoch", "3", "--warmup-steps", "2", *extra])


@pytest.fixture(scope="module")
def finetuned(tiny_sets, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    assert run(tiny_sets, work, "--epochs", "2") == 0
    return work


def test_the_recipe_saves_a_served_model_and_a_card_naming_its_real_sources(finetuned):
    from coinspotter.inference import build_classifier
    from coinspotter.modelcard import read_card
    from helpers import coin_picture as picture

    card = read_card(finetuned / "models" / "student_real.json")
    real = card.training["real_photos"]
    assert real["sources"] == {"phoneA": 6} and real["held_out_sources"] == ["phoneB"] and real["held_out_pictures"] == 6
    assert card.training["catalogue"]["faces"] >= 9
    assert [entry["epoch"] for entry in card.training["history"]] == [1, 2]
    assert card.training["recipe"].endswith("the last epoch kept (2)")
    assert card.training["coin_search"] == "hough"  # tests/conftest.py serves Hough; the crops follow the server
    assert sorted(path.name for path in (finetuned / "runs" / "prepared").glob("*.npy")) == [
        "catalogue_32_hough.npy", "real_real-photos-train_32_hough.npy"]
    assert all("real_holdout_top1" in entry for entry in card.training["history"])
    probabilities = build_classifier(card).predict_images([picture("red"), picture("blue")])
    assert probabilities.shape == (2, len(card.class_ids))
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_every_layer_but_batchnorm_learns(tiny_sets):
    import argparse

    import keras

    import finetune

    args = argparse.Namespace(init=None, arch="mobilenetv2", image_size=32, weights="none")
    model = finetune.build_network(args, 211)
    layers = list(finetune.iter_layers(model))
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    convolutions = [layer for layer in layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert len(convolutions) > 50 and all(layer.trainable for layer in convolutions)


def test_a_stopped_run_resumes_where_it_was(tiny_sets, tmp_path):
    assert run(tiny_sets, tmp_path, "--epochs", "1") == 0
    state = json.loads((tmp_path / "runs" / "student_real" / "state.json").read_text())
    assert state["epoch"] == 1
    assert run(tiny_sets, tmp_path, "--epochs", "2", "--resume") == 0
    state = json.loads((tmp_path / "runs" / "student_real" / "state.json").read_text())
    assert [entry["epoch"] for entry in state["history"]] == [1, 2]


def test_an_unknown_held_out_source_is_refused(tiny_sets, tmp_path):
    import finetune

    with pytest.raises(SystemExit, match="no real-photo source named"):
        finetune.main(["--name", "x", "--data", str(tiny_sets / "coin-images"), "--weights", "none",
                       "--real-photos", str(tiny_sets / "real-photos-train"), "--holdout-sources", "nowhere",
                       "--out", str(tmp_path), "--work", str(tmp_path), "--image-size", "32"])


def test_the_sampler_draws_every_class_about_equally():
    import finetune

    labels = np.array([0] * 90 + [1] * 9 + [2])
    drawn = labels[finetune.BalancedSampler(labels).draw(np.random.default_rng(0), 3000)]
    counts = np.bincount(drawn, minlength=3)
    assert counts.min() > 850, counts  # the one picture of class 2 comes up a third of the time, not 1%


# --------------------------------------------------------------------------------------- augmentation
def test_turned_corners_take_the_border_colour_never_a_mirror_of_the_coin():
    from coinspotter.augment import RandomCameraGeometry

    # a grey background with a bright coin touching the right edge: a mirror fill would show a bright sliver
    pictures = np.full((16, 64, 64, 3), 100.0, np.float32)
    yy, xx = np.mgrid[:64, :64]
    pictures[:, (xx - 50) ** 2 + (yy - 32) ** 2 < 14 ** 2] = 250.0
    pictures[:, :, -2:] = 100.0  # the two-pixel border itself stays background
    turned = np.asarray(RandomCameraGeometry(max_turn_degrees=45, scale=(0.7, 0.8), shift=0.0, tilt=0.1, seed=3)(pictures, training=True))
    corners = np.concatenate([turned[:, :6, :6], turned[:, :6, -6:], turned[:, -6:, :6], turned[:, -6:, -6:]], axis=1)
    assert np.abs(corners - 100.0).max() < 1.0  # filled with the border's grey
    assert not np.allclose(turned, pictures)  # and the picture did move


def test_the_photo_augmenter_draws_anew_each_time():
    from coinspotter.augment import photo_augmenter

    pictures = np.stack([np.asarray(coin_picture("red", (48, 48)), np.float32)] * 2)
    augmenter = photo_augmenter(seed=1, background_rate=0.0)
    first, second = (np.asarray(augmenter(pictures, training=True)) for _ in range(2))
    assert np.abs(first - second).mean() > 3
    assert first.min() >= 0 and first.max() <= 255


def test_a_student_distils_from_a_teacher_on_the_same_augmented_pictures(tiny_sets, finetuned, tmp_path):
    from coinspotter.modelcard import read_card

    teacher = finetuned / "models" / "student_real.json"
    assert run(tiny_sets, tmp_path, "--epochs", "1", "--teachers", str(teacher), "--temperature", "4", "--alpha", "0.5") == 0
    card = read_card(tmp_path / "models" / "student_real.json")
    assert card.training["teachers"] == ["student_real"] and card.training["temperature"] == 4.0
    assert card.training["alpha"] == 0.5 and "distilled" in card.display_name


def test_the_distillation_loss_is_the_one_written_down():
    """alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 − alpha)·CE(smoothed labels, s), by hand on two pictures."""
    import keras

    import finetune

    classes, temperature, alpha, smoothing = 3, 2.0, 0.6, 0.1
    pictures = keras.Input((4, 4, 3))
    logits = keras.layers.Dense(classes, name="logits")(keras.layers.GlobalAveragePooling2D()(pictures))
    student = keras.Model(pictures, keras.layers.Activation("softmax")(logits))
    teacher_logits_layer = keras.layers.Dense(classes, name="logits")
    teacher = keras.Model(pictures, keras.layers.Activation("softmax")(teacher_logits_layer(keras.layers.GlobalAveragePooling2D()(pictures))))
    distiller = finetune.make_distiller(student, classes, smoothing, [teacher], temperature, alpha)
    x = np.random.default_rng(0).uniform(0, 1, (2, 4, 4, 3)).astype("float32")
    y = np.array([0, 2])
    s = np.asarray(distiller(x))
    t = np.asarray(distiller.teacher_logits(x))

    def softmax(z):
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    targets = np.eye(classes)[y] * (1 - smoothing) + smoothing / classes
    cross_entropy = -(targets * np.log(softmax(s))).sum(axis=1).mean()
    p, q = softmax(t / temperature), softmax(s / temperature)
    kl = (p * (np.log(p) - np.log(q))).sum(axis=1).mean()
    expected = alpha * temperature ** 2 * kl + (1 - alpha) * cross_entropy
    assert float(distiller.compute_loss(x=x, y=y, y_pred=s)) == pytest.approx(expected, rel=1e-4)


def test_the_gpu_script_asks_only_for_flags_the_scripts_take(tmp_path):
    """training/gpu_teachers.sh, run with a stand-in python that records its arguments: every finetune.py,
    ensemble.py and evaluate.py call it would make parses."""
    import os
    import shlex
    import subprocess

    import evaluate
    import finetune

    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$(printf "%q " "$@")" >> {calls}\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "WEIGHTS": "/weights", "RUNS": str(tmp_path / "runs")}
    subprocess.run(["bash", str(REPO_ROOT / "training" / "gpu_teachers.sh")], check=True, env=env, capture_output=True)
    lines = [shlex.split(line) for line in calls.read_text().splitlines()]
    scripts = [line[0] for line in lines]
    assert scripts.count("training/finetune.py") == 7 and "training/ensemble.py" in scripts
    for line in lines:
        if line[0] == "training/finetune.py":
            args = finetune.parse_args(line[1:])
            assert args.resume and args.real_photos
        elif line[0] == "training/evaluate.py":
            evaluate.parse_args(line[1:])


def test_a_trained_model_is_bundled_under_the_served_name(finetuned, tmp_path):
    import bundle

    from coinspotter.inference import ModelRegistry
    from coinspotter.modelcard import read_card

    assert bundle.main([str(finetuned / "models" / "student_real.json"), "--as", "student", "--out", str(tmp_path)]) == 0
    card = read_card(tmp_path / "student.json")
    assert card.name == "student" and card.file == "student.h5" and (tmp_path / "student.h5").is_file()
    assert card.training["trained_as"] == "student_real" and card.metrics == {} and card.serving == {}
    assert ModelRegistry(tmp_path).get("student").class_ids == card.class_ids
