"""Command line: ``python -m coinspotter classify [--model student|ensemble] [--top K] [--json] PATH...``"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from .dataset import IMAGE_SUFFIXES

BATCH = 16  # images per classifier call: large enough to batch, small enough to show progress


def image_paths(paths: list[str]) -> list[Path]:
    """Files as given (whatever their suffix: the decoder says what is wrong), folders searched recursively."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def format_line(path: Path, result: dict) -> str:
    if not result["ok"]:
        return f"{path}: error: {result['error']}"
    prediction = result["prediction"]
    flag = "  (not sure)" if result["uncertain"] else ""
    return (
        f"{path} #{result['coin']}: {prediction['name']} ({prediction['country']}), "
        f"{prediction['face_value']} {prediction['currency']}, p={prediction['probability']:.2f}{flag}"
    )


def classify_command(args) -> int:
    from .service import CoinSpotter, RequestError, Upload

    paths = image_paths(args.paths)
    if not paths:
        print("error: no image files found", file=sys.stderr)
        return 2
    spotter = CoinSpotter().load(warm_up=False)
    failures = 0
    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        uploads, unreadable = [], {}
        for path in chunk:
            try:
                uploads.append(Upload(path.name, path.read_bytes()))
            except OSError as error:
                unreadable[path] = f"cannot read the file ({error.strerror or error})"
        try:
            per_upload = spotter.classify_per_upload(uploads, model=args.model, top=args.top)[1] if uploads else []
        except RequestError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        readable = [path for path in chunk if path not in unreadable]
        results_by_path = dict(zip(readable, per_upload))
        for path in chunk:
            results = results_by_path.get(path) or [{"filename": path.name, "ok": False, "error": unreadable[path]}]
            for result in results:
                failures += not result["ok"]
                if args.json:
                    print(json.dumps({"path": str(path), **result}, ensure_ascii=False))
                else:
                    print(format_line(path, result))
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coinspotter", description="Identify coins in photos.")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify images or folders of images")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="an image, or a folder searched recursively")
    classify.add_argument("--model", choices=["student", "ensemble"], default="student")
    classify.add_argument("--top", type=int, default=5, help="how many classes to list per coin (1-20)")
    classify.add_argument("--json", action="store_true", help="print one JSON object per coin")
    classify.set_defaults(handler=classify_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the output
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.handler(args)
