"""What a newcomer's test run says when the browser tests cannot run, and what CI makes of it: each browser test
skipped with the reason naming what to install (and a line at the end saying so), or, under
COINSPOTTER_REQUIRE_BROWSER=1 as .ci/run sets it, each one failed."""
import os
import subprocess
import sys

from coinspotter.config import REPO_ROOT


def browser_tests_without_chromium(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_browser.py"],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
                          env={**os.environ, "CHROMIUM_PATH": "/nonexistent/chromium", **env})


def test_without_chromium_each_browser_test_is_skipped_saying_what_to_install():
    completed = browser_tests_without_chromium(COINSPOTTER_REQUIRE_BROWSER="0")
    assert completed.returncode == 0, completed.stdout[-2000:]
    count = int(completed.stdout.rsplit(" skipped", 1)[0].rsplit("\n", 1)[-1].split()[-1])
    assert count > 20  # one skip per test, not one for the module
    assert f"{count} browser tests did not run" in completed.stdout
    assert "sudo apt-get install chromium chromium-driver fonts-noto-color-emoji" in completed.stdout
    assert "SKIPPED [" in completed.stdout  # listed in the short summary too (-ra)


def test_ci_fails_rather_than_skips_when_chromium_is_missing():
    completed = browser_tests_without_chromium(COINSPOTTER_REQUIRE_BROWSER="1")
    assert completed.returncode != 0
    assert "COINSPOTTER_REQUIRE_BROWSER=1: the browser tests must run here" in completed.stdout
    assert " skipped" not in completed.stdout.splitlines()[-1]
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "export COINSPOTTER_REQUIRE_BROWSER=1" in ci and "pip install -q -r requirements-dev.txt" in ci
