"""The real app in its own process (``python web-app/app.py``, tiny models, offline rates), driven by a real
headless Chromium: the currency picked from the browser's language, a choice made with the keyboard, the
total re-rendered in euros without uploading again, and the choice remembered across visits.

Skipped where Playwright or Chromium is missing. Screenshot: test-artifacts/currency-eur.png.
"""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from decimal import ROUND_HALF_UP, Decimal

import pytest
from browser import chromium, chromium_available, upload

if not chromium_available():
    pytest.skip("needs Playwright and Chromium (/usr/bin/chromium or CHROMIUM_PATH)", allow_module_level=True)

from playwright.sync_api import expect  # noqa: E402

from coinspotter.config import REPO_ROOT  # noqa: E402
from coinspotter.rates import load_snapshot  # noqa: E402
from helpers import coin_picture, encode, write_model_dir  # noqa: E402

ARTIFACTS = REPO_ROOT / "test-artifacts"
START_TIMEOUT_S = 120  # importing TensorFlow dominates; on a busy 2-core machine it takes tens of seconds
RENDER_TIMEOUT_MS = 5_000  # the rate service's budget is 3 s; offline rates answer at once


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, process: subprocess.Popen, log_path) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to 127.0.0.1, never a proxy
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited ({process.returncode}):\n{log_path.read_text(errors='replace')}")
        try:
            with opener.open(f"{url}/healthz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"the app did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("app")
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "COINSPOTTER_MODELS_DIR": str(write_model_dir(folder / "models", with_ensemble=False)),
        "COINSPOTTER_RATE_PROVIDERS": "none",  # the offline snapshot
        "COINSPOTTER_RATE_CACHE": "off",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    log_path = folder / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "web-app/app.py"], cwd=REPO_ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


@pytest.fixture()
def open_page(browser, app_url):
    """Opens the app in a fresh browser profile with the given language; fails the test on any page error."""
    contexts, errors = [], []

    def open_with(locale: str, remembered: str | None = None):
        context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        if remembered is not None:  # a choice stored by an earlier visit
            context.add_init_script(f"localStorage.setItem('currency-choice', JSON.stringify({remembered!r}))")
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(app_url)
        return page

    yield open_with
    for context in contexts:
        context.close()
    assert errors == []


def remembered_choice(page):
    page.wait_for_load_state("networkidle")
    return page.evaluate("localStorage.getItem('currency-choice')")


def test_choosing_euros_converts_the_uploaded_coins_and_is_remembered(open_page, tmp_path):
    snapshot = load_snapshot()
    quarter_in_eur = Decimal("0.25") * snapshot.rates["EUR"] / snapshot.rates["USD"]
    photos = []
    for colour in ("green", "blue"):  # 1 Euro, 1/4 Dollar
        photos.append(tmp_path / f"{colour}.jpg")
        photos[-1].write_bytes(encode(coin_picture(colour)))

    page = open_page("en-US")
    selector = page.get_by_label("Show values in")
    expect(selector).to_have_value("USD")
    upload(page, photos)
    expect(page.locator(".total-amount")).to_have_text(re.compile(r"^\$\d+\.\d\d$"))

    selector.focus()
    page.keyboard.press("E")  # type-ahead on the focused selector: "EUR — Euro"
    expect(page.locator(".total-amount")).to_have_text(
        f"€{(1 + quarter_in_eur).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator(".rates-note")).to_contain_text(f"offline rates as of {snapshot.date.isoformat()}")
    expect(page.locator(".converted-value")).to_have_text(  # the 1 Euro coin needs no conversion
        [f"≈ €{quarter_in_eur.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}"])
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)  # let Plotly finish drawing the charts
    page.screenshot(path=ARTIFACTS / "currency-eur.png", full_page=True)

    assert remembered_choice(page) == '"EUR"'
    page.reload()
    expect(page.get_by_label("Show values in")).to_have_value("EUR")  # the choice beats the en-US default


@pytest.mark.parametrize("locale, currency", [
    ("de-DE", "EUR"), ("ja-JP", "JPY"), ("en-GB", "GBP"), ("pt-BR", "BRL"), ("ja", "JPY"), ("es-419", "USD"),
])
def test_the_browser_language_picks_the_currency_until_the_user_chooses(open_page, locale, currency):
    page = open_page(locale)
    expect(page.get_by_label("Show values in")).to_have_value(currency)
    assert remembered_choice(page) is None  # a default, not a choice: a later change of language still counts


@pytest.mark.parametrize("remembered, currency", [("JPY", "JPY"), ("XAU", "EUR")])
def test_a_remembered_choice_wins_over_the_language_when_offered(open_page, remembered, currency):
    expect(open_page("de-DE", remembered).get_by_label("Show values in")).to_have_value(currency)
