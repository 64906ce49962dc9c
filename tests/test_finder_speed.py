"""benchmarks/finder_speed.py --compare: finders timed call for call, so that a machine's drift slows them alike."""
import pytest
from helpers import load_script


@pytest.fixture(scope="module")
def finder_speed():
    return load_script("benchmarks/finder_speed.py")


def test_side_by_side_interleaves_the_finders_photo_by_photo_and_reverses_the_order(finder_speed):
    calls = []
    record = {name: (lambda image, name=name: calls.append((name, image))) for name in ("float", "int8")}
    rows = finder_speed.timed_side_by_side(record, ["photo 1", "photo 2", "photo 3"], repeats=2)
    timed = calls[2:]  # after one warm-up call each
    assert timed[:6] == [("float", "photo 1"), ("int8", "photo 1"), ("int8", "photo 2"), ("float", "photo 2"),
                         ("float", "photo 3"), ("int8", "photo 3")]
    assert len(timed) == 2 * 3 * 2
    assert rows["float"]["calls"] == rows["int8"]["calls"] == 6
    assert rows["float"]["wall_median_ratio_to_first"] == 1.0
    assert rows["int8"]["wall_median_ratio_to_first"] > 0
