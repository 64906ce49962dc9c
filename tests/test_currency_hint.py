""""Coins from": the renormalisation maths, the parsing of the hint, and the service with a real tiny model."""
from dataclasses import replace

import numpy as np
import pytest

from coinspotter import currency_hint
from coinspotter.catalog import load_catalog
from coinspotter.service import RequestError, coin_currencies
from helpers import EXPECTED_CLASS, TINY_CLASS_IDS, coin_picture, encode, write_model_dir


# --- the maths ------------------------------------------------------------------------------------------------

def test_restricted_rows_sum_to_one_keep_the_order_and_ratios_and_say_their_mass():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(7), size=50).astype(np.float32)
    mask = np.array([True, False, True, True, False, False, True])
    restricted, mass = currency_hint.restrict(probabilities, mask)

    assert np.allclose(restricted.sum(axis=1), 1.0)
    assert (restricted[:, ~mask] == 0).all()
    assert np.allclose(mass, probabilities[:, mask].sum(axis=1))
    assert np.allclose(restricted[:, mask], probabilities[:, mask] / mass[:, None])  # p * mask / sum(p * mask)
    # the kept classes rank as before
    assert (np.argsort(-restricted[:, mask], axis=1) == np.argsort(-probabilities[:, mask], axis=1)).all()


def test_a_mask_per_row_restricts_each_row_to_its_own_classes():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.7, 0.2, 0.1]])
    masks = np.array([[False, True, True], [True, False, False]])
    restricted, mass = currency_hint.restrict(probabilities, masks)
    assert np.allclose(restricted, [[0, 2 / 3, 1 / 3], [1, 0, 0]])
    assert np.allclose(mass, [0.3, 0.7])


@pytest.mark.parametrize("row", [
    [1.0, 0.0, 0.0, 0.0],  # all the mass elsewhere (a float32 softmax underflows to exactly 0)
    [np.nan, np.nan, np.inf, -1.0],  # a broken model answer
])
def test_no_mass_on_the_chosen_classes_gives_the_uniform_distribution_and_no_nan(row):
    mask = np.array([False, True, True, True])
    restricted, mass = currency_hint.restrict(np.array([row], dtype=np.float32), mask)
    assert np.isfinite(restricted).all() and np.isfinite(mass).all()
    assert np.allclose(restricted, [[0, 1 / 3, 1 / 3, 1 / 3]])
    assert currency_hint.too_little_mass(mass).all()


def test_a_tiny_mass_is_still_renormalised_exactly_but_flagged():
    restricted, mass = currency_hint.restrict(np.array([[1.0, 1e-300, 3e-300, 0.0]]), [False, True, True, True])
    assert np.allclose(restricted, [[0, 0.25, 0.75, 0]])
    assert currency_hint.too_little_mass(mass).all()
    assert not currency_hint.too_little_mass(np.array([0.5])).any()


def test_a_hint_that_keeps_no_class_is_refused():
    with pytest.raises(ValueError, match="keeps no output"):
        currency_hint.restrict(np.array([[0.5, 0.5]]), np.array([False, False]))


def test_the_mask_follows_the_catalog():
    mask = currency_hint.currency_mask(TINY_CLASS_IDS, ["EUR", "USD"])
    assert mask.tolist() == [False, True, True]  # 1 Cent (AUD), 1 Euro, 1/4 Dollar
    catalog = load_catalog()
    assert currency_hint.currency_mask(catalog.class_ids, ["INR"]).sum() == 6


# --- the hint as given -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given, codes", [
    (None, None), ("", None), ([], None), (" , ", None),
    ("EUR", ["EUR"]), ("eur, usd", ["EUR", "USD"]), (["USD", "EUR", "usd"], ["USD", "EUR"]),
])
def test_the_hint_is_read_as_catalog_codes(given, codes):
    assert coin_currencies(given) == codes


@pytest.mark.parametrize("given, message", [
    ("XAU", "no coin of XAU is in the catalog; choose among AUD, BRL"),
    ("EUR,EURO", "'EURO' is not a currency code"),
    (["EUR", 3], "currency codes separated by commas"),
    ({"EUR": True}, "currency codes separated by commas"),
])
def test_a_bad_hint_is_a_request_error(given, message):
    with pytest.raises(RequestError, match=message):
        coin_currencies(given)


# --- the service with a real tiny model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spotter(tmp_path_factory):
    from coinspotter.service import CoinSpotter

    patch = pytest.MonkeyPatch()
    patch.setenv("COINSPOTTER_MODELS_DIR", str(write_model_dir(tmp_path_factory.mktemp("models"))))
    patch.setenv("COINSPOTTER_RATE_PROVIDERS", "none")
    patch.setenv("COINSPOTTER_RATE_CACHE", "off")
    yield CoinSpotter().load(warm_up=False)
    patch.undo()


def uploads(*colours):
    from coinspotter.service import Upload

    return [Upload(f"{colour}.jpg", encode(coin_picture(colour))) for colour in colours]


def test_without_a_hint_nothing_changes_and_every_currency_is_the_same_as_none(spotter):
    plain = spotter.classify(uploads("red", "green", "blue"), top=3)
    assert plain["currencies"] is None
    assert [r["prediction"]["class_id"] for r in plain["results"]] == [EXPECTED_CLASS[c] for c in ("red", "green", "blue")]
    assert all("currencies_probability" not in r for r in plain["results"])

    every = spotter.classify(uploads("red", "green", "blue"), top=3, currencies=load_catalog().currencies)
    assert every["currencies"] == load_catalog().currencies
    for before, after in zip(plain["results"], every["results"]):
        assert [e["class_id"] for e in after["top"]] == [e["class_id"] for e in before["top"]]
        assert [e["probability"] for e in after["top"]] == pytest.approx([e["probability"] for e in before["top"]],
                                                                         abs=1e-4)
        assert after["uncertain"] == before["uncertain"] and after["currencies_probability"] == pytest.approx(1)


def test_a_hint_keeps_only_its_currencies_renormalised_and_the_totals_follow(spotter):
    answer = spotter.classify(uploads("red", "green"), top=5, currencies="eur,usd", currency="EUR")
    assert answer["currencies"] == ["EUR", "USD"]
    red, green = answer["results"]
    for result in (red, green):
        assert {entry["currency"] for entry in result["top"]} <= {"EUR", "USD"}
        assert len(result["top"]) == 2  # only the kept classes are ranked, not the others at 0
        assert sum(entry["probability"] for entry in result["top"]) == pytest.approx(1, abs=1e-3)
    assert red["prediction"]["currency"] != "AUD" and green["prediction"]["class_id"] == EXPECTED_CLASS["green"]
    assert red["currencies_probability"] < 0.01 < 0.99 < green["currencies_probability"]
    assert "AUD" not in {entry["currency"] for entry in answer["summary"]["by_currency"]}
    # honest totals: the red coin, unlike euros and dollars to the model, is not sure, so it is listed apart
    assert red["uncertain"] and not green["uncertain"]
    assert answer["summary"]["coins"] == 1 and answer["summary"]["not_sure"]["coins"] == 1
    assert answer["total"]["currency"] == "EUR" and answer["total"]["coins"] == 1


def test_a_coin_the_model_finds_unlike_the_chosen_currencies_is_not_sure(spotter, monkeypatch):
    # a red coin (1 Cent, AUD to the model) said to be a euro: the only euro class gets 100% after renormalising,
    # but the model gave euros almost nothing
    monkeypatch.setattr(currency_hint, "MIN_MASS", 0.0)
    (trusting,) = spotter.classify(uploads("red"), currencies=["EUR"])["results"]
    assert trusting["prediction"]["name"] == "1 Euro" and trusting["prediction"]["probability"] == 1.0
    assert trusting["uncertain"] is False

    monkeypatch.setattr(currency_hint, "MIN_MASS", trusting["currencies_probability"] * 2)
    (doubting,) = spotter.classify(uploads("red"), currencies=["EUR"])["results"]
    assert doubting["prediction"] == trusting["prediction"] and doubting["uncertain"] is True


def test_a_hint_the_model_has_no_class_for_is_a_request_error(spotter):
    with pytest.raises(RequestError, match="model 'student' knows no coin of GBP"):
        spotter.classify(uploads("red"), currencies="GBP")


def test_a_coin_the_finder_doubts_is_never_in_the_total(spotter, monkeypatch):
    # the finder's touching step keeps a box it scored under its threshold beside a sure coin: whatever the model
    # names it, it is listed apart, not added up
    from coinspotter import service
    from coinspotter.localize import CoinBox, LocalizationResult

    picture = coin_picture("green")
    whole = CoinBox(0, 0, picture.width, picture.height, 0.9)
    monkeypatch.setattr(service, "find_coins", lambda image: LocalizationResult(
        [whole, replace(whole, score=0.33, doubtful=True)], method="coin-finder (test)"))
    answer = spotter.classify([service.Upload("green.jpg", encode(picture))], currency="EUR")
    sure, doubted = answer["results"]
    assert sure["prediction"] == doubted["prediction"]  # the same crop: only the finder's doubt differs
    assert not sure["uncertain"] and "maybe_not_a_coin" not in sure
    assert doubted["uncertain"] and doubted["maybe_not_a_coin"] is True
    assert answer["summary"]["in_total"] == [{"filename": "green.jpg", "coin": 1}]
    assert answer["summary"]["not_sure"]["which"] == [{"filename": "green.jpg", "coin": 2}]
    assert answer["total"]["coins"] == 1 and answer["not_sure"]["coins"] == 1
