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
