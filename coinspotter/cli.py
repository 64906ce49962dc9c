"""Command line: ``python -m coinspotter classify [--model M] [--top K] [--currency CODE] [--currencies CODES] [--json]
[--explain DIR] PATH...``"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .config import Limits
from .dataset import IMAGE_SUFFIXES

BATCH = 16  # images per classifier call: large enough to batch, small enough to show progress
MAX_STEM_CHARS = 80  # of a photo's name, in its heat map's file name


class Unreadable(Exception):
    """A path that gives no bytes to classify; the message says why, for that path's line."""


def read_photo(path: Path, limits: Limits) -> bytes:
    """The bytes of one photo, never more than the per-file limit plus one: a huge file, a device or a pipe
    named by mistake costs no more memory or time than a large photo. Unreadable, with the reason, otherwise."""
    from .imageio import ImageError, check_file_size

    if path.exists() and not path.is_file():  # /dev/zero, a fifo...: reading would never end
        raise Unreadable("not a regular file")
    try:
        check_file_size(path.stat().st_size, limits)
        with path.open("rb") as file:
            data = file.read(limits.max_bytes_per_file + 1)  # +1: a file that grew since stat() is still caught
        check_file_size(len(data), limits)
    except ImageError as error:
        raise Unreadable(str(error)) from None
    except OSError as error:
        raise Unreadable(f"cannot read the file ({error.strerror or error})") from None
    return data


def shown(path: Path) -> str:
    """``path`` for a terminal line: control characters escaped, so a file name cannot move the cursor or recolour
    the terminal (``--json`` output is escaped by JSON itself)."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in str(path))


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
        return f"{shown(path)}: error: {result['error']}"
    prediction = result["prediction"]
    flag = ""
    if result["uncertain"]:
        flag = "  (not sure: maybe not a coin)" if result.get("maybe_not_a_coin") else "  (not sure)"
    converted = f" ≈ {result['converted']['formatted']}" if "converted" in result else ""
    heat_map = f"  [heat map: {shown(Path(result['explanation_path']))}]" if "explanation_path" in result else ""
    return (
        f"{shown(path)} #{result['coin']}: {prediction['name']} ({prediction['country']}), "
        f"{prediction['face_value']} {prediction['currency']}{converted}, p={prediction['probability']:.2f}{flag}"
        f"{heat_map}"
    )


def format_total(total: dict, some_not_sure: bool = False) -> str:
    """``Total: €1.50 (offline rates as of 2024-12-31)``, and the provider's credit where its terms ask for one.
    ``some_not_sure``: "Total of the sure coins: ...", as the not-sure ones are left out of it."""
    label = "Total of the sure coins" if some_not_sure else "Total"
    if some_not_sure and total.get("coins") == 0:  # "$0.00" would read as coins worth nothing
        line = f"Total: no coin is sure enough to count ({total['rates']['label']})"
    else:
        line = f"{label}: {total['formatted']} ({total['rates']['label']})"
    attribution = total["rates"]["attribution"]
    return line + (f"\n  {attribution['text']}: {attribution['url']}" if attribution else "")


def format_not_sure(lines, conversion: dict) -> str | None:
    """The coins the model is not sure of, apart from the total: ``Not sure, not in the total: 1 coin
    (a.jpg #2); they could add €0.50``; None when every coin is sure."""
    doubtful = [(path, result) for path, result in lines if result.get("ok") and result["uncertain"]]
    if not doubtful:
        return None
    which = ", ".join(f"{shown(path)} #{result['coin']}" for path, result in doubtful)
    line = f"Not sure, not in the total: {len(doubtful)} coin{'' if len(doubtful) == 1 else 's'} ({which})"
    could = conversion.get("not_sure")
    return line + (f"; they could add {could['formatted']}" if could else "")


class ExplanationFolder:
    """Where ``--explain DIR`` writes one PNG per coin: ``<photo name>-coin<n>.png``, the name reduced to letters,
    digits, ``.``, ``_`` and ``-`` (no separator, no leading dot: nothing lands outside DIR or hidden), and made
    unique within the run (two ``IMG_1.jpg`` from two folders). Each file is written beside its final name and
    renamed onto it, so a link already standing at that name is replaced, never followed out of DIR."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()

    @classmethod
    def create(cls, folder: Path) -> "ExplanationFolder":
        """DIR made (with its parents) and checked writable; OSError, with the reason, when it cannot be."""
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):  # writable now, not half-way through
            pass
        return cls(folder)

    def file_name(self, path: Path, coin: int) -> str:
        stem = re.sub(r"[^\w.-]+", "_", path.stem).strip("._-")[:MAX_STEM_CHARS] or "photo"
        name, copy = f"{stem}-coin{coin}.png", 1
        while name in self.used:
            copy += 1
            name = f"{stem}-{copy}-coin{coin}.png"
        self.used.add(name)
        return name

    def write(self, path: Path, result: dict) -> Path:
        from .explain import png_bytes

        target = self.folder / self.file_name(path, result["coin"])
        descriptor, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(png_bytes(result["explanation"]))
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        return target

    def written(self, lines: Iterator[tuple[Path, dict]]) -> Iterator[tuple[Path, dict]]:
        """``lines`` with each coin's heat map written to a file: its ``explanation`` (a data URL) becomes the
        ``explanation_path``, so that no picture is held longer than its batch or printed as text."""
        for path, result in lines:
            if "explanation" in result:
                result = {**result, "explanation_path": str(self.write(path, result))}
                del result["explanation"]
            yield path, result


def classified(spotter, paths: list[Path], model: str, top: int, explain: bool = False,
               currencies: list[str] | None = None) -> Iterator[tuple[Path, dict]]:
    """(path, result) for every coin found and every file that failed, in path order, BATCH files per model call;
    ``currencies``: the "Coins from" hint (``CoinSpotter.classify_per_upload``)."""
    from .service import Upload, display_filename

    for start in range(0, len(paths), BATCH):
        chunk = paths[start : start + BATCH]
        uploads, unreadable = [], {}
        for path in chunk:
            try:
                uploads.append(Upload(path.name, read_photo(path, spotter.settings.limits)))
            except Unreadable as error:
                unreadable[path] = str(error)
        per_upload = iter(spotter.classify_per_upload(uploads, model=model, top=top, explain=explain,
                                                      currencies=currencies)[1] if uploads else [])
        for path in chunk:  # the same path given twice gets its own results twice
            if path in unreadable:
                yield path, spotter.error_result(display_filename(path.name), unreadable[path])
            else:
                yield from ((path, result) for result in next(per_upload))


def classify_command(args) -> int:
    from .service import CoinSpotter, RequestError, coin_currencies, conversion_currency

    paths = image_paths(args.paths)
    if not paths:
        print("error: no image files found", file=sys.stderr)
        return 2
    try:
        currency = conversion_currency(args.currency) if args.currency else None
        currencies = coin_currencies(args.currencies)
        spotter = CoinSpotter()
    except (RequestError, ValueError) as error:  # a mistyped --currency, --currencies or COINSPOTTER_* setting
        print(f"error: {error}", file=sys.stderr)
        return 2
    heat_maps = None
    if args.explain is not None:
        try:
            heat_maps = ExplanationFolder.create(Path(args.explain))
        except OSError as error:
            print(f"error: cannot write heat maps to {shown(Path(args.explain))}: {error.strerror or error}",
                  file=sys.stderr)
            return 2
    spotter.load(warm_up=False)
    lines = classified(spotter, paths, args.model, args.top, explain=heat_maps is not None, currencies=currencies)
    if heat_maps is not None:
        lines = heat_maps.written(lines)
    conversion = {}
    failures = 0
    try:
        if currency:
            # every coin first, so that all values and their total come from one rate table
            lines = list(lines)
            conversion = spotter.convert([result for _, result in lines], currency)
        seen = []
        for path, result in lines:
            seen.append((path, result))
            failures += not result["ok"]
            if args.json:
                print(json.dumps({"path": str(path), **result}, ensure_ascii=False))
            else:
                print(format_line(path, result))
    except RequestError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a heat map could not be written (the disk filled, DIR was taken away...)
        print(f"error: cannot write a heat map to {shown(Path(args.explain))}: {error.strerror or error}",
              file=sys.stderr)
        return 2
    if args.json and conversion:
        print(json.dumps(conversion, ensure_ascii=False))
    elif not args.json:
        if "total" in conversion:
            print(format_total(conversion["total"], "not_sure" in conversion))
        doubt = format_not_sure(seen, conversion)
        if doubt:
            print(doubt)
    if "rates_error" in conversion:
        print(f"error: {conversion['rates_error']}", file=sys.stderr)
    return 1 if failures or "rates_error" in conversion else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m coinspotter", description="Identify coins in photos.")
    commands = parser.add_subparsers(dest="command", required=True)
    classify = commands.add_parser("classify", help="classify images or folders of images")
    classify.add_argument("paths", nargs="+", metavar="PATH", help="an image, or a folder searched recursively")
    classify.add_argument("--model", choices=["student", "ensemble"], default="student")
    classify.add_argument("--top", type=int, default=5, help="how many classes to list per coin (1-20)")
    classify.add_argument("--json", action="store_true",
                          help="print one JSON object per coin (and, with --currency, a last one with the total)")
    classify.add_argument("--currency", metavar="CODE",
                          help="also show each value in this currency (EUR, USD, JPY...) and the total")
    classify.add_argument("--currencies", metavar="CODES",
                          help='"coins from": the coins are of these currencies only (EUR or EUR,USD); the model\'s '
                               "probabilities are renormalised over their classes. Default: any currency")
    classify.add_argument("--explain", metavar="DIR",
                          help="write a Grad-CAM heat map of each coin's predicted class into DIR (created), "
                               "one PNG per coin: <photo>-coin<n>.png")
    classify.add_argument("--verbose", action="store_true",
                          help="also show the log lines of TensorFlow and LiteRT, and which model files were loaded "
                               "(without it, only warnings and errors of Coin Spotter's own)")
    classify.set_defaults(handler=classify_command)
    return parser


@contextlib.contextmanager
def native_logs_silenced():
    """Keep what native libraries write straight to file descriptor 2 off the terminal: TensorFlow's and oneDNN's
    start-up lines (absl logs them before ``TF_CPP_MIN_LOG_LEVEL`` is read) and LiteRT's "Created TensorFlow Lite
    XNNPACK delegate". Descriptor 2 points at /dev/null meanwhile, while Python's own ``sys.stderr`` (our error
    lines, warnings, a traceback) keeps writing where it did: to a copy of the real descriptor when it was the
    terminal, or to whatever a caller put there (a test's capture)."""
    try:
        sys.stderr.flush()
        python_on_fd2 = sys.stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):
        python_on_fd2 = False
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    previous = sys.stderr
    try:
        os.dup2(null, 2)
        if python_on_fd2:
            sys.stderr = open(os.dup(saved), "w", encoding=previous.encoding, errors="backslashreplace",
                              buffering=1)
        yield
    finally:
        if sys.stderr is not previous:
            sys.stderr.close()
            sys.stderr = previous
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return args.handler(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's own start-up chatter, where it listens
    with native_logs_silenced():
        root, handler = logging.getLogger(), None
        if not root.handlers:  # what basicConfig would do, with a handler taken away again before its stream closes
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
            root.setLevel(logging.WARNING)
        try:
            return args.handler(args)
        finally:
            if handler is not None:
                root.removeHandler(handler)
