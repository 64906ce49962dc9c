"""Every script in benchmarks/ and training/ imports: a module moved or renamed breaks no script silently (their
figures are made by hand, outside the tests)."""
import pytest
from helpers import load_script

from coinspotter.config import REPO_ROOT

SCRIPTS = sorted(str(path.relative_to(REPO_ROOT)) for folder in ("benchmarks", "training")
                 for path in (REPO_ROOT / folder).glob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_script_imports(script):
    module = load_script(script)
    assert callable(getattr(module, "main", None)) or module.__doc__


@pytest.mark.parametrize("by", ["flag", "environment"])
def test_the_synthetic_scene_benchmark_measures_the_finder_it_is_given(tmp_path, monkeypatch, capsys, by):
    # an empty folder has no finder: the benchmark must say so, not measure the bundled one in its place
    scenes = load_script("benchmarks/localiser_scenes.py")
    elsewhere = tmp_path / "no_finder_here"
    elsewhere.mkdir()
    argv = ["--data", str(tmp_path), "--localiser", "finder"]
    if by == "flag":
        argv += ["--finder-dir", str(elsewhere)]
    else:
        monkeypatch.setenv("COINSPOTTER_FINDER_DIR", str(elsewhere))
    assert scenes.main(argv) == 1
    assert "cannot be loaded" in capsys.readouterr().err
