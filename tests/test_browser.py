"""The real app in its own process (``python web-app/app.py``, tiny models, offline rates), driven by a real
headless Chromium under the app's Content-Security-Policy (any violation, page error or console error fails
the test): photos to cards, charts and totals; a photo holding several coins; a bad file beside good ones;
the model and currency switches; a phone-sized screen; the page used by keyboard alone; the currency picked
from the browser's language, re-rendered without uploading again and remembered across visits.

Where Playwright or Chromium is missing, every test here is skipped with the reason, naming what to install (and
conftest.py repeats it at the end of the run); with COINSPOTTER_REQUIRE_BROWSER=1 (CI, .ci/run) each one fails
instead. Screenshots: test-artifacts/*.png.
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
from browser import REQUIRE_BROWSER, browser_missing, chromium, upload

from coinspotter.config import REPO_ROOT
from coinspotter.rates import load_snapshot
from helpers import coin_picture, coins_picture, encode, write_model_dir

MISSING = browser_missing()
if MISSING is None:
    from playwright.sync_api import expect
else:
    expect = None  # never called: every test is skipped (or failed) first, by the fixture below


@pytest.fixture(scope="module", autouse=True)
def needs_a_browser():
    """Each test of this module skipped, with what to install, where the browser cannot run: one line per test in
    the summary (pytest -ra), not one hidden skip of the module. Failed instead under COINSPOTTER_REQUIRE_BROWSER=1."""
    if MISSING is not None:
        if os.environ.get(REQUIRE_BROWSER) == "1":
            pytest.fail(f"{MISSING} ({REQUIRE_BROWSER}=1: the browser tests must run here)", pytrace=False)
        pytest.skip(MISSING)

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
        "COINSPOTTER_MODELS_DIR": str(write_model_dir(folder / "models")),  # student and a tiny ensemble
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


# Records every Content-Security-Policy violation the page meets (Chromium also logs them as console errors).
CSP_WATCH = """
window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
    (event) => window.cspViolations.push(event.violatedDirective + " " + event.blockedURI));
"""


@pytest.fixture()
def open_page(browser, app_url):
    """Opens the app in a fresh browser profile with the given language (and viewport); fails the test on any
    page error, console error or CSP violation."""
    contexts, pages, errors = [], [], []

    def open_with(locale: str = "en-US", remembered: str | None = None, width: int = 1280, height: int = 900,
                  init_script: str | None = None):
        context = browser.new_context(locale=locale, viewport={"width": width, "height": height})
        contexts.append(context)
        context.add_init_script(CSP_WATCH)
        if init_script is not None:  # runs in the page before its own scripts (a stand-in for a browser API)
            context.add_init_script(init_script)
        if remembered is not None:  # a choice stored by an earlier visit
            context.add_init_script(f"localStorage.setItem('currency-choice', JSON.stringify({remembered!r}))")
        page = context.new_page()
        pages.append(page)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        response = page.goto(app_url)
        assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
        return page

    yield open_with
    violations = [violation for page in pages for violation in page.evaluate("window.cspViolations")]
    for context in contexts:
        context.close()
    assert errors == [] and violations == []


def photo_files(folder, **pictures) -> list:
    """``name=image`` (or bytes) written as files in ``folder``, in the order given."""
    paths = []
    for name, picture in pictures.items():
        paths.append(folder / name.replace("__", "."))
        paths[-1].write_bytes(picture if isinstance(picture, bytes) else encode(picture))
    return paths


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(300)  # let Plotly finish drawing the charts
    page.screenshot(path=ARTIFACTS / name, full_page=True)


def test_one_coin_photo_shows_its_card_chart_and_value(open_page, tmp_path):
    page = open_page()
    upload(page, photo_files(tmp_path, quarter__jpg=coin_picture("blue")))
    card = page.locator(".coin-card")
    expect(card).to_have_count(1)
    expect(card.get_by_role("heading")).to_contain_text("1/4 Dollar")
    expect(card).to_contain_text("Face value: 0.25 USD")
    expect(card.locator(".coin-source")).to_have_text("quarter.jpg · coin 1")
    expect(card.get_by_role("img", name="Coin 1 of quarter.jpg")).to_be_visible()
    expect(card.locator(".probability-chart .bars path").first).to_be_visible()  # Plotly drew the bars
    expect(page.locator(".summary-card")).to_contain_text("1 coin found")
    expect(page.locator(".total-amount")).to_have_text("$0.25")
    screenshot(page, "one-coin.png")


def test_several_photos_show_every_card_and_the_total_and_a_bad_file_only_its_message(open_page, tmp_path):
    page = open_page()
    hostile_name = "<img src=x onerror=alert(1)>.jpg"  # shown as text, never run: the dialog handler would fail
    paths = photo_files(tmp_path, photo_10__jpg=coin_picture("red"), notes__jpg=b"not a photo at all",
                        photo_9__png=encode(coin_picture("green"), "PNG"), photo_2__jpg=coin_picture("blue"))
    paths[1] = paths[1].rename(tmp_path / hostile_name)
    upload(page, paths)
    # in file-name order, numbers as numbers, whatever order the browser read the files in
    expect(page.locator(".coin-card .coin-source")).to_have_text(["photo_2.jpg · coin 1", "photo_9.png · coin 1",
                                                                  "photo_10.jpg · coin 1"])
    expect(page.locator(".coin-card h2")).to_contain_text(["1/4 Dollar", "1 Euro", "1 Cent"])
    error = page.locator(".error-card")
    expect(error).to_contain_text(hostile_name)
    expect(error).to_contain_text("This is not an image we can read")
    expect(page.locator(".summary-card")).to_contain_text("3 coins found")
    expect(page.locator(".summary-totals li")).to_have_text(["1 coin: 0.25 USD", "1 coin: 1 EUR", "1 coin: 0.01 AUD"])
    expect(page.locator(".total-amount")).to_have_text(re.compile(r"^\$1\.\d\d$"))
    assert page.locator("img[src=x]").count() == 0
    screenshot(page, "several-photos-and-a-bad-file.png")


def test_a_photo_of_three_coins_is_shown_once_numbered_with_their_cards(open_page, tmp_path):
    page = open_page()
    upload(page, photo_files(tmp_path, table__jpg=coins_picture(["red", "green", "blue"])))
    overview = page.get_by_role("img", name="Photo table.jpg with 3 coins found, numbered 1-3")
    expect(overview).to_be_visible()
    expect(page.locator(".multi-coin-photo .coin-source")).to_have_text(
        ["coin 1 of table.jpg", "coin 2 of table.jpg", "coin 3 of table.jpg"])
    expect(page.locator(".summary-card")).to_contain_text("3 coins found")
    screenshot(page, "three-coins-in-one-photo.png")


def test_switching_the_model_classifies_again_with_the_other_model(open_page, tmp_path):
    page = open_page()
    upload(page, photo_files(tmp_path, blue__jpg=coin_picture("blue")))
    expect(page.locator(".summary-card")).to_contain_text("Model: Tiny student")
    page.get_by_label("Most accurate (teacher ensemble)").check()
    expect(page.locator(".summary-card")).to_contain_text("Model: Tiny ensemble", timeout=RENDER_TIMEOUT_MS)
    expect(page.locator(".coin-card h2")).to_contain_text(["1/4 Dollar"])


def test_too_many_photos_are_held_back_in_the_browser_and_the_limit_named(open_page, tmp_path):
    page = open_page()
    sent = []  # the sizes of the callback requests
    page.on("request", lambda request: sent.append(len(request.post_data_buffer or b""))
            if "/_dash-update-component" in request.url else None)
    photos = photo_files(tmp_path, **{f"coin{index}__jpg": coin_picture("red", (200, 200)) for index in range(21)})
    upload(page, photos)
    expect(page.locator("#results .alert")).to_have_text(
        "21 files at once; the limit is 20 per request. Please send them in smaller groups.")
    assert sent and max(sent) < 5_000  # names and sizes only: 21 photos of ~5 KB were never sent


def test_on_a_phone_nothing_is_wider_than_the_screen(open_page, tmp_path):
    page = open_page(width=390, height=844)
    upload(page, photo_files(tmp_path, table__jpg=coins_picture(["red", "green", "blue"]),
                             PXL_20240101_123456789_with_a_long_name_from_a_phone__jpg=coin_picture("blue"),
                             notes__jpg=b"text"))
    page.wait_for_timeout(300)
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    overview_width = page.get_by_role("img", name=re.compile("^Photo table.jpg")).bounding_box()["width"]
    assert 300 <= overview_width <= 390
    screenshot(page, "phone-390.png")


def test_the_page_works_by_keyboard_alone(open_page, tmp_path):
    # Enter and Space each open the chooser; each is tried on a page of its own, because a browser shows one
    # chooser at a time and closing one (set_files) is not over the moment the call returns.
    for key in ("Enter", "Space"):
        page = open_page()
        # Listening for choosers switches Playwright's interception on; done only inside expect_file_chooser, the
        # switch could still be on its way to the browser when the key press opens the chooser, which is then lost.
        page.on("filechooser", lambda chooser: None)
        page.locator("#choose-photos").wait_for()  # Dash has drawn the page
        page.keyboard.press("Tab")  # the first stop: the upload zone's button
        expect(page.locator("#choose-photos")).to_be_focused()
        with page.expect_file_chooser() as chooser:
            page.keyboard.press(key)
    photos = photo_files(tmp_path, blue__jpg=coin_picture("blue"))
    chooser.value.set_files([str(path) for path in photos])  # the Space page's chooser
    page.wait_for_selector(".summary-card")
    expect(page.locator(".summary-card")).to_contain_text("Model: Tiny student")

    page.keyboard.press("Tab")  # the model switch: arrows pick the other model
    expect(page.get_by_label("Fast (MobileNetV2)")).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_label("Most accurate (teacher ensemble)")).to_be_checked()
    expect(page.locator(".summary-card")).to_contain_text("Model: Tiny ensemble", timeout=RENDER_TIMEOUT_MS)

    page.keyboard.press("Tab")  # "Coins from", left as it is: any currency
    expect(page.locator("#coin-currencies")).to_be_focused()
    page.keyboard.press("Tab")  # the currency: type-ahead
    expect(page.get_by_label("Show values in")).to_be_focused()
    page.keyboard.press("E")
    expect(page.locator(".total-amount")).to_have_text(re.compile(r"^€0\.\d\d$"), timeout=RENDER_TIMEOUT_MS)
    screenshot(page, "keyboard.png")


def test_coins_from_classifies_again_within_the_chosen_currency_by_keyboard(open_page, tmp_path):
    page = open_page()
    upload(page, photo_files(tmp_path, red__jpg=coin_picture("red")))  # 1 Cent (Australia) to the model
    card = page.locator(".coin-card")
    expect(card.get_by_role("heading")).to_contain_text("1 Cent")
    coins_from = page.get_by_role("group", name="Coins from")
    expect(coins_from).to_contain_text("Any currency")

    chooser = coins_from.locator("#coin-currencies")
    chooser.focus()
    page.keyboard.press("Enter")  # opens the list, with its search box focused
    expect(chooser).to_have_attribute("aria-expanded", "true")
    page.keyboard.type("euro")
    # the list filtered down to the euro alone before the arrow key: on a busy machine the search is applied a
    # moment after the typing, and an arrow key before that picks from the whole list
    expect(coins_from.get_by_role("option")).to_have_text(["EUR — Euro"])
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    expect(chooser).to_have_attribute("aria-expanded", "false")
    expect(coins_from).to_contain_text("EUR — Euro")

    # classified again: the only euro coin the tiny model knows, shown as not sure (the model saw a cent)
    expect(card.get_by_role("heading")).to_contain_text("Maybe 1 Euro", timeout=BUSY_TIMEOUT_MS)
    expect(card).to_contain_text("to the model it looks like none of them")
    expect(page.locator(".coins-from-note")).to_have_text("Coins from: EUR only (other currencies not considered)")
    # honest totals: a not-sure coin is listed apart, never in the total
    expect(page.locator(".summary-card h2")).to_have_text("0 coins counted, 1 not sure")
    expect(page.locator(".not-sure-summary")).to_contain_text("Not sure, not in the total: 1 coin")
    screenshot(page, "coins-from-eur.png")

    chooser.focus()  # cleared again: any currency, the model's own answer
    page.keyboard.press("Enter")
    coins_from.get_by_role("button", name="Deselect All").click()
    page.keyboard.press("Escape")
    expect(card.get_by_role("heading")).to_contain_text("1 Cent", timeout=BUSY_TIMEOUT_MS)
    expect(page.locator(".coins-from-note")).to_have_count(0)


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
    screenshot(page, "currency-eur.png")

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


# --- the result for the ear, and why the model said it --------------------------------------------------------

# Speech synthesis that records what it is asked to say instead of saying it (headless Chromium has no voices).
RECORD_SPEECH = """
window.spokenUtterances = [];
if (window.speechSynthesis) {
    window.speechSynthesis.speak = (utterance) => window.spokenUtterances.push({text: utterance.text, lang: utterance.lang});
    window.speechSynthesis.cancel = () => {};
}
"""
BUSY_TIMEOUT_MS = 15_000  # a re-render on the 2 cores the training job shares can take several seconds
NO_SPEECH = "Object.defineProperty(window, 'speechSynthesis', {value: undefined, configurable: true});"


def spoken(page, count: int) -> list[dict]:
    """What the page has asked RECORD_SPEECH to say, once it has asked ``count`` times (the clientside callback
    runs after the click returns)."""
    # a function, not an expression string: Playwright polls a string with eval(), which the page's CSP refuses
    page.wait_for_function("count => window.spokenUtterances.length >= count", arg=count, timeout=BUSY_TIMEOUT_MS)
    return page.evaluate("window.spokenUtterances")


def total_in(page, symbol: str) -> str:
    """The page's total without its symbol: "$1.29" -> "1.29"."""
    return page.locator(".total-amount").inner_text().removeprefix(symbol)


def test_the_live_region_announces_the_coins_and_the_total_and_speak_reads_it_aloud(open_page, tmp_path):
    page = open_page("de-DE", init_script=RECORD_SPEECH)  # values in euros, from the language
    assert page.evaluate("document.documentElement.lang") == "en"  # the page's own language: English
    speak = page.get_by_role("button", name="Speak result")
    expect(speak).to_be_hidden()  # nothing to read yet
    upload(page, photo_files(tmp_path, green__jpg=coin_picture("green"), blue__jpg=coin_picture("blue"),
                             notes__jpg=b"text"))
    live = page.get_by_role("status")
    expect(live).to_have_attribute("aria-live", "polite")
    expect(page.locator(".total-amount")).to_have_text(re.compile(r"^€1\.\d\d$"))
    sentence = f"2 coins: 1/4 Dollar, 1 Euro; total {total_in(page, '€')} EUR; 1 file could not be used."
    expect(live).to_have_text(sentence, timeout=BUSY_TIMEOUT_MS)
    assert page.locator("[aria-live]").count() == 1  # the cards are not read out whole as well

    expect(speak).to_be_enabled()
    speak.click()
    assert spoken(page, 1) == [{"text": sentence, "lang": "en"}]

    page.get_by_label("Show values in").select_option("USD")  # the same coins, another total: announced again
    expect(live).to_have_text(re.compile(r"^2 coins: 1/4 Dollar, 1 Euro; total 1\.\d\d USD;"), timeout=BUSY_TIMEOUT_MS)
    speak.click()
    assert spoken(page, 2)[1]["text"] == live.inner_text()


def test_without_speech_synthesis_the_button_is_disabled_and_says_why(open_page, tmp_path):
    page = open_page(init_script=NO_SPEECH)
    upload(page, photo_files(tmp_path, blue__jpg=coin_picture("blue")))
    expect(page.get_by_role("status")).to_have_text(re.compile(r"^1 coin: 1/4 Dollar; total 0\.25 USD\.$"))
    speak = page.get_by_role("button", name="Speak result")
    expect(speak).to_be_disabled()
    expect(speak).to_have_attribute("title", "Your browser cannot read aloud: it has no speech synthesis.")
    expect(page.locator("#speak-note")).to_have_text("Your browser cannot read aloud: it has no speech synthesis.")
    expect(page.locator("#speak-note")).to_be_visible()


def test_show_why_shows_the_heat_map_of_that_coin_computed_once_when_first_opened(open_page, tmp_path):
    page = open_page()
    explained = []  # callback requests for a heat map
    page.on("request", lambda request: explained.append(request.url)
            if "/_dash-update-component" in request.url and "why-image" in (request.post_data or "") else None)
    upload(page, photo_files(tmp_path, table__jpg=coins_picture(["red", "green", "blue"])))
    toggle = page.get_by_role("button", name="Show why: coin 2 of table.jpg")
    expect(page.locator(".why-toggle")).to_have_count(3)
    expect(toggle).to_have_attribute("aria-expanded", "false")
    panel = page.locator(f"[id='{toggle.get_attribute('aria-controls')}']")
    expect(panel).to_be_hidden()
    assert explained == []  # nothing explained unasked

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    heat_map = panel.get_by_role("img", name="Heat map over coin 2 of table.jpg: where the model saw 1 Euro")
    expect(heat_map).to_be_visible(timeout=30_000)  # the first explanation traces the gradient graph
    assert heat_map.get_attribute("src").startswith("data:image/png;base64,")
    assert heat_map.evaluate("image => [image.naturalWidth, image.naturalHeight]") == [224, 224]
    expect(panel).to_contain_text("made the model say 1 Euro")
    screenshot(page, "show-why.png")

    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "false")
    expect(panel).to_be_hidden()
    toggle.click()
    expect(heat_map).to_be_visible()
    page.wait_for_load_state("networkidle")
    assert len(explained) == 1  # opened twice, computed once
    expect(page.get_by_role("img", name=re.compile("^Heat map"))).to_have_count(1)  # only the coin asked about


def test_speak_and_show_why_work_by_keyboard(open_page, tmp_path):
    page = open_page(init_script=RECORD_SPEECH)
    upload(page, photo_files(tmp_path, blue__jpg=coin_picture("blue")))
    page.get_by_label("Show values in").focus()
    page.keyboard.press("Tab")  # the next stop after the controls: "Speak result"
    expect(page.get_by_role("button", name="Speak result")).to_be_focused()
    page.keyboard.press("Enter")
    assert [utterance["text"] for utterance in spoken(page, 1)] == ["1 coin: 1/4 Dollar; total 0.25 USD."]

    toggle = page.get_by_role("button", name="Show why: coin 1 of blue.jpg")
    for _ in range(10):  # on through the summary and the card to its toggle
        page.keyboard.press("Tab")
        if toggle.evaluate("button => button === document.activeElement"):
            break
    expect(toggle).to_be_focused()
    page.keyboard.press("Space")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(page.get_by_role("img", name=re.compile("^Heat map over coin 1 of blue.jpg"))).to_be_visible(timeout=30_000)


# --- limits checked in the browser, and the grid ---------------------------------------------------------------


def test_a_photo_over_the_per_photo_limit_is_not_sent_and_its_card_says_so(open_page, tmp_path):
    page = open_page()
    sent = []  # the sizes of the callback requests
    page.on("request", lambda request: sent.append(len(request.post_data_buffer or b""))
            if "/_dash-update-component" in request.url else None)
    big = tmp_path / "holiday.jpg"
    big.write_bytes(b"\xff\xd8\xff" + bytes(16 * 2**20 - 3))  # 16 MB: over the server's 15 MB per photo
    photos = [big, *photo_files(tmp_path, quarter__jpg=coin_picture("blue"))]
    upload(page, photos)
    error = page.locator(".error-card")
    expect(error).to_have_count(1)
    expect(error).to_contain_text("holiday.jpg")
    expect(error).to_contain_text("The file is 16 MB; the limit is 15 MB per photo.")
    expect(page.locator(".coin-card h2")).to_contain_text(["1/4 Dollar"])  # the other photo went and was classified
    page.wait_for_load_state("networkidle")
    assert sent and max(sent) < 1_000_000  # the 16 MB never left the browser: only its name and size
    expect(page.locator(".upload-hint")).to_have_text(
        "JPEG, PNG, WebP, GIF or BMP, up to 15 MB each; several coins per photo are fine.")


def test_single_and_multi_coin_photos_share_one_regular_grid_and_long_names_are_cut(open_page, tmp_path):
    page = open_page(width=1280, height=900)  # 3 columns
    long_name = "PXL_20240101_123456789_a_very_long_name_from_a_phone_camera_1477195158.jpg"
    paths = photo_files(tmp_path, a_single__jpg=coin_picture("red"), b_table__jpg=coins_picture(["red", "green", "blue"]),
                        c__jpg=coin_picture("blue"))
    paths[2] = paths[2].rename(tmp_path / long_name)
    upload(page, paths)
    cells = page.locator("#results .result-cell")
    expect(cells).to_have_count(6)  # a_single, the table's overview and its 3 coins, the long name
    page.wait_for_timeout(300)
    boxes = [cells.nth(index).bounding_box() for index in range(6)]
    columns = sorted({round(box["x"]) for box in boxes})
    assert len(columns) == 3, boxes
    assert max(box["width"] for box in boxes) - min(box["width"] for box in boxes) < 1  # equal cells
    for row in (boxes[:3], boxes[3:]):  # two full rows: no lone card, every row lined up and one height
        assert [round(box["x"]) for box in row] == columns
        assert max(box["y"] for box in row) - min(box["y"] for box in row) < 1
        assert max(box["height"] for box in row) - min(box["height"] for box in row) < 1

    name = page.locator(".coin-card .file-name", has_text="PXL_")
    expect(name).to_have_attribute("title", long_name)
    assert name.evaluate("element => element.scrollWidth > element.clientWidth")  # cut, with "…"
    assert name.evaluate("element => getComputedStyle(element).textOverflow") == "ellipsis"
    source = page.locator(".coin-card .coin-source", has_text="PXL_")
    line = source.evaluate("element => parseFloat(getComputedStyle(element).lineHeight)")
    assert source.bounding_box()["height"] < 1.5 * line  # one line: never broken mid-word
    expect(source.locator(".coin-of")).to_be_visible()  # "· coin 1" stays whole beside the cut name
    screenshot(page, "grid-mixed.png")


def test_a_value_too_small_for_a_penny_is_not_shown_as_zero(open_page, tmp_path):
    page = open_page("en-GB")  # values in pounds, from the language
    upload(page, photo_files(tmp_path, cent__jpg=coin_picture("red")))  # 1 Australian cent: £0.0049
    expect(page.get_by_label("Show values in")).to_have_value("GBP")
    expect(page.locator(".converted-value")).to_have_text(["≈ £0.0049"], timeout=RENDER_TIMEOUT_MS)
    expect(page.locator(".total-amount")).to_have_text("£0.0049")
    expect(page.get_by_role("status")).to_have_text("1 coin: 1 Cent; total £0.0049.", timeout=BUSY_TIMEOUT_MS)
