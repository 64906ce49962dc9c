"""training/evaluate.py with a tiny real Keras model whose answers are known (red -> class 1,
green -> class 60, blue -> class 209; see tests/helpers.py), on a made-up data set."""
from __future__ import annotations

import json

import numpy as np
import pytest

from coinspotter import evaluation
from coinspotter.modelcard import read_card
from helpers import coin_picture, encode, write_model_dir
from training import evaluate

# key -> colour of the coin; the folder is the true class. Two mistakes are planted: a red coin
# labelled 60 in validation and a green coin labelled 1 among the real photos.
TRAIN = {"train/1/t1.jpg": "red", "train/60/t2.jpg": "green", "train/209/t3.jpg": "blue"}
VALIDATION = {
    "validation/1/v1.jpg": "red",  # byte-identical to train/1/t1.jpg: not leak-free
    "validation/1/v2.jpg": "red",
    "validation/60/v3.jpg": "green",
    "validation/60/v4.jpg": "red",  # wrong: taken for 1
    "validation/209/v5.jpg": "blue",
    "validation/209/v6.jpg": "blue",
}
REAL_PHOTOS = [("r1.jpg", 1, "red"), ("r2.jpg", 1, "green"), ("r3.jpg", 209, "blue"), ("r4.jpg", 209, "blue")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    data, photos, models = root / "coins", root / "photos", write_model_dir(root / "models")
    for number, (key, colour) in enumerate({**TRAIN, **VALIDATION}.items()):
        path = data / key
        path.parent.mkdir(parents=True, exist_ok=True)
        # each picture a slightly different size, so only the planted copy shares bytes
        path.write_bytes(encode(coin_picture(colour, size=(120 + number, 120 + number))))
    (data / "validation/1/v1.jpg").write_bytes((data / "train/1/t1.jpg").read_bytes())
    (photos / "images").mkdir(parents=True)
    rows = ["file,class_id,name,currency,country"]
    for name, class_id, colour in REAL_PHOTOS:
        # a wider photo than the catalogue's: the localiser's best box is given to the model
        picture = coin_picture(colour, size=(300, 220))
        (photos / "images" / name).write_bytes(encode(picture))
        rows.append(f"images/{name},{class_id},x,x,x")
    (photos / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return data, photos, models


@pytest.fixture(scope="module")
def run(folders, tmp_path_factory):
    data, photos, models = folders
    out = tmp_path_factory.mktemp("reports")
    argv = [str(models / "student.json"), str(models / "ensemble.json"), "--data", str(data),
            "--real-photos", str(photos), "--out", str(out), "--latency-repeats", "1", "--batch-size", "4",
            "--update-card"]
    assert evaluate.main(argv) == 0
    return out, models


def test_accuracies_are_the_planted_ones(run):
    out, _ = run
    report = json.loads((out / "student_eval.json").read_text(encoding="utf-8"))
    validation = report["sets"]["validation"]
    assert {k: validation["full"][k] for k in ("images", "top1", "top5", "value_accuracy")} == {
        "images": 6, "top1": 0.8333, "top5": 1.0, "value_accuracy": 0.8333}
    assert {k: validation["leak_free"][k] for k in ("images", "top1")} == {"images": 5, "top1": 0.8}
    assert validation["full"]["per_class"]["60"] == {"images": 2, "correct": 1, "accuracy": 0.5}
    assert validation["full"]["confused_pairs"] == [{"true": 60, "predicted": 1, "count": 1}]

    real = report["sets"]["real_photos_dev"]
    assert real["full"]["top1"] == 0.75 and real["full"]["value_accuracy"] == 0.75
    assert {code: m["top1"] for code, m in real["per_currency"].items()} == {"AUD": 0.5, "USD": 1.0}
    assert real["localiser"]["used"] and real["localiser"]["no_coin_whole_picture"] == 0

    assert report["footprint"]["parameters"] == 12  # dense 3×3 + 3 biases
    assert set(report["latency"]) >= {"batch_1_ms_per_image", "batch_8_ms_per_image"}
    assert report["predictions"]["validation"][3][:3] == ["validation/60/v4.jpg", 60, 1]


def test_ensemble_is_evaluated_through_the_registry(run):
    out, models = run
    report = json.loads((out / "ensemble_eval.json").read_text(encoding="utf-8"))
    assert report["sets"]["validation"]["full"]["top1"] == 0.8333
    assert report["footprint"]["parameters"] == 24
    assert report["footprint"]["file_bytes"] == sum((models / f"member_{m}.h5").stat().st_size for m in "ab")


def test_reports_pictures_and_card_are_written(run):
    out, models = run
    for name in ("student_confusion.png", "student_confusion_real_photos.png", "student_reliability.png",
                 "evaluation_summary.png", "evaluation.md"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "evaluation.md").read_text(encoding="utf-8")
    assert "| student |" in table and "| ensemble |" in table
    assert "83.3 / 80.0" in table  # validation top-1, full / leak-free
    assert "| AUD | 2 | 50.0 / 50.0 | 50.0 / 50.0 |" in table

    metrics = read_card(models / "student.json").metrics
    assert metrics["validation"]["top1"] == 0.8333 and metrics["validation_leak_free"]["images"] == 5
    assert metrics["real_photos_dev"]["per_currency"]["USD"]["top1"] == 1.0
    assert metrics["measured_by"].startswith("python training/evaluate.py ")


def test_evaluate_card_uses_the_audit_leak_free_list(folders, tmp_path):
    data, _, models = folders
    audit = tmp_path / "audit.json"
    audit.write_text(json.dumps({"format": "coinspotter-audit/1", "train_drop": [],
                                 "leak_free": {"validation": ["validation/60/v3.jpg", "validation/60/v4.jpg"]}}))
    report = evaluate.evaluate_card(models / "student.json", data, audit_path=audit, latency_repeats=0)
    leak_free = report["card_metrics"]["validation_leak_free"]
    assert (leak_free["images"], leak_free["top1"]) == (2, 0.5)
    assert report["leak_free_rule"] == f"audit {audit}"
    assert "--audit" in report["measured_by"] and "real_photos_dev" not in report["sets"]


def test_calibration_and_confusion_figures_by_hand():
    probabilities = np.array([[0.9, 0.1], [0.62, 0.38], [0.3, 0.7], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 0])  # right, wrong, right, right
    calibration = evaluation.expected_calibration_error(probabilities, labels, bins=2)
    # bin (0, .5]: empty; bin (.5, 1]: mean confidence (.9 + .62 + .7 + .55) / 4 = .6925, accuracy .75
    assert calibration["ece"] == pytest.approx(0.0575)
    assert calibration["bins"][1] == {"lower": 0.5, "upper": 1.0, "images": 4, "confidence": 0.6925, "accuracy": 0.75}
    # 15 bins: every picture alone in its bin, so ECE is the mean |right - confidence|
    calibration = evaluation.expected_calibration_error(probabilities, labels, bins=15)
    assert calibration["ece"] == pytest.approx((0.1 + 0.62 + 0.3 + 0.45) / 4)
    assert evaluation.confused_pairs(probabilities, labels, [54, 60]) == [{"true": 60, "predicted": 54, "count": 1}]
    by_currency = evaluation.metrics_by_currency(probabilities, labels, [54, 209])
    assert by_currency["EUR"]["top1"] == 1.0 and by_currency["USD"]["top1"] == 0.5


def test_held_out_real_sources_are_measured_apart_per_currency(folders, tmp_path):
    """--real-holdout measures only the named sources of a training photo folder (file prefix before "__")."""
    data, _, models = folders
    photos = tmp_path / "real-train"
    (photos / "images").mkdir(parents=True)
    rows = ["file,class_id,name,currency,country"]
    for name, class_id, colour in [("kept__a.jpg", 1, "red"), ("held__b.jpg", 209, "blue"), ("held__c.jpg", 60, "red")]:
        (photos / "images" / name).write_bytes(encode(coin_picture(colour, size=(300, 220))))
        rows.append(f"images/{name},{class_id},x,x,x")
    (photos / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "reports"
    assert evaluate.main([str(models / "student.json"), "--data", str(data), "--real-holdout", str(photos),
                          "--holdout-sources", "held", "--out", str(out), "--latency-repeats", "0"]) == 0
    report = json.loads((out / "student_eval.json").read_text())
    held = report["sets"][evaluate.REAL_HOLDOUT]
    assert held["full"]["images"] == 2 and held["full"]["top1"] == 0.5  # the red coin labelled 60 is taken for 1
    assert set(held["per_currency"]) == {"USD", "EUR"}
    assert report["card_metrics"][evaluate.REAL_HOLDOUT]["per_currency"]["USD"]["top1"] == 1.0
    assert "held out of training" in (out / "evaluation.md").read_text()
    with pytest.raises(SystemExit, match="no source named"):
        evaluate.main([str(models / "student.json"), "--data", str(data), "--real-holdout", str(photos),
                       "--holdout-sources", "nowhere", "--out", str(out), "--latency-repeats", "0"])


def test_the_whole_picture_protocol_is_kept_beside_the_servers_way_on_the_card(run, folders, tmp_path):
    import shutil

    data, _, _ = folders
    _, models = run
    copy = tmp_path / "models"
    shutil.copytree(models, copy)
    before = read_card(copy / "student.json").metrics
    assert evaluate.main([str(copy / "student.json"), "--data", str(data), "--catalogue-view", "whole",
                          "--out", str(tmp_path / "whole"), "--latency-repeats", "0", "--update-card"]) == 0
    metrics = read_card(copy / "student.json").metrics
    assert metrics["validation"] == before["validation"]  # the server's-way figures stay
    assert metrics["whole_picture"]["validation"]["images"] == 6
    assert "--catalogue-view whole" in metrics["whole_picture"]["measured_by"]


def test_the_learned_finder_cuts_the_pictures_when_asked(monkeypatch):
    from coinspotter.localize import CoinBox, LocalizationResult

    picture = coin_picture("red", size=(300, 200))
    calls = []

    class StubFinder:
        def locate(self, image):
            calls.append(image.size)
            return LocalizationResult(boxes=[CoinBox(10, 20, 110, 120, score=0.9)], method="stub")

    monkeypatch.setattr(evaluate, "learned_finder", StubFinder())
    monkeypatch.setattr(evaluate, "localiser", "learned")
    crop, found = evaluate.classifier_view(picture)
    assert calls == [(300, 200)] and found == 1 and crop.size == (100, 100)
    monkeypatch.setattr(evaluate, "localiser", "hough")
    evaluate.classifier_view(picture)
    assert len(calls) == 1  # Hough's search, not the stub


def test_catalogue_faces_are_cut_by_the_search_in_use(monkeypatch, tmp_path):
    """Training crops follow the served search: the learned finder's two most probable boxes (a catalogue
    picture shows at most both faces of one coin), or Hough's two-face split; the whole picture when nothing
    is found. The crops' cache tag names the search and changes with the finder's files."""
    from coinspotter.localize import CoinBox, LocalizationResult

    picture = coin_picture("red", size=(300, 200))
    boxes = [CoinBox(0, 0, 50, 50, score=0.6), CoinBox(100, 20, 200, 120, score=0.9),
             CoinBox(200, 100, 260, 160, score=0.7)]

    class StubFinder:
        folder = tmp_path

        def __init__(self, found):
            self.found = found

        def locate(self, image):
            return LocalizationResult(boxes=list(self.found), method="stub")

    (tmp_path / "coin_finder.json").write_text("{}")
    monkeypatch.setattr(evaluate, "localiser", "learned")
    monkeypatch.setattr(evaluate, "learned_finder", StubFinder(boxes))
    crops = evaluate.catalogue_face_crops(picture)
    assert [crop.size for crop in crops] == [(100, 100), (60, 60)]  # scores 0.9 and 0.7; the 0.6 box is left out
    tag = evaluate.coin_search_tag()
    assert tag.startswith("finder-")
    (tmp_path / "coin_finder.tflite").write_bytes(b"another network")
    assert evaluate.coin_search_tag() not in (tag, "hough")
    monkeypatch.setattr(evaluate, "learned_finder", StubFinder([]))
    assert [crop.size for crop in evaluate.catalogue_face_crops(picture)] == [(300, 200)]
    monkeypatch.setattr(evaluate, "localiser", "hough")
    assert evaluate.coin_search_tag() == "hough"
    (hough_crop,) = evaluate.catalogue_face_crops(picture)
    assert hough_crop.size != (300, 200)  # Hough found the painted coin and cut it out


def test_a_missing_learned_finder_is_a_clear_error_not_a_silent_hough_run(monkeypatch, tmp_path):
    monkeypatch.delenv("COINSPOTTER_FINDER", raising=False)  # the server's default (Hough) must not matter here
    monkeypatch.setattr(evaluate, "localiser", "hough")
    monkeypatch.setattr(evaluate, "learned_finder", None)
    with pytest.raises(SystemExit, match="no coin finder in"):
        evaluate.main(["unused.json", "--data", str(tmp_path), "--finder", "learned",
                       "--finder-dir", str(tmp_path / "nowhere"),
                       "--out", str(tmp_path / "out")])


def test_the_pictures_are_cut_by_the_servers_search_and_the_library_default_is_left_alone(run):
    out, _ = run
    report = json.loads((out / "student_eval.json").read_text())
    assert report["coin_search"] == "hough"  # tests/conftest.py serves Hough (COINSPOTTER_FINDER=hough)
    assert report["card_metrics"]["coin_search"] == "hough"
    assert evaluate.localiser == "hough" and evaluate.learned_finder is None  # what training scripts rely on
