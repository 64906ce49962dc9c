"""benchmarks/plot_finder_stages.py draws the reports it is given, and says clearly when one is not a report."""
import json

import pytest
from PIL import Image

from helpers import load_script


@pytest.fixture(scope="module")
def plot_stages():
    return load_script("benchmarks/plot_finder_stages.py")


def figures(recall, precision, count_exact):
    return {"recall": recall, "precision": precision, "count_exact": count_exact}


def write_report(path, finder, hough=(0.8, 0.9, 0.6)):
    results = {"hough": {"all": figures(*hough)},
               "finder": {"all": figures(*finder), "source: heaps": figures(*[value - 0.1 for value in finder])}}
    path.write_text(json.dumps({"results": results}))
    return path


def test_hough_comes_first_then_each_stage_in_the_order_given(plot_stages, tmp_path):
    first = write_report(tmp_path / "a.json", (0.9, 0.95, 0.7))
    second = write_report(tmp_path / "b.json", (0.95, 0.96, 0.75), hough=(0.1, 0.1, 0.1))
    rows = plot_stages.read_rows([f"{first}:stage 1", f"{second}:stage 2"], "heaps")
    assert [row["label"] for row in rows] == ["Hough", "stage 1", "stage 2"]
    assert rows[0]["all"]["recall"] == 0.8 and rows[0]["source"] is None  # the first report's Hough, not the second's
    assert rows[2]["all"]["count_exact"] == 0.75 and rows[2]["source"]["count_exact"] == pytest.approx(0.65)


def test_it_writes_a_picture(plot_stages, tmp_path):
    report = write_report(tmp_path / "a.json", (0.9, 0.95, 0.7))
    out = tmp_path / "plots" / "stages.png"
    assert plot_stages.main(["--reports", f"{report}:stage 1", "--source", "heaps", "--out", str(out)]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG" and picture.width > picture.height


@pytest.mark.parametrize("spec", ["no-label.json", "{missing}:stage 1", "{not_a_report}:stage 1",
                                  "{no_finder}:stage 1"])
def test_a_bad_report_is_a_clear_error(plot_stages, tmp_path, spec):
    (tmp_path / "not_a_report.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "no_finder.json").write_text(json.dumps({"results": {"hough": {"all": figures(1, 1, 1)}}}))
    spec = spec.format(missing=tmp_path / "missing.json", not_a_report=tmp_path / "not_a_report.json",
                       no_finder=tmp_path / "no_finder.json")
    with pytest.raises(SystemExit, match="FILE:LABEL|not a coin_scenes.py report"):
        plot_stages.read_rows([spec], "heaps")
