"""The JSON API through Flask's test client, with real image bytes and a real (tiny) Keras model."""
import importlib.util
import io
import json
import sys

import pytest

from helpers import EXPECTED_CLASS, coin_picture, encode, write_model_dir


@pytest.fixture(scope="module")
def web_app(tmp_path_factory):
    """Import web-app/app.py as the server would, pointed at a folder of tiny models."""
    models = write_model_dir(tmp_path_factory.mktemp("models"))
    patch = pytest.MonkeyPatch()
    patch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    patch.setenv("COINSPOTTER_MAX_FILES", "5")
    from coinspotter.config import REPO_ROOT

    spec = importlib.util.spec_from_file_location("coinspotter_web_app", REPO_ROOT / "web-app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    patch.undo()
    sys.modules.pop("coinspotter_web_app", None)


@pytest.fixture()
def client(web_app):
    return web_app.server.test_client()


def post(client, files, **fields):
    data = {key: str(value) for key, value in fields.items()}
    data["image"] = [(io.BytesIO(content), name) for name, content in files]
    return client.post("/api/classify", data=data, content_type="multipart/form-data")


def test_healthz_lists_the_loaded_models(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "models": {"student": True, "ensemble": True}}


@pytest.mark.parametrize("model", ["student", "ensemble"])
def test_classify_several_files_in_one_request(client, model):
    files = [("red.jpg", encode(coin_picture("red"))), ("blue.png", encode(coin_picture("blue"), "PNG"))]
    response = post(client, files, model=model, top=2)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["model"] == model
    assert [r["filename"] for r in answer["results"]] == ["red.jpg", "blue.png"]
    red, blue = answer["results"]
    assert red["ok"] and red["prediction"]["class_id"] == EXPECTED_CLASS["red"]
    assert red["prediction"] == {**red["top"][0]}
    assert red["prediction"]["name"] == "1 Cent" and red["prediction"]["face_value"] == "0.01"
    assert blue["prediction"]["class_id"] == EXPECTED_CLASS["blue"] and blue["prediction"]["currency"] == "USD"
    assert len(red["top"]) == 2 and red["top"][0]["probability"] >= red["top"][1]["probability"]
    assert red["uncertain"] is False
    assert answer["summary"]["coins"] == 2
    assert {e["currency"]: e["amount"] for e in answer["summary"]["by_currency"]} == {"AUD": "0.01", "USD": "0.25"}


def test_a_bad_file_fails_alone(client):
    good = encode(coin_picture("green"))
    files = [
        ("empty.jpg", b""),
        ("notes.jpg", b"just some text"),
        ("cut.jpg", encode(coin_picture("red", (400, 400)), quality=95)[:3000]),
        ("good.jpg", good),
    ]
    answer = post(client, files).get_json()
    by_name = {r["filename"]: r for r in answer["results"]}
    assert by_name["empty.jpg"] == {"filename": "empty.jpg", "ok": False, "error": "The file is empty."}
    assert not by_name["notes.jpg"]["ok"] and "not an image" in by_name["notes.jpg"]["error"]
    assert not by_name["cut.jpg"]["ok"] and "damaged" in by_name["cut.jpg"]["error"]
    assert by_name["good.jpg"]["ok"] and by_name["good.jpg"]["prediction"]["class_id"] == EXPECTED_CLASS["green"]
    assert answer["summary"]["files_failed"] == 3
    assert client.get("/healthz").status_code == 200  # still serving


@pytest.mark.parametrize(
    "fields,files,message",
    [
        ({"model": "giant"}, [("a.jpg", b"x")], "unknown model"),
        ({"top": "many"}, [("a.jpg", b"x")], "whole number"),
        ({"top": 0}, [("a.jpg", b"x")], "between 1 and"),
        ({}, [], "no image was sent"),
        ({}, [(f"{i}.jpg", b"x") for i in range(6)], "limit is 5"),
    ],
)
def test_bad_requests_get_a_json_4xx(client, fields, files, message):
    response = post(client, files, **fields)
    assert response.status_code == 400
    assert response.is_json and message in response.get_json()["error"]


def test_wrong_method_and_unknown_api_path_answer_json(client):
    response = client.get("/api/classify")
    assert response.status_code == 405 and response.is_json
    response = client.get("/api/nothing")
    assert response.status_code == 404 and response.is_json


def test_request_over_the_size_limit_is_a_json_413(web_app, client):
    limit = web_app.server.config["MAX_CONTENT_LENGTH"]
    web_app.server.config["MAX_CONTENT_LENGTH"] = 1000
    try:
        response = post(client, [("big.jpg", b"0" * 5000)])
    finally:
        web_app.server.config["MAX_CONTENT_LENGTH"] = limit
    assert response.status_code == 413 and "too large" in response.get_json()["error"]


def test_page_callback_renders_cards_and_errors(web_app):
    """The Dash callback's renderer: a coin card with its chart for the good file, a message for the bad one."""
    import base64

    import callbacks

    good = "data:image/jpeg;base64," + base64.b64encode(encode(coin_picture("blue"))).decode()
    bad = "data:image/jpeg;base64," + base64.b64encode(b"<script>alert(1)</script>").decode()
    tree = json.dumps(
        callbacks.render_results(web_app.spotter, [good, bad], ["blue.jpg", "<b>x</b>.jpg"], "student").to_plotly_json(),
        default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o),
    )
    assert "1/4 Dollar" in tree and "probability-chart" in tree and "data:image/jpeg;base64" in tree
    assert "not an image" in tree and "<b>x</b>.jpg" in tree  # shown as text: Dash escapes strings
