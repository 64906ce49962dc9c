"""The TFLite copies the deployed app serves (training/export_tflite.py), checked against their .h5: the same
answers, the same "Show why" maps, and the whole service running with TensorFlow out of reach, as it runs from
requirements.txt alone. On the tiny models of helpers.py, and on the bundled models themselves."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from coinspotter.config import REPO_ROOT
from coinspotter.inference import KerasClassifier, ModelRegistry, TFLiteClassifier, file_sha256, stale_serving_reason
from coinspotter.modelcard import find_cards, read_card
from helpers import write_model_dir

sys.path.insert(0, str(REPO_ROOT / "training"))
import export_tflite  # noqa: E402

EXPORT = "python training/export_tflite.py"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = write_model_dir(tmp_path_factory.mktemp("models"))
    assert export_tflite.main(["--models", str(folder)]) == 0
    return folder


def test_every_card_with_an_h5_gets_a_copy_its_kernel_and_a_serving_entry(exported):
    cards = find_cards(exported)
    for name in ("student", "member_a", "member_b"):
        card = cards[name]
        assert card.serving["file"] == f"{name}.float16.tflite" and (exported / card.serving["file"]).is_file()
        assert card.serving["cam"] == f"{name}.cam.npz" and (exported / card.serving["cam"]).is_file()
        assert card.serving["source_sha256"] == file_sha256(exported / f"{name}.h5")
        assert card.serving["checked"]["top1_agrees_with_h5"] == 1.0
        assert stale_serving_reason(card) is None
    assert cards["ensemble"].serving == {}  # served through its members' copies
    registry = ModelRegistry(exported)
    registry.load_all(warm_up=False)
    assert registry.unavailable == {}
    assert all(isinstance(registry.get(name), TFLiteClassifier) for name in ("student", "member_a", "member_b"))


def test_the_copy_answers_as_its_h5_and_its_map_is_the_h5s_grad_cam(exported):
    from coinspotter.explain import ClassActivationMap, GradCam

    card = read_card(exported / "student.json")
    keras, lite = KerasClassifier(card), TFLiteClassifier(card)
    pictures = export_tflite.check_pictures(card.input_size)
    np.testing.assert_allclose(lite.predict_arrays(pictures), keras.predict_arrays(pictures), atol=2e-3)
    for classes in (keras.predict_arrays(pictures).argmax(1), np.arange(len(pictures)) % 3):  # predicted, any
        expected = GradCam(keras.model).heatmaps(pictures, classes)
        got = ClassActivationMap(lite).heatmaps(pictures, classes)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_a_fresh_copy_is_left_alone_and_a_replaced_h5_is_exported_again(exported, tmp_path, capsys):
    from helpers import build_colour_model

    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    before = (folder / "student.float16.tflite").stat().st_mtime_ns
    assert export_tflite.main(["--models", str(folder)]) == 0
    assert "student.float16.tflite is fresh" in capsys.readouterr().out
    assert (folder / "student.float16.tflite").stat().st_mtime_ns == before

    model = build_colour_model()  # a new student.h5, as training writes one: other weights
    model.get_layer(index=-1).set_weights([np.eye(3, dtype="float32")[::-1] * 8.0, np.zeros(3, dtype="float32")])
    model.save(folder / "student.h5")
    assert stale_serving_reason(read_card(folder / "student.json")) is not None  # served: the .h5, until exported
    assert export_tflite.main(["--models", str(folder)]) == 0
    card = read_card(folder / "student.json")
    assert stale_serving_reason(card) is None and card.serving["source_sha256"] == file_sha256(folder / "student.h5")
    assert "not measured by benchmarks/compact.py for this .h5 yet" in card.serving["why"]


# The service as the deployed app runs it: any import of TensorFlow, Keras or h5py fails, as where they are not
# installed (requirements.txt); the page, the API, both models and "Show why" all answer.
WITHOUT_TENSORFLOW = r"""
import importlib.abc, json, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "h5py", "tf_keras"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NotInstalled())
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/web-app", sys.argv[1] + "/tests"]
from helpers import coin_picture, coins_picture, encode, imported_web_app
from pathlib import Path

answers = {}
with imported_web_app(Path(sys.argv[2]), "deployed_app") as app:
    app.spotter.load(warm_up=True)
    client = app.server.test_client()
    answers["health"] = client.get("/healthz").get_json()
    answers["page"] = client.get("/").status_code
    photo = encode(coins_picture(["red", "blue"]))
    for model in ("student", "ensemble"):
        from io import BytesIO
        response = client.post("/api/classify", data={"image": (BytesIO(photo), "two.jpg"), "model": model,
                                                       "explain": "1", "currency": "EUR"})
        answer = response.get_json()
        answers[model] = {"status": response.status_code,
                          "coins": [r["prediction"]["class_id"] for r in answer["results"]],
                          "explained": [r["explanation"][:22] for r in answer["results"]],
                          "explanation_model": [r["explanation_model"] for r in answer["results"]],
                          "total": answer["total"]["formatted"]}
    import callbacks, base64
    content = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
    src, alt, hidden, status = callbacks.explain_coin(app.spotter, {"name": "two.jpg", "content": content, "coin": 2,
                                                                     "model": "ensemble"})
    answers["show_why"] = {"src": (src or "")[:22], "alt": alt, "hidden": hidden}
answers["tensorflow_imported"] = any(name.split(".")[0] in ("tensorflow", "keras") for name in sys.modules)
print(json.dumps(answers))
"""


def run_without_tensorflow(models) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TENSORFLOW, str(REPO_ROOT), str(models)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, "COINSPOTTER_RATE_PROVIDERS": "none", "COINSPOTTER_RATE_CACHE": "off"})


def test_without_tensorflow_the_page_the_api_both_models_and_show_why_answer(exported):
    completed = run_without_tensorflow(exported)
    assert completed.returncode == 0, completed.stderr[-3000:]
    answers = json.loads(completed.stdout.splitlines()[-1])
    assert answers["health"] == {"status": "ok", "models": {"student": True, "ensemble": True}}
    assert answers["page"] == 200
    for model, explained_by in (("student", "student"), ("ensemble", "member_a")):
        assert answers[model]["status"] == 200
        assert answers[model]["coins"] == [1, 209]  # the red coin, the blue one
        assert answers[model]["explained"] == ["data:image/png;base64,"] * 2
        assert answers[model]["explanation_model"] == [explained_by] * 2
        assert answers[model]["total"].startswith("€")
    assert answers["show_why"] == {"src": "data:image/png;base64,", "hidden": False,
                                   "alt": "Heat map over coin 2 of two.jpg: where the model saw 1/4 Dollar"}
    assert answers["tensorflow_imported"] is False


def test_without_tensorflow_a_stale_copy_makes_the_model_unavailable_saying_what_to_run(exported, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(exported, folder)
    card = json.loads((folder / "member_b.json").read_text())
    card["serving"]["source_sha256"] = "0" * 64  # as if member_b.h5 had been replaced since
    (folder / "member_b.json").write_text(json.dumps(card))
    script = (f"import sys; sys.argv[1:] = [{str(REPO_ROOT)!r}, {str(folder)!r}]\n"
              + WITHOUT_TENSORFLOW.split("answers = {}")[0]
              + "from coinspotter.service import CoinSpotter\n"
              "import os; os.environ['COINSPOTTER_MODELS_DIR'] = sys.argv[2]\n"
              "spotter = CoinSpotter().load(warm_up=False)\n"
              "print(json.dumps(spotter.model_status()))\n")
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT,
                               timeout=300, env={**os.environ, "COINSPOTTER_RATE_PROVIDERS": "none"})
    assert completed.returncode == 0, completed.stderr[-3000:]
    status = json.loads(completed.stdout.splitlines()[-1])
    assert status["student"]["available"] is True
    assert status["ensemble"]["available"] is False
    assert "needs TensorFlow, which is not installed here" in status["ensemble"]["reason"]
    assert "python training/export_tflite.py --models DIR" in status["ensemble"]["reason"]


# --- the bundled models ---------------------------------------------------------------------------------------

BUNDLED = REPO_ROOT / "web-app" / "models"


@pytest.mark.parametrize("name", [card.name for card in find_cards(BUNDLED).values() if not card.is_ensemble])
def test_each_bundled_model_serves_a_fresh_copy_that_answers_as_its_h5(name):
    """Fails when a served .h5 was replaced and its copy not made again: run training/export_tflite.py."""
    from coinspotter.explain import ClassActivationMap, GradCam

    card = find_cards(BUNDLED)[name]
    assert stale_serving_reason(card) is None, f"{name}: {stale_serving_reason(card)}: run `{EXPORT}`"
    assert card.serving.get("cam"), f"{name}: no class activation map kernel: run `{EXPORT}`"
    keras, lite = KerasClassifier(card), TFLiteClassifier(card)
    pictures = export_tflite.check_pictures(card.input_size)[:4]
    expected, got = keras.predict_arrays(pictures), lite.predict_arrays(pictures)
    assert export_tflite.swaps_beyond_near_ties(expected, got, 0.02) == 0  # the same first class, but for near ties
    np.testing.assert_allclose(got, expected, atol=0.03)  # float16 weights
    classes = expected.argmax(1)
    heat_h5, heat_lite = GradCam(keras.model).heatmaps(pictures, classes), ClassActivationMap(lite).heatmaps(
        pictures, classes)
    assert np.abs(heat_h5 - heat_lite).max() < 0.1
    assert ClassActivationMap(lite).layer_name == "out_relu"


def test_a_swap_of_nearly_tied_classes_is_not_a_disagreement_but_a_real_one_is():
    expected = np.array([[0.501, 0.499, 0.0], [0.9, 0.05, 0.05]])
    tied_swap = np.array([[0.499, 0.501, 0.0], [0.9, 0.05, 0.05]])
    real_swap = np.array([[0.501, 0.499, 0.0], [0.3, 0.6, 0.1]])
    assert export_tflite.swaps_beyond_near_ties(expected, tied_swap, 0.02) == 0
    assert export_tflite.swaps_beyond_near_ties(expected, real_swap, 0.02) == 1
