"""The training scripts end to end on a tiny generated data set (seconds, random weights), and the
distillation loss against a value computed by hand."""
import json
import sys

import numpy as np
import pytest

from coinspotter.config import REPO_ROOT
from helpers import coin_picture, encode

sys.path.insert(0, str(REPO_ROOT / "training"))

CLASS_OF_COLOUR = {"red": 1, "green": 60, "blue": 209}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("coins")
    for split, first in (("train", 0), ("validation", 4)):
        for colour, class_id in CLASS_OF_COLOUR.items():
            folder = root / split / str(class_id)
            folder.mkdir(parents=True)
            for i in range(first, first + (4 if split == "train" else 2)):  # no validation picture copies a training one
                picture = coin_picture(colour, (120 + 10 * i, 120), background=(240 - 20 * i, 240, 235))
                (folder / f"{i}.jpg").write_bytes(encode(picture, quality=90))
    return root


@pytest.fixture(scope="module")
def trained(tiny_data, tmp_path_factory):
    import train
    import views

    work = tmp_path_factory.mktemp("work")
    assert views.main(["--data", str(tiny_data), "--out", str(work / "views"), "--views", "2", "--image-size", "32"]) == 0
    common = ["--views", str(work / "views"), "--data", str(tiny_data), "--weights", "none", "--out", str(work / "models"),
              "--work", str(work / "runs"), "--image-size", "32", "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "4"]
    assert train.main(["--arch", "mobilenetv2", "--name", "teacher", *common]) == 0
    assert train.main(["--arch", "mobilenetv2", "--name", "student", "--teachers", "teacher", "--temperature", "3", *common]) == 0
    return work


def test_views_hold_a_clean_view_and_augmented_ones(trained):
    meta = json.loads((trained / "views" / "meta.json").read_text())
    stored = np.load(trained / "views" / "views.npy")
    assert meta["views"] == 2 and stored.shape == (2 * meta["faces"], 32, 32, 3)
    assert meta["faces"] >= 12  # every training picture gives at least one face
    clean, augmented = stored[: meta["faces"]], stored[meta["faces"] :]
    np.testing.assert_array_equal(clean, np.load(trained / "views" / "faces.npy"))
    assert np.abs(clean.astype(int) - augmented.astype(int)).mean() > 3  # the augmentation did something


def test_views_extended_keep_the_earlier_views_and_note_each_augmenter(trained, tiny_data, tmp_path):
    import views

    earlier = trained / "views"
    args = ["--data", str(tiny_data), "--out", str(tmp_path / "more"), "--extend", str(earlier), "--image-size", "32"]
    assert views.main([*args, "--views", "3", "--colour-cast", "0.4", "--tint", "0.1"]) == 0
    meta = json.loads((tmp_path / "more" / "meta.json").read_text())
    stored = np.load(tmp_path / "more" / "views.npy")
    faces = meta["faces"]
    assert meta["views"] == 3 and stored.shape[0] == 3 * faces
    np.testing.assert_array_equal(stored[: 2 * faces], np.load(earlier / "views.npy"))  # kept byte for byte
    assert np.abs(stored[2 * faces :].astype(int) - stored[:faces].astype(int)).mean() > 3  # view 2 is new
    assert [note["views"] for note in meta["augmentation"]] == [[1, 1], [2, 2]]
    assert "colour_cast=0.4, tint=0.1" in meta["augmentation"][1]["augmenter"]
    with pytest.raises(SystemExit, match="cannot be extended"):  # another size cannot stand beside them
        views.main([*args[:-1], "48", "--views", "3", "--out", str(tmp_path / "other")])


def test_views_refuse_a_turn_limit_beyond_half_a_turn_before_writing_anything(tiny_data, tmp_path, capsys):
    import views

    with pytest.raises(SystemExit):
        views.main(["--data", str(tiny_data), "--out", str(tmp_path / "v"), "--max-turn", "200"])
    assert "--max-turn must be within 0..180" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_saved_model_loads_alone_and_matches_the_trained_top(trained):
    """The .h5 is the whole network: its probabilities equal softmax of the logits the script stored."""
    import keras

    from coinspotter.modelcard import read_card

    card = read_card(trained / "models" / "student.json")
    assert card.training["teachers"] == ["teacher"] and card.training["temperature"] == 3
    model = keras.models.load_model(trained / "models" / "student.h5", compile=False)
    stored = np.load(trained / "views" / "views.npy")[:6].astype("float32")
    logits = np.load(trained / "runs" / "student" / "logits_views.npy")[:6].astype("float32")
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(model.predict(stored, verbose=0), expected, atol=2e-3)


def test_resume_continues_from_the_checkpoint(trained, tiny_data):
    import train

    state = json.loads((trained / "runs" / "teacher" / "state.json").read_text())
    assert state["epoch"] == 2
    args = ["--arch", "mobilenetv2", "--name", "teacher", "--views", str(trained / "views"), "--data", str(tiny_data),
            "--weights", "none", "--out", str(trained / "models"), "--work", str(trained / "runs"), "--image-size", "32",
            "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "4", "--resume"]
    assert train.main(args) == 0
    state = json.loads((trained / "runs" / "teacher" / "state.json").read_text())
    assert [entry["epoch"] for entry in state["history"]] == [1, 2, 3]


def test_distillation_loss_equals_the_formula_by_hand():
    import keras

    import train

    classes, temperature, alpha, smoothing = 3, 2.0, 0.6, 0.0
    student = keras.Sequential([keras.Input((3,)), keras.layers.Identity()])
    model = train.make_distillation_model(student, temperature, alpha, smoothing, classes)
    student_logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]], dtype="float32")
    teacher_logits = np.array([[1.0, 1.0, 0.0], [3.0, 0.0, 0.0]], dtype="float32")
    labels = np.array([0, 1])
    loss = float(model.compute_loss(y=(labels, teacher_logits), y_pred=student_logits))

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p_teacher, p_student = softmax(teacher_logits / temperature), softmax(student_logits / temperature)
    kl = np.sum(p_teacher * (np.log(p_teacher) - np.log(p_student)), axis=1).mean()
    ce = -np.log(softmax(student_logits)[[0, 1], labels]).mean()
    assert loss == pytest.approx(alpha * temperature**2 * kl + (1 - alpha) * ce, rel=1e-5)


@pytest.mark.parametrize("arch", ["xception", "bilinear-xception"])
def test_teacher_architectures_survive_h5_save_and_load(arch, tmp_path):
    import keras

    import train

    model, backbone = train.build_model(arch, 71, "none", 5, 0.1, 8)
    bottom, top_logits, _ = train.split_model(model, backbone, train.ARCHS[arch][1])
    x = np.random.default_rng(0).uniform(0, 255, (2, 71, 71, 3)).astype("float32")
    model.save(tmp_path / "t.h5")
    loaded = keras.models.load_model(tmp_path / "t.h5", compile=False)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    # the split halves compose to the whole network
    logits = top_logits.predict(bottom.predict(x, verbose=0), verbose=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.softmax(logits)), model.predict(x, verbose=0), atol=1e-5)


def test_ensemble_card_serves_the_average_of_its_members(trained):
    import ensemble

    from coinspotter.inference import ModelRegistry
    from helpers import coin_picture

    models = trained / "models"
    assert ensemble.main(["--members", "teacher", "student", "--out", str(models)]) == 0
    registry = ModelRegistry(models)
    pictures = [coin_picture("red"), coin_picture("blue")]
    expected = (registry.get("teacher").predict_images(pictures) + registry.get("student").predict_images(pictures)) / 2
    np.testing.assert_allclose(registry.get("ensemble").predict_images(pictures), expected, atol=1e-6)
    assert (trained / "runs" / "teacher" / "curves.png").stat().st_size > 1000  # the training curves were drawn


def test_calibration_rescales_confidence_but_keeps_every_ranking(trained, tiny_data):
    import shutil

    import calibrate

    from coinspotter.inference import KerasClassifier
    from coinspotter.modelcard import read_card
    from helpers import coin_picture

    folder = trained / "calibrated"
    folder.mkdir()
    for suffix in (".h5", ".json"):
        shutil.copy(trained / "models" / f"student{suffix}", folder / f"student{suffix}")
    pictures = [coin_picture(c) for c in ("red", "green", "blue")]
    before = KerasClassifier(read_card(folder / "student.json")).predict_images(pictures)
    assert calibrate.main([str(folder / "student.json"), "--data", str(tiny_data)]) == 0
    card = read_card(folder / "student.json")
    temperature = card.training["calibration"]["temperature"]
    after = KerasClassifier(card).predict_images(pictures)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    scaled = np.log(before.astype(np.float64)) / temperature  # p^(1/T), renormalised, in log space
    expected = np.exp(scaled - scaled.max(1, keepdims=True))
    np.testing.assert_allclose(after, expected / expected.sum(1, keepdims=True), atol=1e-3)
    assert card.training["calibration"]["nll_after"] <= card.training["calibration"]["nll_before"]
    # the server's search cuts the pictures (conftest serves Hough to these painted discs), and the card says so
    assert card.training["calibration"]["fitted_on"].endswith("cut by the Hough localiser")
    with pytest.raises(SystemExit, match="calibrated already"):
        calibrate.main([str(folder / "student.json"), "--data", str(tiny_data)])


def test_tta_calibration_fits_the_served_average_and_leaves_the_model_file_alone(trained, tiny_data):
    import shutil

    import calibrate

    from coinspotter.inference import ModelRegistry
    from coinspotter.modelcard import read_card
    from coinspotter.tta import RotationAveraged
    from helpers import coin_picture

    folder = trained / "tta_calibrated"
    folder.mkdir()
    for suffix in (".h5", ".json"):
        shutil.copy(trained / "models" / f"student{suffix}", folder / f"student{suffix}")
    with pytest.raises(SystemExit, match="without test-time augmentation"):
        calibrate.main([str(folder / "student.json"), "--data", str(tiny_data), "--tta"])
    model_bytes = (folder / "student.h5").read_bytes()
    pictures = [coin_picture(c) for c in ("red", "green", "blue")]
    before = RotationAveraged(ModelRegistry(folder).get("student"), 4).predict_images(pictures)

    assert calibrate.main([str(folder / "student.json"), "--data", str(tiny_data), "--tta", "4"]) == 0
    card = read_card(folder / "student.json")
    assert card.tta_rotations == 4
    fit = card.training["tta"]["calibration"]
    assert card.tta_temperature == fit["temperature"] != 1.0
    assert fit["nll_after"] <= fit["nll_before"]
    assert fit["fitted_on"].endswith("cut by the Hough localiser, 4 turns each")
    assert (folder / "student.h5").read_bytes() == model_bytes
    after = ModelRegistry(folder).get("student").predict_images(pictures)
    np.testing.assert_array_equal(before.argmax(1), after.argmax(1))
    scaled = np.log(before.astype(np.float64)) / card.tta_temperature
    expected = np.exp(scaled - scaled.max(1, keepdims=True))
    np.testing.assert_allclose(after, expected / expected.sum(1, keepdims=True), atol=1e-4)
    # fitted again, it starts from the plain average, not from its own earlier fit
    assert calibrate.main([str(folder / "student.json"), "--data", str(tiny_data), "--tta"]) == 0
    assert read_card(folder / "student.json").tta_temperature == pytest.approx(card.tta_temperature, rel=1e-3)
