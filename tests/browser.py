"""Real headless Chromium (Debian's /usr/bin/chromium) driven by Playwright: used by the browser tests
and, from the command line, to take the README's screenshot of a running app:

    python tests/browser.py --url http://127.0.0.1:8050 --out reports/screenshots/page.png PHOTO...
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
from pathlib import Path

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
# No background traffic: this machine's network is closed, and a test must reach only 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


INSTALL_CHROMIUM = "sudo apt-get install chromium chromium-driver fonts-noto-color-emoji"  # Debian, Ubuntu
REQUIRE_BROWSER = "COINSPOTTER_REQUIRE_BROWSER"  # "1" (CI): a missing browser fails the browser tests


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, naming what to install; None when they can."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return ("browser tests need Playwright, which is not installed: pip install -r requirements-dev.txt "
                f"(and Chromium: {INSTALL_CHROMIUM})")
    if not Path(CHROMIUM).exists():
        return (f"browser tests need Chromium, not found at {CHROMIUM}: {INSTALL_CHROMIUM} "
                "(or set CHROMIUM_PATH to a Chromium binary; Playwright's own browser download is not used)")
    return None


def chromium_available() -> bool:
    return browser_missing() is None


@contextlib.contextmanager
def chromium():
    """A headless Chromium; each ``browser.new_context(locale=...)`` in it is a fresh profile (own localStorage)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900, **context_options):
    with chromium() as browser:
        context = browser.new_context(viewport={"width": width, "height": height}, **context_options)
        yield context.new_page()


def upload(page, paths: list[str | Path], timeout_ms: int = 60_000) -> None:
    """Hand files to the page's upload zone and wait until the results are drawn."""
    page.locator("#upload input[type=file]").set_input_files([str(p) for p in paths])
    page.wait_for_selector(".summary-card, #results .alert", timeout=timeout_ms)
    page.wait_for_load_state("networkidle")


def main() -> int:
    parser = argparse.ArgumentParser(description="Screenshot of the page after uploading photos.")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--out", default="reports/screenshots/page.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with browser_page(args.width, args.height) as page:
        page.goto(args.url)
        upload(page, args.photos)
        page.wait_for_timeout(500)  # let Plotly finish drawing the charts
        page.screenshot(path=args.out, full_page=True)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
