"""TFLite copies of a model (coinspotter.compact), served through a card (TFLiteClassifier, ModelRegistry),
and benchmarks/compact.py's choice of the file to serve; on the tiny colour model of helpers.py."""
import json
import shutil
import sys
import threading

import numpy as np
import pytest

from coinspotter.config import REPO_ROOT
from coinspotter.inference import KerasClassifier, ModelRegistry, TFLiteClassifier, file_sha256
from coinspotter.modelcard import ModelCardError, read_card
from helpers import EXPECTED_CLASS, TINY_CLASS_IDS, build_colour_model, coin_picture, write_model_dir

COLOURS = ["red", "green", "blue"]


def pictures():
    """Coins of every colour on a few backgrounds and sizes."""
    return [coin_picture(c, (120 + 30 * i, 120), background=(250 - 30 * i,) * 3) for i in range(3) for c in COLOURS]


def representative():
    from coinspotter.preprocessing import batch_model_input

    return batch_model_input(pictures(), 32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A model folder with the tiny student and its .tflite files of every variant."""
    from coinspotter.compact import VARIANTS, tflite_bytes

    folder = write_model_dir(tmp_path_factory.mktemp("models"), with_ensemble=False)
    model = KerasClassifier(read_card(folder / "student.json")).model
    for variant in VARIANTS:
        (folder / f"student.{variant}.tflite").write_bytes(tflite_bytes(model, variant, representative()))
    return folder


def serve_tflite(folder, variant="float16", sha256=None):
    card = read_card(folder / "student.json")
    card.serving = {"file": f"student.{variant}.tflite", "format": "tflite",
                    "source_sha256": sha256 or file_sha256(card.model_path)}
    card.save(folder / "student.json")


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic_int8", "full_int8"])
def test_tflite_export_gives_the_keras_top1(exported, variant):
    card = read_card(exported / "student.json")
    keras_probabilities = KerasClassifier(card).predict_images(pictures())
    lite = TFLiteClassifier(card, path=exported / f"student.{variant}.tflite")
    lite_probabilities = lite.predict_images(pictures())
    assert lite_probabilities.shape == keras_probabilities.shape == (9, 3)
    np.testing.assert_array_equal(lite_probabilities.argmax(1), keras_probabilities.argmax(1))
    assert [lite.class_ids[i] for i in lite_probabilities.argmax(1)] == [EXPECTED_CLASS[c] for c in COLOURS] * 3
    # the weights are in the file, not only the graph: float copies give the same numbers, int8 nearly
    tolerance = {"float32": 1e-5, "float16": 2e-3}.get(variant, 0.05)
    np.testing.assert_allclose(lite_probabilities, keras_probabilities, atol=tolerance)


def test_a_card_serving_tflite_is_served_by_the_registry_at_any_batch_size(exported, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    serve_tflite(folder, "dynamic_int8")
    registry = ModelRegistry(folder)
    registry.load_all()
    student = registry.get("student")
    assert isinstance(student, TFLiteClassifier) and student.path.name == "student.dynamic_int8.tflite"
    keras = KerasClassifier(read_card(folder / "student.json"))
    for count in (1, 3, 1, 8):  # shrink, grow and shrink again
        batch = pictures()[:count]
        probabilities = student.predict_images(batch)
        assert probabilities.shape == (count, 3)
        np.testing.assert_array_equal(probabilities.argmax(1), keras.predict_images(batch).argmax(1))
    assert student.predict_images([]).shape == (0, 3)
    # the .h5 stays reachable for what needs gradients (Grad-CAM), loaded only when asked
    assert student.model.output_shape[-1] == 3


def test_a_stale_or_missing_tflite_falls_back_to_the_h5(exported, tmp_path, caplog):
    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    serve_tflite(folder, "float16", sha256="0" * 64)  # exported from another .h5 than the one there now
    assert isinstance(ModelRegistry(folder).get("student"), KerasClassifier)
    assert "has changed since" in caplog.text
    serve_tflite(folder, "float16")
    (folder / "student.float16.tflite").unlink()
    assert isinstance(ModelRegistry(folder).get("student"), KerasClassifier)
    assert "missing" in caplog.text


def test_the_card_refuses_a_serving_entry_that_is_not_a_tflite_beside_it(tmp_path):
    folder = write_model_dir(tmp_path, with_ensemble=False)
    data = json.loads((folder / "student.json").read_text())
    for serving in ({"file": "student.h5", "format": "tflite"}, {"file": "../x.tflite", "format": "tflite"},
                    {"file": "student.tflite", "format": "onnx"}):
        (folder / "student.json").write_text(json.dumps({**data, "serving": serving}))
        with pytest.raises(ModelCardError, match="serving must name a .tflite"):
            read_card(folder / "student.json")


def test_concurrent_calls_share_the_interpreter_safely(exported):
    card = read_card(exported / "student.json")
    lite = TFLiteClassifier(card, path=exported / "student.float32.tflite")
    expected = {n: lite.predict_images(pictures()[:n]) for n in (1, 2, 3)}
    failures = []

    def worker(n):
        for _ in range(20):
            got = lite.predict_images(pictures()[:n])
            if got.shape != expected[n].shape or not np.allclose(got, expected[n], atol=1e-6):
                failures.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in (1, 2, 3, 1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_a_tflite_file_with_other_classes_than_its_card_is_refused(tmp_path):
    import keras

    from coinspotter.compact import tflite_bytes

    folder = write_model_dir(tmp_path, with_ensemble=False)
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(5, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inputs))
    (folder / "student.float32.tflite").write_bytes(tflite_bytes(keras.Model(inputs, outputs), "float32"))
    with pytest.raises(ModelCardError, match="5 outputs"):
        TFLiteClassifier(read_card(folder / "student.json"), path=folder / "student.float32.tflite")


def test_full_int8_needs_a_representative_set():
    from coinspotter.compact import tflite_bytes

    with pytest.raises(ValueError, match="representative"):
        tflite_bytes(build_colour_model(), "full_int8")


# ------------------------------------------------------------------------------ benchmarks/compact.py's choice


def row(leak_free, real_value, b1, b8, size=1_000_000):
    return {"validation": {"leak_free": {"top1": leak_free}}, "real_photos_dev": {"value_accuracy": real_value},
            "latency": {"batch_1_ms_per_image": b1, "batch_8_ms_per_image": b8}, "file_bytes": size}


@pytest.fixture()
def compact_script():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import compact

    yield compact
    sys.path.remove(str(REPO_ROOT / "benchmarks"))


def test_the_fastest_file_within_half_a_point_is_chosen(compact_script):
    rows = {"h5": row(0.700, 0.340, 15.0, 14.0),
            "float16": row(0.700, 0.340, 8.0, 7.5),
            "dynamic_int8": row(0.696, 0.336, 6.0, 6.0),  # 0.4 points lower on both: within 0.5
            "full_int8": row(0.690, 0.340, 4.0, 4.0)}  # 1 point lower on validation: out
    for name, r in rows.items():
        if name != "h5":
            r["drop_vs_h5"] = compact_script.accuracy_drops(r, rows["h5"])
    chosen, verdicts = compact_script.choose(rows, 0.005)
    assert chosen == "dynamic_int8"
    assert "1.0 points lower" in verdicts["full_int8"]
    rows["dynamic_int8"]["latency"]["batch_8_ms_per_image"] = 20.0  # slower than the .h5 at batch 8: out
    assert compact_script.choose(rows, 0.005)[0] == "float16"
    for name in ("float16", "dynamic_int8"):
        rows[name]["latency"]["batch_1_ms_per_image"] = 16.0
    chosen, verdicts = compact_script.choose(rows, 0.005)
    assert chosen is None and "not faster" in verdicts["float16"]


def test_update_card_serves_the_choice_and_then_the_h5_again(compact_script, exported, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    card_path = folder / "student.json"
    h5 = row(0.7, 0.34, 15.0, 14.0)
    lite = {**row(0.7, 0.34, 8.0, 7.0), "verdict": "as accurate as the .h5 and faster",
            "validation": {"leak_free": {"top1": 0.7}}, "real_photos_dev": {"value_accuracy": 0.34}}
    result = {"models": {"h5": h5, "float16": lite}, "tolerance": 0.005, "measured_by": "python benchmarks/compact.py",
              "measured_at": "now", "source_sha256": file_sha256(folder / "student.h5")}
    files = {"float16": exported / "student.float16.tflite"}
    compact_script.update_card(card_path, result, "float16", files)
    assert read_card(card_path).serving["file"] == "student.float16.tflite"
    assert isinstance(ModelRegistry(folder).get("student"), TFLiteClassifier)
    compact_script.update_card(card_path, result, None, files)
    assert read_card(card_path).serving == {}
    assert not (folder / "student.float16.tflite").exists()  # the file it had copied there is gone
    assert isinstance(ModelRegistry(folder).get("student"), KerasClassifier)
    assert read_card(card_path).class_ids == TINY_CLASS_IDS


def test_of_files_that_run_alike_the_smaller_is_served(compact_script):
    rows = {"h5": row(0.700, 0.340, 15.0, 14.0),
            "float32": row(0.700, 0.340, 8.8, 8.5, size=10_000_000),
            "float16": row(0.700, 0.340, 9.2, 9.0, size=5_000_000)}  # 4.5% slower at batch 1: alike
    for name in ("float32", "float16"):
        rows[name]["drop_vs_h5"] = compact_script.accuracy_drops(rows[name], rows["h5"])
    assert compact_script.choose(rows, 0.005)[0] == "float16"
    rows["float16"]["latency"]["batch_1_ms_per_image"] = 11.0  # 25% slower: the faster one wins
    assert compact_script.choose(rows, 0.005)[0] == "float32"


def test_the_report_names_the_served_file_and_why(compact_script, tmp_path):
    def full(leak_free, real_value, b1, b8, size, agrees=None):
        r = row(leak_free, real_value, b1, b8, size)
        r["validation"].update({"images": 10, "top1": leak_free + 0.1})
        r["validation"]["leak_free"]["images"] = 6
        r["real_photos_dev"].update({"images": 5, "top1": real_value})
        if agrees is not None:
            r["validation"]["top1_agrees_with_h5"] = r["real_photos_dev"]["top1_agrees_with_h5"] = agrees
        return r
    models = {"h5": full(0.7, 0.34, 15.0, 14.0, 10_000_000), "float16": full(0.7, 0.34, 8.0, 7.0, 5_000_000, 0.99),
              "full_int8": full(0.66, 0.28, 5.0, 5.0, 3_000_000, 0.9)}
    for name in ("float16", "full_int8"):
        models[name]["drop_vs_h5"] = compact_script.accuracy_drops(models[name], models["h5"])
    models["full_int8"]["within_one_point"] = False
    served, verdicts = compact_script.choose(models, 0.005)
    for name, verdict in verdicts.items():
        models[name]["verdict"] = verdict
    models[served]["served_file"] = "student.float16.tflite"
    result = {"model": "student", "measured_by": "python benchmarks/compact.py", "measured_at": "now",
              "source_file": "student.h5", "source_sha256": "ab" * 32, "served": served, "models": models,
              "latency_load": {"load_average_1min_min": 3.0, "load_average_1min_max": 4.0}, "cpu_count": 2,
              "latency_rounds": 3, "latency_repeats": 10, "representative": 200}
    compact_script.write_reports(result, tmp_path)
    text = (tmp_path / "compact.md").read_text()
    assert "Served: **student.float16.tflite**" in text and "1.88× / 2.00×" in text
    assert "does **not** keep accuracy within 1 point" in text and "noisy" in text
    assert json.loads((tmp_path / "compact.json").read_text())["served"] == "float16"
