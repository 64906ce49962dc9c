import json
import os
import subprocess
import sys

import pytest

from coinspotter import cli
from coinspotter.config import REPO_ROOT
from helpers import EXPECTED_CLASS, coin_picture, encode, write_model_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_model_dir(tmp_path_factory.mktemp("models"))


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
    cli.main(["classify", "--json", "--model", "ensemble", str(path)])
    line = json.loads(capsys.readouterr().out)
    answer = CoinSpotter().load(warm_up=False).classify([Upload("red.jpg", path.read_bytes())], model="ensemble")
    assert {k: v for k, v in line.items() if k != "path"} == answer["results"][0]


def test_python_dash_m_entry_point(models, photos):
    """The real command, in its own process, as a user would type it."""
    env = {**os.environ, "COINSPOTTER_MODELS_DIR": str(models)}
    completed = subprocess.run(
        [sys.executable, "-m", "coinspotter", "classify", "--model", "nonsense", str(photos)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert completed.returncode == 2 and "invalid choice" in completed.stderr
    completed = subprocess.run(
        [sys.executable, "-m", "coinspotter", "classify", str(photos / "trip" / "day1" / "red.jpg")],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "red.jpg #1: 1 Cent (Australia), 0.01 AUD" in completed.stdout
