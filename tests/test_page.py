"""The page's callbacks with a real tiny model: what the browser gets back for a photo holding several coins."""
import base64
import io

import numpy as np
import pytest
from PIL import Image

from helpers import coin_picture, coins_picture, components, data_url, encode, imported_web_app, texts, write_model_dir


@pytest.fixture(scope="module")
def web_app(tmp_path_factory):
    with imported_web_app(write_model_dir(tmp_path_factory.mktemp("models")), "coinspotter_page_app") as module:
        yield module


def with_class(component, name: str) -> list[dict]:
    return [item for item in components(component) if name in str(item["props"].get("className", "")).split()]


def test_a_photo_with_three_coins_is_shown_once_numbered_with_a_card_per_coin(web_app):
    import callbacks
    import photo_views

    three = coins_picture(["red", "green", "blue"])  # 1 Cent, 1 Euro, 1/4 Dollar, in reading order
    classification = callbacks.classify_uploads(
        web_app.spotter, [data_url(encode(three)), data_url(encode(coin_picture("blue")))],
        ["three.jpg", "one.jpg"], "student")
    page, sentence = callbacks.render_page(web_app.spotter, classification, "EUR")

    overviews = [item for item in with_class(page, "photo-overview") if item["type"] == "Img"]
    assert [image["props"]["alt"] for image in overviews] == ["Photo three.jpg with 3 coins found, numbered 1-3"]
    (section,) = with_class(page, "multi-coin-photo")
    assert ["".join(texts(card)) for card in with_class(section, "coin-source")] == [
        "coin 1 of three.jpg", "coin 2 of three.jpg", "coin 3 of three.jpg"]
    assert [number["props"]["children"] for number in with_class(section, "coin-number")] == ["1", "2", "3"]
    shown = texts(page)
    assert [text for text in shown if text in ("1 Cent", "1 Euro", "1/4 Dollar")] == [
        "1 Cent", "1 Euro", "1/4 Dollar", "1/4 Dollar"]
    sources = ["".join(texts(card)) for card in with_class(page, "coin-source")]
    assert sources[3] == "one.jpg · coin 1"  # a single-coin photo keeps its usual card, outside the section
    assert not with_class(page, "coin-number")[3:] and "one.jpg" not in texts(section)
    # one grid holds them all: the overview's cell, its three coins' cards, the single coin's card
    (grid,) = with_class(page, "results-grid")
    assert len(with_class(grid, "result-cell")) == 5
    assert "4 coins found" in shown and len(with_class(page, "total-amount")) == 1
    (total,) = [item["props"]["children"] for item in with_class(page, "total-amount")]  # "€1.70"
    assert sentence == f"4 coins: 1 Cent, 1 Euro, 1/4 Dollar, 1/4 Dollar; total {total.lstrip('€')} EUR."

    # the overview: no larger than the photo, each coin circled in the mark colour where the localiser found it
    src = overviews[0]["props"]["src"]
    assert src.startswith("data:image/jpeg;base64,")
    view = np.asarray(Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))).convert("RGB"), dtype=int)
    assert view.shape[:2] == (200, 600)
    marked = (np.abs(view - np.array(photo_views.MARK)).max(axis=-1) < 40)  # the blue coin is far darker in green
    for box in [result["box"] for result in classification["results"][:3]]:
        x0, y0, x1, y1 = box
        assert marked[max(y0, 0):y1, max(x0, 0):x1].sum() > 200, box


def test_a_large_photo_gets_a_small_overview(web_app):
    import callbacks
    import photo_views

    big = coins_picture(["red", "blue"], side=900)  # 1800 px wide
    classification = callbacks.classify_uploads(web_app.spotter, [data_url(encode(big))], ["big.jpg"], "student")
    overview = classification["photos"][0]["overview"]
    width, height = Image.open(io.BytesIO(base64.b64decode(overview.partition(",")[2]))).size
    assert (width, height) == (photo_views.OVERVIEW_PX, photo_views.OVERVIEW_PX // 2)
    assert len(overview) < 200_000  # travels to the browser twice (store and page): kept small


def test_single_coin_photos_keep_their_look(web_app):
    import callbacks

    classification = callbacks.classify_uploads(
        web_app.spotter, [data_url(encode(coin_picture(colour))) for colour in ("red", "green")],
        ["red.jpg", "green.jpg"], "student")
    page = callbacks.render_results(web_app.spotter, classification, None)
    assert [photo["overview"] for photo in classification["photos"]] == [None, None]
    assert not with_class(page, "multi-coin-photo") and not with_class(page, "coin-number")
    assert ["".join(texts(item)) for item in with_class(page, "coin-source")] == [
        "red.jpg · coin 1", "green.jpg · coin 1"]
    assert [item["props"]["title"] for item in with_class(page, "file-name")] == ["red.jpg", "green.jpg"]


def test_a_value_too_small_for_a_penny_is_not_shown_as_zero(web_app):
    import callbacks

    classification = callbacks.classify_uploads(web_app.spotter, [data_url(encode(coin_picture("red")))],
                                                ["red.jpg"], "student")  # 1 Australian cent: £0.0049
    shown = texts(callbacks.render_results(web_app.spotter, classification, "GBP"))
    assert "≈ £0.0049" in shown and "£0.0049" in shown  # the coin's value and the total
    assert not [text for text in shown if "£0.00" in text and "£0.004" not in text]


def test_the_announcement_names_each_coin_and_the_total_and_what_failed():
    from coinspotter.announce import result_sentence

    def coin(name, currency, value, uncertain=False):
        prediction = {"name": name, "currency": currency, "face_value": value}
        return {"ok": True, "prediction": prediction, "uncertain": uncertain}

    euro, fifty = coin("1 Euro", "EUR", "1"), coin("50 Euro Cent", "EUR", "0.50", uncertain=True)
    quarter, failed = coin("1/4 Dollar", "USD", "0.25"), {"ok": False, "filename": "x.jpg", "error": "empty"}
    converted = {"total": {"currency": "EUR", "amount": "1.00", "formatted": "€1.00"},
                 "not_sure": {"coins": 1, "currency": "EUR", "could_add": "0.50", "formatted": "€0.50"}}
    # honest totals: the not-sure coin is said apart, never in the total
    assert result_sentence([euro, fifty], converted) == \
        "1 coin: 1 Euro; total 1.00 EUR; not sure, not in the total: 1 coin, maybe 50 Euro Cent, could add 0.50 EUR."
    assert result_sentence([euro, fifty]) == \
        "1 coin: 1 Euro; total 1 EUR; not sure, not in the total: 1 coin, maybe 50 Euro Cent, could add 0.50 EUR."
    assert result_sentence([fifty]) == "No coin is sure enough to be counted; total 0; not sure, not in the total: " \
                                       "1 coin, maybe 50 Euro Cent, could add 0.50 EUR."
    assert result_sentence([quarter, failed, euro]) == "2 coins: 1/4 Dollar, 1 Euro; total 0.25 USD and 1 EUR; " \
                                                       "1 file could not be used."
    assert result_sentence([failed, failed]) == "No coin could be identified in these files; 2 files could not be used."
    tiny = {"total": {"currency": "GBP", "amount": "0.00", "formatted": "£0.0049"}}
    assert result_sentence([coin("1 Cent", "AUD", "0.01")], tiny) == "1 coin: 1 Cent; total £0.0049."


def test_each_coin_card_has_a_show_why_toggle_that_explains_that_coin_on_request(web_app):
    import callbacks
    import layout

    three = encode(coins_picture(["red", "green", "blue"]))
    classification = callbacks.classify_uploads(web_app.spotter, [data_url(three)], ["three.jpg"], "student")
    assert all("explanation" not in result for result in classification["results"])  # nothing computed unasked
    page = callbacks.render_results(web_app.spotter, classification, None)
    toggles = [item["props"] for item in with_class(page, "why-toggle")]
    assert [toggle["children"] for toggle in toggles] == ["Show why"] * 3
    assert [toggle["aria-label"] for toggle in toggles] == [f"Show why: coin {n} of three.jpg" for n in (1, 2, 3)]
    panels = {layout.dom_id(item["props"]["id"]): item["props"] for item in with_class(page, "why-panel")}
    assert all(toggle["aria-expanded"] == "false" and panels[toggle["aria-controls"]]["hidden"] for toggle in toggles)

    # what the browser sends when coin 2's toggle is first opened (assets/explain.js): its photo, number, model
    src, alt, hidden, status = callbacks.explain_coin(
        web_app.spotter, {"name": "three.jpg", "content": data_url(three), "coin": 2, "model": "student"})
    assert src.startswith("data:image/png;base64,") and not hidden
    assert Image.open(io.BytesIO(base64.b64decode(src.partition(",")[2]))).size == (224, 224)
    assert alt == "Heat map over coin 2 of three.jpg: where the model saw 1 Euro" and "say 1 Euro" in status
    first = callbacks.explain_coin(
        web_app.spotter, {"name": "three.jpg", "content": data_url(three), "coin": 1, "model": "student"})[0]
    assert first != src  # another coin, another picture

    _, _, _, ensemble_status = callbacks.explain_coin(
        web_app.spotter, {"name": "three.jpg", "content": data_url(three), "coin": 3, "model": "ensemble"})
    assert "Worked out on Tiny member_a, the first of the ensemble's models." in ensemble_status


@pytest.mark.parametrize("request_data, message", [
    ({}, "cannot be made any more"),  # the photo was gone from the browser
    ("nonsense", "cannot be made any more"),
    ({"name": "a.jpg", "content": "data:image/jpeg;base64,AAAA", "coin": 1, "model": "student"}, "cannot be made"),
    ({"name": "a.jpg", "content": "x", "coin": 1, "model": "giant"}, "unknown model 'giant'"),
])
def test_a_show_why_request_that_cannot_be_served_says_so_in_the_panel(web_app, request_data, message):
    import callbacks

    src, _, hidden, status = callbacks.explain_coin(web_app.spotter, request_data)
    assert src is None and hidden and message in status


def test_coins_from_reclassifies_within_the_chosen_currencies_and_says_so(web_app):
    import callbacks
    import layout

    options = layout.coin_currency_options(web_app.spotter.catalog)
    assert len(options) == 32 and {"label": "EUR — Euro", "value": "EUR"} in options
    photos = [data_url(encode(coin_picture(colour))) for colour in ("red", "blue")]  # 1 Cent (AUD), 1/4 Dollar
    batch = {"names": ["red.jpg", "blue.jpg"], "contents": photos}

    plain = callbacks.classify_batch(web_app.spotter, batch, "student", [])  # the empty selector: any currency
    assert plain["currencies"] is None
    assert [r["prediction"]["name"] for r in plain["results"]] == ["1 Cent", "1/4 Dollar"]
    assert "Coins from" not in " ".join(texts(callbacks.render_results(web_app.spotter, plain, None)))

    hinted = callbacks.classify_batch(web_app.spotter, batch, "student", ["EUR"])
    assert hinted["currencies"] == ["EUR"]
    assert [r["prediction"]["name"] for r in hinted["results"]] == ["1 Euro", "1 Euro"]
    page, sentence = callbacks.render_page(web_app.spotter, hinted, "EUR")
    # unlike euros to the model: not sure, so not in the total
    assert sentence.startswith("No coin is sure enough to be counted; total 0; not sure, not in the total: 2 coins, "
                               "maybe 1 Euro, maybe 1 Euro, could add 2.00 EUR")
    shown = texts(page)
    assert "Coins from: EUR only (other currencies not considered)" in shown
    assert any(text.startswith("Of the chosen currencies it looks most like this") for text in shown)
    # "Show why" explains the class the card shows, under the same hint
    stores = [item["props"]["data"] for item in components(page) if item["props"].get("id", {}) == {
        "type": "why-coin", "index": 1}]
    assert stores == [{"photo": 1, "coin": 1, "model": "student", "currencies": ["EUR"]}]
    _, alt, hidden, _ = callbacks.explain_coin(web_app.spotter, {"name": "blue.jpg", "content": photos[1], "coin": 1,
                                                                 "model": "student", "currencies": ["EUR"]})
    assert not hidden and alt.endswith("where the model saw 1 Euro")


@pytest.mark.parametrize("currencies, message", [
    (["XAU"], "no coin of XAU is in the catalog"), ({"EUR": 1}, "currency codes separated by commas"),
    (["GBP"], "knows no coin of GBP"),
])
def test_a_coins_from_value_the_selector_never_sends_is_an_error_message(web_app, currencies, message):
    import callbacks

    batch = {"names": ["red.jpg"], "contents": [data_url(encode(coin_picture("red")))]}
    assert message in callbacks.classify_batch(web_app.spotter, batch, "student", currencies)["error"]


def test_a_photo_the_browser_held_back_as_too_large_gets_its_message_beside_the_others(web_app):
    """assets/upload.js sends a photo over COINSPOTTER_MAX_FILE_BYTES as its size alone (content null): its card
    says the server's sentence for that size, the other photos are classified, each keeping its place."""
    import callbacks

    from coinspotter.config import MB

    limits = callbacks.upload_limits(web_app.spotter.settings.limits)
    assert limits["max_bytes_per_file"] == web_app.spotter.settings.limits.max_bytes_per_file == 15 * MB
    batch = {"names": ["big.jpg", "blue.jpg", "odd.jpg"], "sizes": [30 * MB, 4000, 20],
             "contents": [None, data_url(encode(coin_picture("blue"))), None]}  # odd.jpg: a client's word, not big
    classification = callbacks.classify_batch(web_app.spotter, batch, "student")
    assert [(r["filename"], r["ok"], r.get("error")) for r in classification["results"]] == [
        ("big.jpg", False, "The file is 30 MB; the limit is 15 MB per photo."),
        ("blue.jpg", True, None),
        ("odd.jpg", False, "This file was not sent; please choose it again.")]
    assert [r["photo"] for r in classification["results"]] == [0, 1, 2]  # "Show why" finds blue.jpg's photo
    assert [photo["filename"] for photo in classification["photos"]] == ["big.jpg", "blue.jpg", "odd.jpg"]
    only_big = callbacks.classify_batch(web_app.spotter, {"names": ["big.jpg"], "sizes": [30 * MB],
                                                          "contents": [None]}, "student")
    assert [r["error"] for r in only_big["results"]] == ["The file is 30 MB; the limit is 15 MB per photo."]


def test_the_upload_hint_names_the_formats_the_error_names_and_the_per_photo_limit(web_app):
    from coinspotter.imageio import NOT_AN_IMAGE

    hint = [text for text in texts(web_app.app.layout) if "several coins per photo" in text]
    assert hint == ["JPEG, PNG, WebP, GIF or BMP, up to 15 MB each; several coins per photo are fine."]
    assert "JPEG, PNG, WebP, GIF or BMP" in NOT_AN_IMAGE


@pytest.mark.parametrize("finder_doubts", [False, True])
def test_a_not_sure_card_says_whose_doubt_it_is(web_app, finder_doubts):
    import layout

    prediction = {"class_id": 60, "name": "1 Euro", "country": "Spain", "currency": "EUR", "face_value": "1",
                  "probability": 0.93 if finder_doubts else 0.41}
    result = {"filename": "heap.jpg", "ok": True, "coin": 2, "prediction": prediction, "top": [prediction],
              "uncertain": True, **({"maybe_not_a_coin": True} if finder_doubts else {})}
    shown = " ".join(texts(layout.coin_card(result, "")))
    assert "Maybe 1 Euro" in shown
    assert ("coin finder is not sure this is a coin" in shown) is finder_doubts
    assert ("The model is only 41% sure" in shown) is not finder_doubts
