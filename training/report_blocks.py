"""What the measuring scripts (benchmarks/compact.py, training/prune.py) share: their data arguments, and
rewriting their own block of the README so that one command regenerates a table wherever it is shown."""
from __future__ import annotations

import argparse
from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def add_data_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--card, --data, --real-photos and --audit, defaulting to the served student and the shared data."""
    parser.add_argument("--card", default="web-app/models/student.json", help=f"model card of the .h5 to {what}")
    parser.add_argument("--data", default=str(SHARED_DATA / "coin-images"), help="coin-images folder")
    parser.add_argument("--real-photos", default=str(SHARED_DATA / "real-photos-dev"), help="real-photos-dev folder")
    parser.add_argument("--audit", default="reports/audit.json", help="audit.json (leak-free lists)")


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def rewrite_block(readme: Path, name: str, lines: list[str]) -> None:
    """Replace what stands between the ``<!-- name:begin -->`` and ``<!-- name:end -->`` lines of ``readme``."""
    begin, end = markers(name)
    text = readme.read_text(encoding="utf-8")
    if begin not in text or end not in text:
        raise SystemExit(f"{readme} has no {begin} ... {end} block to rewrite")
    head, rest = text.split(begin, 1)
    readme.write_text(head + "\n".join([begin, "", *lines, "", end]) + rest.split(end, 1)[1], encoding="utf-8")


def publish(readme: str | None, name: str, intro: str, lines: list[str]) -> int:
    """Print a script's table and summary, and put them in the README's ``name`` block when asked; exit code 0."""
    print("\n".join(lines))
    if readme:
        rewrite_block(Path(readme), name, [intro, "", *lines])
    return 0
