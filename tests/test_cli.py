import json
import os
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from coinspotter import cli
from coinspotter.config import REPO_ROOT
from coinspotter.rates import load_snapshot
from helpers import EXPECTED_CLASS, coin_picture, encode, write_model_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_model_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(autouse=True)
def offline_rates(monkeypatch):
    """Conversions from the bundled snapshot, nothing cached on disk (subprocesses inherit this too)."""
    monkeypatch.setenv("COINSPOTTER_RATE_PROVIDERS", "none")
    monkeypatch.setenv("COINSPOTTER_RATE_CACHE", "off")


@pytest.fixture()
def photos(tmp_path):
    nested = tmp_path / "trip" / "day1"
    nested.mkdir(parents=True)
    (nested / "red.jpg").write_bytes(encode(coin_picture("red")))
    (tmp_path / "trip" / "green.png").write_bytes(encode(coin_picture("green"), "PNG"))
    (tmp_path / "trip" / "readme.txt").write_text("not a photo")  # skipped in folders: not an image suffix
    (tmp_path / "broken.jpg").write_bytes(b"")
    return tmp_path


def test_json_lines_for_a_folder_searched_recursively(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    status = cli.main(["classify", "--json", "--top", "3", str(photos / "trip")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [os.path.basename(line["path"]) for line in lines] == ["red.jpg", "green.png"]
    assert [line["prediction"]["class_id"] for line in lines] == [EXPECTED_CLASS["red"], EXPECTED_CLASS["green"]]
    assert all(len(line["top"]) == 3 and line["ok"] for line in lines)


def test_a_bad_file_is_reported_and_the_exit_code_says_so(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    status = cli.main(["classify", str(photos / "broken.jpg"), str(photos / "trip" / "green.png"), str(photos / "missing.jpg")])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[0].endswith("broken.jpg: error: The file is empty.")
    assert "green.png #1: 1 Euro (Euro area), 1 EUR, p=" in out[1]
    assert "missing.jpg: error: cannot read the file" in out[2]


def test_cli_and_api_agree_on_the_same_file(models, photos, monkeypatch, capsys):
    from coinspotter.service import CoinSpotter, Upload

    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    path = photos / "trip" / "day1" / "red.jpg"
    cli.main(["classify", "--json", "--model", "ensemble", "--currency", "JPY", str(path)])
    line, total = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    answer = CoinSpotter().load(warm_up=False).classify([Upload("red.jpg", path.read_bytes())], model="ensemble",
                                                        currency="JPY")
    assert {k: v for k, v in line.items() if k != "path"} == answer["results"][0]
    assert total == {"total": answer["total"]}


def test_currency_adds_converted_values_and_a_total_line(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    snapshot = load_snapshot()
    red_in_eur = Decimal("0.01") * snapshot.rates["EUR"] / snapshot.rates["AUD"]
    total = (red_in_eur + 1).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    status = cli.main(["classify", "--currency", "eur", str(photos / "trip")])

    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert "red.jpg #1: 1 Cent (Australia), 0.01 AUD ≈ €0.01, p=" in out[0]
    assert "green.png #1: 1 Euro (Euro area), 1 EUR ≈ €1.00, p=" in out[1]
    assert out[2:] == [f"Total: €{total} (offline rates as of {snapshot.date.isoformat()})"]


def test_a_value_too_small_for_a_penny_is_not_printed_as_zero(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    status = cli.main(["classify", "--currency", "GBP", str(photos / "trip" / "day1" / "red.jpg")])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert "red.jpg #1: 1 Cent (Australia), 0.01 AUD ≈ £0.0049, p=" in out[0]  # 1 Australian cent in pounds
    assert out[1].startswith("Total: £0.0049 (offline rates")


def test_currency_with_json_ends_with_the_total_object(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))

    status = cli.main(["classify", "--json", "--currency", "USD", str(photos / "broken.jpg"), str(photos / "trip")])

    lines = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert status == 1  # broken.jpg failed; the others are converted all the same
    assert [line.get("converted", {}).get("currency") for line in lines[:3]] == [None, "USD", "USD"]
    assert lines[2]["converted"] == {"currency": "USD", "amount": lines[2]["converted"]["amount"],
                                     "formatted": "$" + lines[2]["converted"]["amount"]}
    assert set(lines[3]) == {"total"} and lines[3]["total"]["currency"] == "USD"
    assert lines[3]["total"]["rates"]["offline"] is True and lines[3]["total"]["rates"]["provider"] == "snapshot"


@pytest.mark.parametrize("option, code, message", [
    ("--currency", "EURO", "'EURO' is not a currency code"),
    ("--currency", "XAU", "XAU is not a currency values can be shown in"),
    ("--currencies", "XAU", "currencies: no coin of XAU is in the catalog"),
    ("--currencies", "EUR,EURO", "'EURO' is not a currency code"),
    ("--currencies", "GBP", "model 'student' knows no coin of GBP"),  # none in the tiny model
])
def test_a_bad_currency_is_a_usage_error(models, photos, monkeypatch, capsys, option, code, message):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    assert cli.main(["classify", option, code, str(photos / "trip")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err


def test_currencies_keeps_only_the_chosen_currencies(models, photos, monkeypatch, capsys):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    red = str(photos / "trip" / "day1" / "red.jpg")  # 1 Cent (AUD) to the model
    assert cli.main(["classify", "--json", "--currencies", "usd", red]) == 0
    (line,) = [json.loads(text) for text in capsys.readouterr().out.splitlines()]
    assert line["prediction"]["name"] == "1/4 Dollar" and [entry["currency"] for entry in line["top"]] == ["USD"]
    assert line["uncertain"] is True and line["currencies_probability"] < 0.01  # unlike a dollar to the model

    assert cli.main(["classify", "--currencies", "EUR,USD", str(photos / "trip" / "green.png")]) == 0
    assert "green.png #1: 1 Euro (Euro area), 1 EUR, p=1.00" in capsys.readouterr().out


def test_a_currency_no_source_can_price_is_reported_after_the_coins(models, photos, monkeypatch, capsys, tmp_path):
    snapshot = tmp_path / "snapshot.json"  # lists no AUD; and no provider is configured
    snapshot.write_text(json.dumps({"source": "test", "date": "2024-12-31", "base": "USD", "rates": {"EUR": "0.9"}}))
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    monkeypatch.setenv("COINSPOTTER_RATE_SNAPSHOT", str(snapshot))

    status = cli.main(["classify", "--currency", "EUR", str(photos / "trip")])

    captured = capsys.readouterr()
    assert status == 1
    assert "red.jpg #1: 1 Cent (Australia), 0.01 AUD, p=" in captured.out and "Total" not in captured.out
    assert "error: Values cannot be shown in EUR right now. No exchange rate for AUD" in captured.err


def test_python_dash_m_entry_point(models, photos):
    """The real command, in its own process, as a user would type it."""
    env = {**os.environ, "COINSPOTTER_MODELS_DIR": str(models)}
    completed = subprocess.run(
        [sys.executable, "-m", "coinspotter", "classify", "--model", "nonsense", str(photos)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert completed.returncode == 2 and "invalid choice" in completed.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "coinspotter", "classify", "--currency", "AUD",
         str(photos / "trip" / "day1" / "red.jpg")],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "red.jpg #1: 1 Cent (Australia), 0.01 AUD ≈ A$0.01" in completed.stdout
    assert "Total: A$0.01 (offline rates as of " in completed.stdout


def test_the_libraries_log_lines_stay_off_stderr_unless_verbose(models, photos):
    """TensorFlow's, oneDNN's and LiteRT's own lines (written by native code straight to descriptor 2) are kept off
    the terminal; ``--verbose`` shows them, with which model file was loaded; an error of ours still shows."""
    env = {**os.environ, "COINSPOTTER_MODELS_DIR": str(models)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    photo = str(photos / "trip" / "day1" / "red.jpg")

    def run(*options):
        return subprocess.run([sys.executable, "-m", "coinspotter", "classify", *options, photo],
                              capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120)

    quiet = run()
    assert quiet.returncode == 0 and "red.jpg #1: 1 Cent" in quiet.stdout
    assert quiet.stderr == ""
    verbose = run("--verbose")
    assert verbose.returncode == 0 and verbose.stdout == quiet.stdout
    assert "INFO coinspotter.inference: loaded student from" in verbose.stderr
    failing = run("--currency", "XAU")
    assert failing.returncode == 2 and failing.stderr.startswith("error: XAU is not a currency values can be shown in")


def test_explain_writes_one_heat_map_per_coin_into_a_new_folder(models, photos, monkeypatch, capsys, tmp_path):
    from PIL import Image

    from helpers import coins_picture

    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    (photos / "again").mkdir()
    (photos / "again" / "red.jpg").write_bytes(encode(coin_picture("blue")))  # the same name in another folder
    (photos / "three coins <x>.jpg").write_bytes(encode(coins_picture(["red", "green", "blue"])))
    out = tmp_path / "out" / "why"  # neither exists yet
    status = cli.main(["classify", "--json", "--explain", str(out), str(photos / "trip" / "day1" / "red.jpg"),
                       str(photos / "again" / "red.jpg"), str(photos / "three coins <x>.jpg"), str(photos / "broken.jpg")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 1  # broken.jpg
    written = [line.get("explanation_path") for line in lines]
    assert [os.path.basename(path) for path in written[:-1]] == [
        "red-coin1.png", "red-2-coin1.png", "three_coins_x-coin1.png", "three_coins_x-coin2.png",
        "three_coins_x-coin3.png"]
    assert written[-1] is None and not any("explanation" in line for line in lines)  # no picture as text
    assert sorted(path.name for path in out.iterdir()) == sorted(os.path.basename(path) for path in written[:-1])
    pictures = [Image.open(path) for path in written[:-1]]
    assert all(picture.format == "PNG" and picture.size == (224, 224) for picture in pictures)

    status = cli.main(["classify", "--explain", str(out), str(photos / "trip" / "green.png")])
    assert status == 0
    assert f"green.png #1: 1 Euro (Euro area), 1 EUR, p=1.00  [heat map: {out / 'green-coin1.png'}]" \
        in capsys.readouterr().out


def test_explain_never_writes_through_a_link_out_of_its_folder(models, photos, monkeypatch, tmp_path):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    out, precious = tmp_path / "why", tmp_path / "precious.txt"
    out.mkdir()
    precious.write_text("keep me")
    (out / "green-coin1.png").symlink_to(precious)  # a trap left at the name the heat map will get
    assert cli.main(["classify", "--explain", str(out), str(photos / "trip" / "green.png")]) == 0
    assert precious.read_text() == "keep me"
    assert not (out / "green-coin1.png").is_symlink() and (out / "green-coin1.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(path.name for path in out.iterdir()) == ["green-coin1.png"]  # no temporary file left


def test_explain_into_a_folder_that_cannot_be_written_is_a_usage_error(models, photos, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("COINSPOTTER_MODELS_DIR", str(models))
    a_file = tmp_path / "taken"
    a_file.write_text("a file, not a folder")
    status = cli.main(["classify", "--explain", str(a_file / "why"), str(photos / "trip" / "green.png")])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert captured.err == f"error: cannot write heat maps to {a_file / 'why'}: Not a directory\n"


def test_a_total_with_no_sure_coin_says_so_rather_than_zero():
    from coinspotter.cli import format_total

    rates = {"label": "offline rates as of 2024-12-31", "attribution": None}
    assert format_total({"formatted": "$0.00", "coins": 0, "rates": rates}, some_not_sure=True) == \
        "Total: no coin is sure enough to count (offline rates as of 2024-12-31)"
    assert format_total({"formatted": "$1.25", "coins": 2, "rates": rates}, some_not_sure=True) == \
        "Total of the sure coins: $1.25 (offline rates as of 2024-12-31)"
    assert format_total({"formatted": "$1.25", "coins": 2, "rates": rates}) == "Total: $1.25 (offline rates as of 2024-12-31)"


def test_a_coin_the_finder_doubts_is_flagged_so_in_the_listing():
    prediction = {"name": "1 Euro", "country": "Spain", "currency": "EUR", "face_value": "1", "probability": 0.93}
    result = {"ok": True, "coin": 2, "prediction": prediction, "uncertain": True}
    assert cli.format_line(Path("heap.jpg"), result).endswith("p=0.93  (not sure)")
    assert cli.format_line(Path("heap.jpg"), {**result, "maybe_not_a_coin": True}).endswith(
        "p=0.93  (not sure: maybe not a coin)")
    assert "not sure" not in cli.format_line(Path("heap.jpg"), {**result, "uncertain": False})
