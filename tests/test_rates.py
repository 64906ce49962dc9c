"""Exchange rates, offline: every provider is a stand-in HTTP server on 127.0.0.1 (see rate_standins.py)."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from decimal import Decimal

import pytest
from rate_standins import ANSWER_PATHS, ANSWER_SHAPES, Reply, StandIn, refused_url

from coinspotter.catalog import load_catalog
from coinspotter.config import REPO_ROOT
from coinspotter.money import TARGET_CURRENCIES
from coinspotter.rates import (
    PROVIDERS,
    SNAPSHOT_PATH,
    Attribution,
    CurrencyApi,
    FrankfurterV1,
    JsonClient,
    OpenErApi,
    ProviderError,
    RateCache,
    RateService,
    RateUnavailable,
    default_cache_path,
    load_snapshot,
    main,
    providers_from_env,
    refresh_snapshot,
    supported_currencies,
)

TODAY = "2026-11-25"
YESTERDAY = "2026-11-24"
LAST_MONTH = "2026-10-20"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc).timestamp()
TTL = 6 * 3600
COOLDOWN = 300
TIMEOUT = 0.2

# Units per USD, chosen so that cross rates are short exact decimals (EUR -> JPY = 200).
ECB_RATES = {"EUR": Decimal("0.8"), "JPY": Decimal("160"), "GBP": Decimal("0.75"), "CHF": Decimal("0.9")}
WIDE_RATES = {**ECB_RATES, "TWD": Decimal("32"), "CLP": Decimal("1000")}


class FakeClock:
    """Epoch seconds that move only when told to."""

    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """requests honours proxy variables; a proxy would stand between the client and the stand-ins."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture()
def clock():
    return FakeClock()


@pytest.fixture()
def stand_in():
    with StandIn() as server:
        yield server


def serve(stand_in: StandIn, name: str, rates: dict | None = None, *, day: str = YESTERDAY, reply: Reply | None = None,
          **shape_options):
    """Answer like provider ``name`` on ``stand_in``; returns that provider pointed at it."""
    body = ANSWER_SHAPES[name](WIDE_RATES if rates is None else rates, day=day, **shape_options)
    stand_in.route(answer_path(name), reply or Reply(body=body))
    return PROVIDERS[name]([f"{stand_in.url}/{name}"])


def answer_path(name: str) -> str:
    return f"/{name}{ANSWER_PATHS[name]}"


def service(providers, clock, **options) -> RateService:
    options.setdefault("cache", RateCache(ttl=TTL, clock=clock))
    return RateService(providers, client=JsonClient(timeout=TIMEOUT), cooldown=COOLDOWN, clock=clock, **options)


def fetch(provider):
    return provider.fetch("USD", JsonClient(timeout=TIMEOUT), time.monotonic() + 2)


# --- each provider against its answer shape --------------------------------------------------------------


def test_frankfurter_v1_is_asked_for_usd_and_its_rates_stay_exact_decimals(stand_in):
    many_digits = Decimal("0.123456789012345678901")  # a float would keep 17 significant digits
    provider = serve(stand_in, "frankfurter-v1", {"EUR": many_digits, "JPY": Decimal("160")})

    table = fetch(provider)

    assert stand_in.requests == ["/frankfurter-v1/latest?base=USD"]
    assert table.rates == {"USD": Decimal(1), "EUR": many_digits, "JPY": Decimal("160")}
    assert str(table.rates["EUR"]) == "0.123456789012345678901"
    assert (table.provider, table.base, table.date) == ("frankfurter-v1", "USD", date(2026, 11, 24))


def test_frankfurter_v2_rows_keep_their_own_dates(stand_in):
    provider = serve(stand_in, "frankfurter-v2", days={"TWD": "2026-11-20"})

    table = fetch(provider)

    assert stand_in.requests == ["/frankfurter-v2/rates?base=USD"]
    assert table.rates == {"USD": Decimal(1), **WIDE_RATES}
    assert table.date == date(2026, 11, 24)
    assert table.quote_dates == {"TWD": date(2026, 11, 20)}
    assert table.date_for(["EUR", "JPY"]) == date(2026, 11, 24)
    assert table.date_for(["EUR", "TWD"]) == date(2026, 11, 20)


def test_currency_api_reads_lower_case_codes_and_drops_what_is_not_a_currency_code(stand_in):
    provider = serve(stand_in, "currency-api", {"EUR": Decimal("0.8"), "1INCH": Decimal("3.5"), "USD": Decimal(1)})

    table = fetch(provider)

    assert stand_in.requests == ["/currency-api/v1/currencies/usd.json"]
    assert table.rates == {"USD": Decimal(1), "EUR": Decimal("0.8")}


def test_currency_api_falls_back_to_its_mirror(stand_in):
    serve(stand_in, "currency-api", reply=Reply(503, {"error": "busy"}))
    stand_in.route("/mirror/v1/currencies/usd.json", Reply(body={"date": TODAY, "usd": {"eur": Decimal("0.81")}}))
    provider = CurrencyApi([f"{stand_in.url}/currency-api", f"{stand_in.url}/mirror"])

    table = fetch(provider)

    assert stand_in.requests == ["/currency-api/v1/currencies/usd.json", "/mirror/v1/currencies/usd.json"]
    assert (table.rates["EUR"], table.date) == (Decimal("0.81"), date(2026, 11, 25))


def test_currency_api_default_urls_are_jsdelivr_then_the_documented_mirror():
    assert CurrencyApi().urls == ("https://cdn.jsdelivr.net/npm/@fawazahmed0/currency-api@latest",
                                  "https://latest.currency-api.pages.dev")


def test_open_er_api_dates_its_table_from_the_update_time_and_carries_its_attribution(stand_in):
    provider = serve(stand_in, "open-er-api")

    table = fetch(provider)

    assert stand_in.requests == ["/open-er-api/latest/USD"]
    assert table.date == date(2026, 11, 24)
    assert table.rates["TWD"] == Decimal("32")
    assert table.attribution == Attribution("Rates By Exchange Rate API", "https://www.exchangerate-api.com")
    assert table.attribution.html == '<a href="https://www.exchangerate-api.com">Rates By Exchange Rate API</a>'


def test_open_er_api_error_result_is_a_failure(stand_in):
    provider = serve(stand_in, "open-er-api", reply=Reply(body={"result": "error", "error-type": "unsupported-code"}))

    with pytest.raises(ProviderError, match=r"result 'error' \(unsupported-code\)"):
        fetch(provider)


def test_unusable_rates_are_dropped_not_guessed(stand_in):
    body = b'{"amount": 1.0, "base": "USD", "date": "2026-11-24", ' \
           b'"rates": {"EUR": 0, "JPY": -160, "GBP": null, "CHF": "0.9", "SEK": true, "CAD": 1.25}}'
    provider = serve(stand_in, "frankfurter-v1", reply=Reply(body=body))

    assert fetch(provider).rates == {"USD": Decimal(1), "CAD": Decimal("1.25")}


# --- failures, one by one --------------------------------------------------------------------------------

FAILURES = {
    "timeout": (Reply(body={}, delay=1.0), "Timeout"),
    "server error": (Reply(500, {"message": "boom"}), "HTTP 500"),
    "rate limited": (Reply(429, {"message": "slow down"}, headers={"Retry-After": "60"}), "HTTP 429"),
    "malformed json": (Reply(body=b'{"amount": 1.0, "base": "USD", "rates": {'), "malformed JSON"),
    "html instead of json": (Reply(body=b"<html>maintenance</html>"), "malformed JSON"),
    "NaN rate": (Reply(body=b'{"amount":1.0,"base":"USD","date":"2026-11-24","rates":{"EUR":NaN}}'), "malformed JSON"),
    "other base": (Reply(body=ANSWER_SHAPES["frankfurter-v1"]({"USD": 1}, day=YESTERDAY, base="EUR")),
                   "asked for base USD"),
    "no rates": (Reply(body={"amount": 1, "base": "USD", "date": YESTERDAY}), "KeyError: 'rates'"),
    "bad date": (Reply(body=ANSWER_SHAPES["frankfurter-v1"]({"EUR": 1}, day="yesterday")), "Invalid isoformat"),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_failing_provider_falls_through_to_the_next_and_then_cools_down(stand_in, clock, failure):
    reply, message = FAILURES[failure]
    first = serve(stand_in, "frankfurter-v1", reply=reply)
    second = serve(stand_in, "currency-api", {"EUR": Decimal("0.81"), "JPY": Decimal("162")})
    rates = service([first, second], clock)

    with pytest.raises(ProviderError, match=message):
        fetch(first)
    quote = rates.rate("EUR", "JPY")
    assert (quote.rate, quote.origin.provider, quote.origin.offline) == (Decimal("200"), "currency-api", False)
    assert stand_in.count(answer_path("frankfurter-v1")) == 2  # the direct fetch, then the service's

    rates.rate("EUR", "JPY")
    assert stand_in.count(answer_path("frankfurter-v1")) == 2  # cooling down: not asked again

    clock.advance(COOLDOWN + 1 if failure != "rate limited" else 61)  # Retry-After 60 < cool-down 300
    rates.rate("EUR", "JPY")
    assert stand_in.count(answer_path("frankfurter-v1")) == (2 if failure == "rate limited" else 3)


def test_a_refused_connection_falls_through_to_the_next_provider(stand_in, clock):
    second = serve(stand_in, "currency-api")
    rates = service([FrankfurterV1([refused_url()]), second], clock)

    assert rates.rate("GBP", "CHF").origin.provider == "currency-api"
    assert rates.rate("GBP", "CHF").rate == Decimal("1.2")


def test_retry_after_longer_than_the_cool_down_is_honoured(stand_in, clock):
    first = serve(stand_in, "frankfurter-v1", reply=Reply(429, {}, headers={"Retry-After": "900"}))
    rates = service([first, serve(stand_in, "currency-api")], clock)
    path = answer_path("frankfurter-v1")

    rates.rate("EUR", "JPY")
    clock.advance(COOLDOWN + 1)
    rates.rate("EUR", "JPY")
    assert stand_in.count(path) == 1
    clock.advance(900 - COOLDOWN)
    rates.rate("EUR", "JPY")
    assert stand_in.count(path) == 2


def test_first_provider_stopped_mid_run_the_next_answers_without_error(clock):
    with StandIn() as first_server, StandIn() as second_server:
        rates = service([serve(first_server, "frankfurter-v2"), serve(second_server, "open-er-api",
                                                                      {**WIDE_RATES, "JPY": Decimal("150")})], clock)
        assert rates.rate("USD", "JPY").origin.provider == "frankfurter-v2"

        first_server.stop()
        clock.advance(TTL + 1)
        quote = rates.rate("USD", "JPY")

        assert (quote.rate, quote.origin.provider) == (Decimal("150"), "open-er-api")
        assert quote.origin.attribution.url == "https://www.exchangerate-api.com"
        assert second_server.count(answer_path("open-er-api")) == 1


def test_a_slow_chain_stays_within_the_budget_and_ends_offline(stand_in, clock):
    slow = Reply(body={}, delay=2.0)
    providers = [serve(stand_in, name, reply=slow) for name in PROVIDERS]
    rates = service(providers, clock, snapshot=load_snapshot(), budget=0.7)
    rates.client.timeout = 0.6

    started = time.monotonic()
    quote = rates.rate("EUR", "JPY")
    elapsed = time.monotonic() - started

    assert quote.origin.offline
    # 0.6 s for the first provider, the 0.1 s left for the second. Calls not cut to the budget would take
    # 1.2 s, and no budget at all 4 x 0.6 s.
    assert 0.65 < elapsed < 1.0
    assert len(stand_in.requests) == 2


def test_the_budget_holds_even_when_a_call_ignores_its_timeout(clock):
    released = threading.Event()

    class Hanging(FrankfurterV1):  # like a DNS look-up that hangs: no timeout reaches it
        def fetch(self, base, client, deadline):
            released.wait(5)
            raise ProviderError("hung")

    rates = service([Hanging()], clock, snapshot=load_snapshot(), budget=0.3)
    try:
        started = time.monotonic()
        first = rates.rate("EUR", "JPY")
        second = rates.rate("EUR", "JPY")  # the hanging fetch still holds the single-flight lock
        elapsed = time.monotonic() - started
    finally:
        released.set()

    assert (first.origin.offline, second.origin.offline) == (True, True)
    assert elapsed < 1.5  # 2 x 0.3 s; without the worker thread the first call alone would take 5 s


# --- which table answers ---------------------------------------------------------------------------------


def test_a_provider_lacking_a_currency_falls_through_and_cross_rates_go_through_usd(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", ECB_RATES), serve(stand_in, "frankfurter-v2")], clock)

    ecb = rates.rate("EUR", "JPY")
    taiwan = rates.rate("EUR", "TWD")

    assert (ecb.rate, ecb.origin.provider) == (Decimal("200"), "frankfurter-v1")
    assert (taiwan.rate, taiwan.origin.provider) == (Decimal("40"), "frankfurter-v2")
    assert rates.rate("JPY", "EUR").rate == Decimal("0.005")
    assert rates.rate("TWD", "TWD").rate == Decimal(1)


def test_a_stale_provider_gives_way_to_a_current_one(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", day=LAST_MONTH), serve(stand_in, "currency-api")], clock)

    origin = rates.rate("EUR", "GBP").origin

    assert (origin.provider, origin.date, origin.stale) == ("currency-api", date(2026, 11, 24), False)


def test_stale_live_rates_beat_an_older_snapshot_and_say_so(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", day=LAST_MONTH)], clock, snapshot=load_snapshot())

    origin = rates.rate("EUR", "GBP").origin

    assert (origin.provider, origin.stale, origin.offline) == ("frankfurter-v1", True, False)
    assert origin.label == "rates from Frankfurter (ECB reference rates), 2026-10-20 (out of date)"


def test_one_old_row_makes_only_the_answers_using_it_stale(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v2", days={"CLP": LAST_MONTH})], clock)

    assert rates.rate("EUR", "JPY").origin.stale is False
    assert rates.rate("EUR", "CLP").origin.stale is True
    assert rates.rate("EUR", "CLP").origin.date == date(2026, 10, 20)


# --- cache -----------------------------------------------------------------------------------------------


def test_rates_are_cached_for_the_ttl_then_fetched_again(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v2")], clock)
    path = answer_path("frankfurter-v2")

    rates.rate("EUR", "JPY")
    rates.convert(Decimal("1"), "GBP", "TWD")
    clock.advance(TTL - 1)
    rates.rate("CHF", "CLP")
    assert stand_in.count(path) == 1

    clock.advance(2)
    rates.rate("EUR", "JPY")
    assert stand_in.count(path) == 2


def test_the_cache_file_serves_another_process_without_the_network(stand_in, clock, tmp_path):
    cache_file = tmp_path / "cache" / "rates.json"
    provider = serve(stand_in, "frankfurter-v2")
    service([provider], clock, cache=RateCache(cache_file, ttl=TTL, clock=clock)).rate("EUR", "JPY")
    stand_in.stop()

    restarted = service([provider], clock, cache=RateCache(cache_file, ttl=TTL, clock=clock))
    quote = restarted.rate("EUR", "TWD")

    assert (quote.rate, quote.origin.provider, quote.origin.offline) == (Decimal("40"), "frankfurter-v2", False)
    saved = json.loads(cache_file.read_text())
    assert saved["version"] == 1
    assert saved["tables"]["frankfurter-v2:USD"]["rates"]["TWD"] == "32"
    assert saved["tables"]["frankfurter-v2:USD"]["fetched_at"] == NOW
    assert sorted(os.listdir(cache_file.parent)) == ["rates.json"]  # no temporary file left behind


BAD_CACHE_FILES = {
    "not json": "{ not json",
    "not a number": json.dumps({"version": 1, "tables": {"frankfurter-v2:USD": {
        "provider": "frankfurter-v2", "source": "x", "base": "USD", "date": YESTERDAY, "rates": {"JPY": "lots"}}}}),
}


@pytest.mark.parametrize("content", BAD_CACHE_FILES.values(), ids=list(BAD_CACHE_FILES))
def test_an_unreadable_cache_file_is_ignored(stand_in, clock, tmp_path, caplog, content):
    cache_file = tmp_path / "rates.json"
    cache_file.write_text(content)
    rates = service([serve(stand_in, "frankfurter-v2")], clock, cache=RateCache(cache_file, ttl=TTL, clock=clock))

    with caplog.at_level(logging.WARNING, logger="coinspotter.rates"):
        assert rates.rate("EUR", "JPY").rate == Decimal("200")

    assert "Ignoring the unreadable rate cache" in caplog.text
    assert json.loads(cache_file.read_text())["tables"]["frankfurter-v2:USD"]["rates"]["JPY"] == "160"


def test_an_unwritable_cache_file_leaves_rates_in_memory(stand_in, clock, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    rates = service([serve(stand_in, "frankfurter-v2")], clock,
                    cache=RateCache(blocker / "rates.json", ttl=TTL, clock=clock))

    with caplog.at_level(logging.WARNING, logger="coinspotter.rates"):
        rates.rate("EUR", "JPY")
        rates.rate("EUR", "JPY")

    assert stand_in.count(answer_path("frankfurter-v2")) == 1
    assert "keeping rates in memory only" in caplog.text


def test_expired_live_rates_beat_the_snapshot_while_providers_are_down(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v2")], clock, snapshot=load_snapshot())
    rates.rate("EUR", "JPY")
    stand_in.stop()
    clock.advance(TTL + 1)

    quote = rates.rate("EUR", "JPY")

    assert (quote.rate, quote.origin.provider, quote.origin.offline) == (Decimal("200"), "frankfurter-v2", False)


def test_concurrent_requests_make_one_call(stand_in, clock):
    body = ANSWER_SHAPES["frankfurter-v2"](WIDE_RATES, day=YESTERDAY)
    stand_in.route(answer_path("frankfurter-v2"), Reply(body=body, delay=0.1))
    rates = service([PROVIDERS["frankfurter-v2"]([f"{stand_in.url}/frankfurter-v2"])], clock)
    results = []

    def ask():
        results.append(rates.rate("EUR", "JPY").rate)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [Decimal("200")] * 8
    assert stand_in.count(answer_path("frankfurter-v2")) == 1


# --- offline snapshot and coverage -----------------------------------------------------------------------


def test_the_bundled_snapshot_says_truthfully_what_it_is():
    raw = json.loads(SNAPSHOT_PATH.read_text(encoding="utf-8"))
    snapshot = load_snapshot()

    assert raw["source"].startswith("hand-entered approximate reference rates (not live)")
    assert "python -m coinspotter.rates refresh-snapshot" in raw["source"]
    assert (snapshot.date, snapshot.base, snapshot.attribution) == (date(2024, 12, 31), "USD", None)
    assert sorted(snapshot.rates) == supported_currencies()
    assert len(supported_currencies()) == 37  # 32 catalog currencies + 5 targets outside the catalog


def test_with_no_provider_answering_the_snapshot_answers_labelled_offline(clock):
    rates = service([FrankfurterV1([refused_url()]), OpenErApi([refused_url()])], clock, snapshot=load_snapshot())

    quote = rates.rate("EUR", "JPY")

    assert quote.rate == Decimal("163.099937669")  # 157.0 / 0.9626 in the snapshot, to 12 digits
    assert (quote.origin.provider, quote.origin.offline, quote.origin.stale) == ("snapshot", True, True)
    assert quote.origin.label == "offline rates as of 2024-12-31"
    assert quote.origin.attribution is None


def test_every_catalog_currency_converts_to_every_supported_currency_offline(clock):
    rates = service([], clock, snapshot=load_snapshot())
    catalog = load_catalog()
    assert len(catalog.currencies) == 32
    assert set(TARGET_CURRENCIES) <= set(supported_currencies())

    for source in catalog.currencies:
        for target in supported_currencies():
            back_and_forth = rates.rate(source, target).rate * rates.rate(target, source).rate
            assert abs(back_and_forth - 1) < Decimal("1e-10"), (source, target)
    for coin in catalog:
        assert rates.convert(coin.face_value, coin.currency, coin.currency).amount == coin.face_value


def test_a_currency_nobody_lists_is_a_clear_error_not_a_number(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", ECB_RATES), OpenErApi([refused_url()])], clock,
                    snapshot=load_snapshot())

    with pytest.raises(RateUnavailable) as caught:
        rates.convert(Decimal("1"), "EUR", "XAU")

    assert str(caught.value) == ("No exchange rate for XAU: none of the rate sources lists it "
                                 "(checked: frankfurter-v1, snapshot; not reachable now: open-er-api).")
    assert caught.value.currencies == ("XAU",)


def test_currencies_split_over_sources_are_a_clear_error(stand_in, clock):
    first = serve(stand_in, "frankfurter-v1", {"EUR": Decimal("0.8"), "ABC": Decimal("2")})
    second = serve(stand_in, "currency-api", {"EUR": Decimal("0.8"), "XYZ": Decimal("3")})

    with pytest.raises(RateUnavailable, match=r"^No single rate source lists all of ABC, XYZ right now "
                                              r"\(checked: frankfurter-v1, currency-api\); "
                                              r"convert them separately\.$"):
        service([first, second], clock).rate("ABC", "XYZ")


def test_bad_input_is_refused_before_any_call(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v2")], clock)

    with pytest.raises(ValueError, match="not a currency code"):
        rates.rate("EURO", "JPY")
    with pytest.raises(TypeError, match="not float"):
        rates.convert(0.1, "EUR", "JPY")
    assert stand_in.requests == []


# --- conversions -----------------------------------------------------------------------------------------


def test_convert_rounds_to_the_target_minor_unit(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v2")], clock)

    conversion = rates.convert(Decimal("0.05"), "EUR", "JPY")

    assert (conversion.exact_amount, conversion.amount, conversion.formatted) == (Decimal("10"), Decimal("10"), "¥10")
    assert rates.convert(Decimal("1"), "JPY", "EUR").amount == Decimal("0.01")  # 0.005, half up
    assert rates.convert(Decimal("2"), "CHF", "GBP").as_dict() == {
        "amount": "1.67", "currency": "GBP", "formatted": "£1.67",
        "from_amount": "2", "from_currency": "CHF", "rate": "0.833333333333",
    }


def test_a_total_uses_one_table_and_rounds_once(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", ECB_RATES), serve(stand_in, "frankfurter-v2")], clock)
    cents = [(Decimal("0.01"), "USD")] * 3  # 1.6 JPY each

    total = rates.convert_many([*cents, (Decimal("10"), "TWD")], "JPY")

    assert [line.amount for line in total.lines] == [Decimal("2"), Decimal("2"), Decimal("2"), Decimal("50")]
    assert (total.exact_amount, total.amount, total.formatted) == (Decimal("54.80"), Decimal("55"), "¥55")
    assert {line.quote.origin for line in total.lines} == {total.origin}
    assert total.origin.provider == "frankfurter-v2"  # the one table listing TWD too, although v1 comes first
    assert rates.convert_many([], "EUR").amount == Decimal("0.00")


def test_rates_for_the_api(stand_in, clock):
    rates = service([serve(stand_in, "frankfurter-v1", ECB_RATES)], clock)

    assert rates.rates("EUR", ["JPY", "GBP"]) == {
        "base": "EUR",
        "rates": {"JPY": "200", "GBP": "0.9375"},
        "provider": "frankfurter-v1",
        "source": "Frankfurter (ECB reference rates)",
        "date": "2026-11-24",
        "offline": False,
        "stale": False,
        "label": "rates from Frankfurter (ECB reference rates), 2026-11-24",
        "attribution": None,
    }


def test_default_rates_cover_the_supported_currencies(clock):
    answer = service([], clock, snapshot=load_snapshot()).rates("usd")

    assert list(answer["rates"]) == supported_currencies()
    assert (answer["rates"]["EUR"], answer["rates"]["USD"], answer["label"]) == (
        "0.9626", "1", "offline rates as of 2024-12-31")


def test_rate_set_answers_only_for_its_currencies(clock):
    rate_set = service([], clock, snapshot=load_snapshot()).rate_set(["EUR", "USD"])

    assert rate_set.rate("USD", "EUR").rate == Decimal("0.9626")
    with pytest.raises(ValueError, match="not JPY"):
        rate_set.rate("EUR", "JPY")


# --- configuration ---------------------------------------------------------------------------------------


def test_from_env_builds_the_chain_in_the_configured_order(tmp_path):
    env = {
        "COINSPOTTER_RATE_PROVIDERS": "open-er-api, frankfurter-v1",
        "COINSPOTTER_RATE_URL_FRANKFURTER_V1": "http://127.0.0.1:9/frankfurter/",
        "COINSPOTTER_RATE_CACHE": str(tmp_path / "rates.json"),
        "COINSPOTTER_RATE_TTL": "60",
        "COINSPOTTER_RATE_TIMEOUT": "0.5",
        "COINSPOTTER_RATE_BUDGET": "2",
        "COINSPOTTER_RATE_STALE_DAYS": "3",
    }

    rates = RateService.from_env(env)

    assert [(provider.name, provider.urls) for provider in rates.providers] == [
        ("open-er-api", ("https://open.er-api.com/v6",)),
        ("frankfurter-v1", ("http://127.0.0.1:9/frankfurter",)),
    ]
    assert (rates.cache.path, rates.cache.ttl) == (tmp_path / "rates.json", 60)
    assert (rates.client.timeout, rates.budget, rates.stale_after_days) == (0.5, 2, 3)
    assert rates.snapshot.offline and rates.snapshot.date == date(2024, 12, 31)


def test_from_env_defaults():
    rates = RateService.from_env({})

    assert [provider.name for provider in rates.providers] == ["frankfurter-v2", "frankfurter-v1", "currency-api",
                                                               "open-er-api"]
    assert (rates.cache.ttl, rates.client.timeout, rates.budget, rates.stale_after_days) == (21600, 1.0, 3.0, 5)
    assert rates.cache.path == default_cache_path()
    assert not default_cache_path().resolve().is_relative_to(REPO_ROOT)


def test_from_env_can_run_offline_with_memory_only():
    rates = RateService.from_env({"COINSPOTTER_RATE_PROVIDERS": "none", "COINSPOTTER_RATE_CACHE": "off"})

    assert (rates.providers, rates.cache.path) == ((), None)
    assert rates.rate("EUR", "USD").origin.label == "offline rates as of 2024-12-31"


@pytest.mark.parametrize("setting, message", [
    ("frankfurter", "unknown: frankfurter"),
    ("currency-api,currency-api", "at most once"),
])
def test_a_mistyped_provider_list_is_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        providers_from_env({"COINSPOTTER_RATE_PROVIDERS": setting})


def test_from_env_points_every_provider_at_its_url(stand_in, tmp_path):
    serve(stand_in, "frankfurter-v2", reply=Reply(500, {}))
    serve(stand_in, "currency-api")
    rates = RateService.from_env({
        "COINSPOTTER_RATE_PROVIDERS": "frankfurter-v2,currency-api",
        "COINSPOTTER_RATE_URL_FRANKFURTER_V2": f"{stand_in.url}/frankfurter-v2",
        "COINSPOTTER_RATE_URL_CURRENCY_API": f"{refused_url()},{stand_in.url}/currency-api",
        "COINSPOTTER_RATE_CACHE": str(tmp_path / "rates.json"),
        "COINSPOTTER_RATE_TIMEOUT": str(TIMEOUT),
    })

    conversion = rates.convert(Decimal("5"), "CHF", "CLP")

    assert (conversion.amount, conversion.formatted) == (Decimal("5556"), "CLP\u00a05,556")
    assert conversion.quote.origin.provider == "currency-api"


# --- refreshing the snapshot -----------------------------------------------------------------------------


def test_refresh_snapshot_takes_the_first_provider_listing_every_needed_currency(stand_in, tmp_path):
    everything = {code: Decimal(index + 2) for index, code in enumerate(supported_currencies()) if code != "USD"}
    narrow = serve(stand_in, "frankfurter-v1", ECB_RATES)
    wide = serve(stand_in, "frankfurter-v2", {**everything, "XAU": Decimal("0.0004")}, days={"RUB": "2026-11-20"})
    target = tmp_path / "snapshot.json"

    snapshot = refresh_snapshot([FrankfurterV1([refused_url()]), narrow, wide], path=target,
                                client=JsonClient(timeout=TIMEOUT))

    assert (snapshot.provider, snapshot.offline, snapshot.date) == ("snapshot", True, date(2026, 11, 24))
    assert snapshot.rates == {**everything, "USD": Decimal(1)}  # the needed ones, not XAU
    assert snapshot.quote_dates == {"RUB": date(2026, 11, 20)}
    assert snapshot.source.startswith("Frankfurter (central bank reference rates) (frankfurter-v2), fetched ")
    assert set(json.loads(target.read_text())) == {"about", "source", "date", "base", "attribution", "quote_dates",
                                                   "rates"}


def test_refresh_snapshot_keeps_the_old_file_when_no_provider_lists_everything(stand_in, tmp_path):
    target = tmp_path / "snapshot.json"
    target.write_text("old")

    with pytest.raises(RateUnavailable, match=r"old one is kept: frankfurter-v1 lacks AED, AUD, BRL"):
        refresh_snapshot([serve(stand_in, "frankfurter-v1", ECB_RATES)], path=target,
                         client=JsonClient(timeout=TIMEOUT))
    assert target.read_text() == "old"


def test_refresh_snapshot_command(stand_in, tmp_path, monkeypatch, capsys):
    serve(stand_in, "currency-api", {code: Decimal("2") for code in supported_currencies() if code != "USD"})
    monkeypatch.setenv("COINSPOTTER_RATE_PROVIDERS", "currency-api")
    monkeypatch.setenv("COINSPOTTER_RATE_URL_CURRENCY_API", f"{stand_in.url}/currency-api")
    target = tmp_path / "snapshot.json"

    assert main(["refresh-snapshot", "--output", str(target)]) == 0
    assert capsys.readouterr().out.startswith(f"Wrote 37 rates dated 2026-11-24 to {target}\n  source: fawazahmed0")

    stand_in.stop()
    assert main(["refresh-snapshot", "--output", str(target), "--timeout", "0.2"]) == 1
    assert capsys.readouterr().err.startswith("error: Snapshot not refreshed, the old one is kept: currency-api failed")
    assert load_snapshot(target).rates["EUR"] == Decimal("2")


def test_python_dash_m_runs_the_command(stand_in, tmp_path):
    serve(stand_in, "frankfurter-v2", {code: Decimal("3") for code in supported_currencies() if code != "USD"})
    env = {**os.environ, "COINSPOTTER_RATE_PROVIDERS": "frankfurter-v2",
           "COINSPOTTER_RATE_URL_FRANKFURTER_V2": f"{stand_in.url}/frankfurter-v2"}
    target = tmp_path / "snapshot.json"

    done = subprocess.run([sys.executable, "-m", "coinspotter.rates", "refresh-snapshot", "--output", str(target)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert load_snapshot(target).rates["JPY"] == Decimal("3")


def test_no_test_reaches_the_internet():
    with pytest.raises(RuntimeError, match="tests run offline"):
        fetch(FrankfurterV1())  # the real api.frankfurter.dev: refused at the name look-up
    with pytest.raises(RuntimeError, match="tests run offline"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.2)  # an address: refused at connect
