"""The JSON API through Flask's test client, with real image bytes and a real (tiny) Keras model.

Exchange rates come from the bundled offline snapshot (COINSPOTTER_RATE_PROVIDERS=none), or, where a test
puts its own RateService into the app, from stand-in providers on 127.0.0.1 (rate_standins.py).
"""
import base64
import importlib.util
import io
import json
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pytest
from PIL import Image
from rate_standins import ANSWER_PATHS, ANSWER_SHAPES, Reply, StandIn, refused_url

from coinspotter.rates import RateService, load_snapshot
from helpers import EXPECTED_CLASS, coin_picture, coins_picture, encode, write_model_dir

RED = ("red.jpg", encode(coin_picture("red")))  # 1 Cent, AUD 0.01
GREEN = ("green.jpg", encode(coin_picture("green")))  # 1 Euro, EUR 1
BLUE = ("blue.jpg", encode(coin_picture("blue")))  # 1/4 Dollar, USD 0.25
TODAY = datetime.now(timezone.utc).date().isoformat()
MONTH_AGO = (date.fromisoformat(TODAY) - timedelta(days=30)).isoformat()
LIVE_RATES = {"EUR": Decimal("0.8"), "AUD": Decimal("1.6"), "JPY": Decimal("160")}  # per USD
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def web_app(tmp_path_factory):
    """Import web-app/app.py as the server would, pointed at a folder of tiny models."""
    models = write_model_dir(tmp_path_factory.mktemp("models"))
    patch = pytest.MonkeyPatch()
    patch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    patch.setenv("COINSPOTTER_MAX_FILES", "5")
    patch.setenv("COINSPOTTER_RATE_PROVIDERS", "none")  # the offline snapshot
    patch.setenv("COINSPOTTER_RATE_CACHE", "off")
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
        ({"currency": "EURO"}, [("a.jpg", b"x")], "'EURO' is not a currency code"),
        ({"currency": "XAU"}, [("a.jpg", b"x")],
         "XAU is not a currency values can be shown in; choose one of USD, EUR"),
        ({"explain": "yes"}, [("a.jpg", b"x")], "explain must be 1"),
        ({"explain": "2"}, [("a.jpg", b"x")], "explain must be 1"),
        ({"currencies": "XAU"}, [("a.jpg", b"x")], "currencies: no coin of XAU is in the catalog; choose among AUD"),
        ({"currencies": "EUR,EURO"}, [("a.jpg", b"x")], "currencies: 'EURO' is not a currency code"),
    ],
)
def test_bad_requests_get_a_json_4xx(client, fields, files, message):
    response = post(client, files, **fields)
    assert response.status_code == 400
    assert response.is_json and message in response.get_json()["error"]


def png(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2])))
    assert image.format == "PNG"
    return np.asarray(image.convert("RGB"), dtype=int)


@pytest.mark.parametrize("model, explained_by", [("student", "student"), ("ensemble", "member_a")])
def test_explain_adds_a_heat_map_png_to_each_coin(client, model, explained_by):
    three = ("three.jpg", encode(coins_picture(["red", "green", "blue"])))
    answer = post(client, [three, GREEN, ("notes.jpg", b"text")], explain=1, model=model).get_json()
    coins = [result for result in answer["results"] if result["ok"]]
    assert len(coins) == 4 and all(coin["explanation_model"] == explained_by for coin in coins)
    pictures = [png(coin["explanation"]) for coin in coins]
    assert all(picture.shape == (224, 224, 3) for picture in pictures)
    assert len({coin["explanation"] for coin in coins[:3]}) == 3  # three coins, three pictures
    assert "explanation" not in answer["results"][-1]  # the failed file has no coin to explain


def test_no_heat_map_unless_asked(client):
    for fields in ({}, {"explain": "0"}, {"explain": ""}):
        (result,) = post(client, [BLUE], **fields).get_json()["results"]
        assert result["ok"] and "explanation" not in result and "explanation_model" not in result


def test_coins_from_keeps_only_the_chosen_currencies(client):
    answer = post(client, [RED, BLUE], currencies=" eur,USD ", top=5).get_json()
    assert answer["currencies"] == ["EUR", "USD"]
    red, blue = answer["results"]
    assert red["prediction"]["currency"] in ("EUR", "USD") and blue["prediction"]["class_id"] == EXPECTED_CLASS["blue"]
    assert [{entry["currency"] for entry in result["top"]} for result in (red, blue)] == [{"EUR", "USD"}] * 2
    assert sum(entry["probability"] for entry in red["top"]) == pytest.approx(1, abs=1e-3)
    assert red["currencies_probability"] < 0.01 and blue["currencies_probability"] > 0.99
    assert "AUD" not in [entry["currency"] for entry in answer["summary"]["by_currency"]]
    # the same as two fields
    data = {"currencies": ["EUR", "USD"], "image": [(io.BytesIO(RED[1]), RED[0])]}
    again = client.post("/api/classify", data=data, content_type="multipart/form-data").get_json()
    assert again["currencies"] == ["EUR", "USD"] and again["results"][0]["prediction"] == red["prediction"]


@pytest.mark.parametrize("fields", [{}, {"currencies": ""}, {"currencies": " , "}])
def test_no_or_an_empty_coins_from_is_no_hint(client, fields):
    answer = post(client, [RED], **fields).get_json()
    assert answer["currencies"] is None
    assert answer["results"][0]["prediction"]["class_id"] == EXPECTED_CLASS["red"]
    assert "currencies_probability" not in answer["results"][0]


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


def data_url(content: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(content).decode()


def rendered(component) -> str:
    """A Dash component tree as JSON text, to search for what the page shows."""
    return json.dumps(
        component.to_plotly_json(), ensure_ascii=False,
        default=lambda o: o.to_plotly_json() if hasattr(o, "to_plotly_json") else str(o),
    )


def test_page_callback_renders_cards_and_errors(web_app):
    """The Dash callbacks' work: a coin card with its chart for the good file, a message for the bad one."""
    import callbacks

    bad = data_url(b"<script>alert(1)</script>")
    classification = callbacks.classify_uploads(web_app.spotter, [data_url(BLUE[1]), bad], ["blue.jpg", "<b>x</b>.jpg"],
                                                "student")
    tree = rendered(callbacks.render_results(web_app.spotter, classification, None))
    assert "1/4 Dollar" in tree and "probability-chart" in tree and "data:image/jpeg;base64" in tree
    assert "not an image" in tree and "<b>x</b>.jpg" in tree  # shown as text: Dash escapes strings
    assert "Total" not in tree  # no currency, no conversion


# --- values in one currency ------------------------------------------------------------------------------


def rounded(amount: Decimal) -> str:
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def live_rates(*providers, **settings) -> RateService:
    """A RateService asking stand-ins in the order given, as (provider name, StandIn, rates per USD, date)."""
    env = {"COINSPOTTER_RATE_PROVIDERS": ",".join(name for name, *_ in providers), "COINSPOTTER_RATE_CACHE": "off",
           "COINSPOTTER_RATE_TIMEOUT": "0.5", **settings}
    for name, stand_in, rates, day in providers:
        stand_in.route(f"/{name}{ANSWER_PATHS[name]}", Reply(body=ANSWER_SHAPES[name](rates, day=day)))
        env[f"COINSPOTTER_RATE_URL_{name.upper().replace('-', '_')}"] = f"{stand_in.url}/{name}"
    return RateService.from_env(env)


def test_classify_in_euros_with_the_offline_snapshot(client):
    snapshot = load_snapshot()
    eur_per_aud = snapshot.rates["EUR"] / snapshot.rates["AUD"]
    red_in_eur, blue_in_eur = Decimal("0.01") * eur_per_aud, Decimal("0.25") * snapshot.rates["EUR"]

    response = post(client, [RED, BLUE], currency="eur")

    assert response.status_code == 200
    answer = response.get_json()
    red, blue = answer["results"]
    assert red["converted"] == {"currency": "EUR", "amount": rounded(red_in_eur),
                                "formatted": f"€{rounded(red_in_eur)}"}
    assert blue["converted"]["amount"] == rounded(blue_in_eur) == "0.24"
    assert answer["total"] == {
        "currency": "EUR",
        "amount": rounded(red_in_eur + blue_in_eur),
        "formatted": f"€{rounded(red_in_eur + blue_in_eur)}",
        "coins": 2,
        "rates": {
            "provider": "snapshot",
            "source": snapshot.source,
            "date": snapshot.date.isoformat(),
            "offline": True,
            "stale": True,
            "label": f"offline rates as of {snapshot.date.isoformat()}",
            "attribution": None,
        },
    }
    assert {e["currency"]: e["amount"] for e in answer["summary"]["by_currency"]} == {"AUD": "0.01", "USD": "0.25"}
    assert "converted" not in post(client, [RED]).get_json()["results"][0]  # no currency, no conversion


def test_a_value_too_small_for_a_penny_is_not_shown_as_zero(client):
    snapshot = load_snapshot()
    red_in_gbp = Decimal("0.01") * snapshot.rates["GBP"] / snapshot.rates["AUD"]  # 1 Australian cent: £0.0049
    assert rounded(red_in_gbp) == "0.00"

    answer = post(client, [RED], currency="GBP").get_json()

    shown = f"£{red_in_gbp.quantize(Decimal('0.0001'), rounding=ROUND_HALF_UP)}"
    assert shown == "£0.0049"
    assert answer["results"][0]["converted"] == {"currency": "GBP", "amount": "0.00", "formatted": shown}
    assert (answer["total"]["amount"], answer["total"]["formatted"]) == ("0.00", shown)


def test_classify_with_live_rates_names_the_provider_and_its_date(web_app, client, monkeypatch):
    with StandIn() as stand_in:
        monkeypatch.setattr(web_app.spotter, "rates", live_rates(("frankfurter-v2", stand_in, LIVE_RATES, TODAY)))
        answer = post(client, [RED, RED, BLUE], currency="EUR").get_json()

    assert [result["converted"]["amount"] for result in answer["results"]] == ["0.01", "0.01", "0.20"]  # 0.005 -> 0.01
    assert answer["total"]["amount"] == "0.21"  # 0.005 + 0.005 + 0.20 rounded once, not the 0.22 of rounded values
    assert answer["total"]["rates"] == {
        "provider": "frankfurter-v2", "source": "Frankfurter (central bank reference rates)", "date": TODAY,
        "offline": False, "stale": False, "attribution": None,
        "label": f"rates from Frankfurter (central bank reference rates), {TODAY}",
    }


def test_a_provider_going_down_mid_run_falls_through_to_the_next(web_app, client, monkeypatch):
    with StandIn() as first, StandIn() as second:
        rates = live_rates(("frankfurter-v2", first, LIVE_RATES, TODAY),
                           ("currency-api", second, {"EUR": Decimal("0.9"), "AUD": Decimal("1.8")}, TODAY),
                           COINSPOTTER_RATE_TTL="0")  # no cached table: every request asks the providers again
        monkeypatch.setattr(web_app.spotter, "rates", rates)
        before = post(client, [BLUE], currency="EUR").get_json()
        first.stop()
        after = post(client, [BLUE], currency="EUR").get_json()

    assert (before["total"]["rates"]["provider"], before["total"]["amount"]) == ("frankfurter-v2", "0.20")
    assert "rates_error" not in after
    assert (after["total"]["rates"]["provider"], after["total"]["amount"]) == ("currency-api", "0.23")  # 0.225 half up
    assert after["total"]["rates"]["label"] == f"rates from fawazahmed0 currency-api, {TODAY}"
    assert after["results"][0]["converted"]["formatted"] == "€0.23"


def test_a_currency_no_source_can_price_keeps_the_classifications_and_says_why(web_app, client, monkeypatch, tmp_path):
    snapshot = tmp_path / "snapshot.json"  # a snapshot without AUD, and the only provider down
    snapshot.write_text(json.dumps({"source": "test", "date": "2024-12-31", "base": "USD",
                                    "rates": {"USD": "1", "EUR": "0.9626"}}))
    monkeypatch.setattr(web_app.spotter, "rates", RateService.from_env({
        "COINSPOTTER_RATE_PROVIDERS": "frankfurter-v2", "COINSPOTTER_RATE_URL_FRANKFURTER_V2": refused_url(),
        "COINSPOTTER_RATE_SNAPSHOT": str(snapshot), "COINSPOTTER_RATE_CACHE": "off",
    }))

    response = post(client, [RED, BLUE], currency="EUR")

    assert response.status_code == 200
    answer = response.get_json()
    assert [result["prediction"]["class_id"] for result in answer["results"]] == [EXPECTED_CLASS["red"],
                                                                                   EXPECTED_CLASS["blue"]]
    assert answer["rates_error"] == ("Values cannot be shown in EUR right now. No exchange rate for AUD: none of the "
                                     "rate sources lists it (checked: snapshot; not reachable now: frankfurter-v2).")
    assert "total" not in answer and not any("converted" in result for result in answer["results"])
    response = client.get("/api/rates?symbols=AUD")
    assert response.status_code == 503 and response.get_json()["error"].startswith("No exchange rate for AUD")


def test_rates_endpoint_answers_the_rates_in_use_and_where_they_come_from(client):
    snapshot = load_snapshot()

    answer = client.get("/api/rates?base=USD&symbols=EUR,JPY").get_json()

    assert answer == {
        "base": "USD",
        "rates": {"EUR": str(snapshot.rates["EUR"]), "JPY": str(snapshot.rates["JPY"])},
        "provider": "snapshot", "source": snapshot.source, "date": snapshot.date.isoformat(),
        "offline": True, "stale": True, "label": f"offline rates as of {snapshot.date.isoformat()}",
        "attribution": None,
    }
    cross = client.get("/api/rates?base=eur&symbols=jpy,%20JPY").get_json()
    assert cross["base"] == "EUR" and list(cross["rates"]) == ["JPY"]
    assert Decimal(cross["rates"]["JPY"]) == (snapshot.rates["JPY"] / snapshot.rates["EUR"]).quantize(Decimal("1e-9"))
    everything = client.get("/api/rates").get_json()
    assert everything["base"] == "USD" and len(everything["rates"]) == 37 and everything["rates"]["USD"] == "1"


@pytest.mark.parametrize("query, message", [
    ("base=XAU", "XAU is not a currency values can be shown in"),
    ("symbols=EUR,EURO", "'EURO' is not a currency code"),
    ("base=12", "'12' is not a currency code"),
])
def test_rates_endpoint_refuses_bad_codes_with_a_json_400(client, query, message):
    response = client.get(f"/api/rates?{query}")
    assert response.status_code == 400 and response.is_json and message in response.get_json()["error"]
    assert client.post("/api/rates").status_code == 405


def test_page_renders_converted_values_and_the_offline_note_and_changes_currency_without_the_model(
        web_app, monkeypatch):
    import callbacks

    snapshot = load_snapshot()
    classification = callbacks.classify_uploads(web_app.spotter, [data_url(GREEN[1]), data_url(BLUE[1])],
                                                ["green.jpg", "blue.jpg"], "student")
    json.dumps(classification)  # kept in a dcc.Store: plain JSON only

    in_euros = rendered(callbacks.render_results(web_app.spotter, classification, "EUR"))

    blue_in_eur = Decimal("0.25") * snapshot.rates["EUR"]
    assert f"≈ €{rounded(blue_in_eur)}" in in_euros
    assert "≈ €1.00" not in in_euros  # a euro coin needs no conversion on its card
    assert f"€{rounded(1 + blue_in_eur)}" in in_euros and "total-amount" in in_euros
    assert (f"Using offline rates as of {snapshot.date.isoformat()}: no live exchange rates are available"
            in in_euros) and "rates-note" in in_euros

    def no_model(*args, **kwargs):
        raise AssertionError("a change of currency must not classify again")

    monkeypatch.setattr(web_app.spotter, "classify_per_upload", no_model)
    in_yen = rendered(callbacks.render_results(web_app.spotter, classification, "JPY"))
    yen_per_eur = snapshot.rates["JPY"] / snapshot.rates["EUR"]
    assert f"≈ ¥{yen_per_eur.quantize(Decimal(1), rounding=ROUND_HALF_UP)}" in in_yen and "€" not in in_yen


@pytest.mark.parametrize("provider, day, shown, absent", [
    ("open-er-api", TODAY,
     [f"Using rates from ExchangeRate-API, {TODAY}.", "Rates By Exchange Rate API", "https://www.exchangerate-api.com"],
     ["rates-note"]),
    ("frankfurter-v1", MONTH_AGO,
     [f"Using rates from Frankfurter (ECB reference rates), {MONTH_AGO} (out of date): no newer rates", "rates-note"],
     ["exchangerate-api"]),
])
def test_page_credits_exchangerate_api_and_flags_out_of_date_rates(web_app, monkeypatch, provider, day, shown, absent):
    import callbacks

    classification = callbacks.classify_uploads(web_app.spotter, [data_url(BLUE[1])], ["blue.jpg"], "student")
    with StandIn() as stand_in:
        monkeypatch.setattr(web_app.spotter, "rates", live_rates((provider, stand_in, LIVE_RATES, day)))
        tree = rendered(callbacks.render_results(web_app.spotter, classification, "EUR"))

    assert "€0.20" in tree
    assert all(text in tree for text in shown), tree
    assert not any(text in tree for text in absent)


def test_page_shows_why_there_is_no_total(web_app):
    import callbacks

    classification = callbacks.classify_uploads(web_app.spotter, [data_url(BLUE[1])], ["blue.jpg"], "student")
    tree = rendered(callbacks.render_results(web_app.spotter, classification, "XAU"))  # not offered by the selector
    assert "XAU is not a currency values can be shown in" in tree and "1/4 Dollar" in tree


def test_a_hanging_provider_holds_the_page_only_for_the_rate_budget(web_app, monkeypatch):
    import callbacks

    classification = callbacks.classify_uploads(web_app.spotter, [data_url(BLUE[1])], ["blue.jpg"], "student")
    with StandIn() as stand_in:
        stand_in.route("/frankfurter-v2/rates", Reply(body=[], delay=3.0))  # answers long after the budget
        monkeypatch.setattr(web_app.spotter, "rates", RateService.from_env({
            "COINSPOTTER_RATE_PROVIDERS": "frankfurter-v2",
            "COINSPOTTER_RATE_URL_FRANKFURTER_V2": f"{stand_in.url}/frankfurter-v2",
            "COINSPOTTER_RATE_TIMEOUT": "5", "COINSPOTTER_RATE_BUDGET": "0.5", "COINSPOTTER_RATE_CACHE": "off",
        }))
        started = time.monotonic()
        tree = rendered(callbacks.render_results(web_app.spotter, classification, "EUR"))
        elapsed = time.monotonic() - started

    assert elapsed < 1.5, elapsed
    assert "Using offline rates as of" in tree and "total-amount" in tree


def test_a_not_sure_coin_is_never_in_the_total(client):
    """Honest totals: with the "Coins from: EUR" hint the red coin (a cent of AUD to the model) is not sure; it is
    listed apart with what it could add, and the total is the green coin's alone (and says which coins it counts)."""
    files = [("green.jpg", encode(coin_picture("green"))), ("red.jpg", encode(coin_picture("red")))]
    answer = post(client, files, currency="EUR", currencies="EUR").get_json()
    green, red = answer["results"]
    assert green["uncertain"] is False and red["uncertain"] is True
    summary = answer["summary"]
    assert summary["coins"] == 1 and summary["in_total"] == [{"filename": "green.jpg", "coin": 1}]
    assert summary["by_currency"] == [{"currency": "EUR", "amount": "1", "coins": 1}]
    assert summary["not_sure"] == {"coins": 1, "which": [{"filename": "red.jpg", "coin": 1}],
                                   "by_currency": [{"currency": "EUR", "amount": red["prediction"]["face_value"],
                                                    "coins": 1}]}
    assert answer["total"]["amount"] == "1.00" and answer["total"]["coins"] == 1
    assert answer["not_sure"]["coins"] == 1 and answer["not_sure"]["currency"] == "EUR"
    assert answer["not_sure"]["could_add"] == red["converted"]["amount"]


def test_api_boxes_lie_inside_the_photo(client):
    # a coin running off the left edge: its square crop box reaches past it, the API's box does not
    image = Image.new("RGB", (300, 240), (250, 250, 250))
    from PIL import ImageDraw
    ImageDraw.Draw(image).ellipse((-30, 40, 130, 200), fill=(220, 30, 30), outline=(60, 60, 60), width=3)
    answer = post(client, [("edge.jpg", encode(image))]).get_json()
    boxes = [result["box"] for result in answer["results"] if result["ok"]]
    assert boxes, answer
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 240
