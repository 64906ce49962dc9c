"""Per-image latency of the API and of the bare model call, for batches of 1 and 8, and the app's memory.

    python benchmarks/latency.py --photos ../shared/data/coin-images/validation --repeats 20

Prints a table (median and p95 milliseconds per image) and writes it as JSON with --json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from server import resident_mb, running_server  # noqa: E402

from coinspotter.dataset import IMAGE_SUFFIXES  # noqa: E402


def pick_photos(folder: Path, count: int) -> list[Path]:
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise SystemExit(f"no photos under {folder}")
    step = max(1, len(photos) // count)
    return photos[::step][:count]


def percentiles(samples_ms: list[float]) -> dict:
    return {"median_ms": round(statistics.median(samples_ms), 1), "p95_ms": round(float(np.percentile(samples_ms, 95)), 1)}


def time_api(base: str, photos: list[Path], batch: int, repeats: int, model: str) -> dict:
    per_image = []
    for repeat in range(repeats):
        chosen = [photos[(repeat * batch + i) % len(photos)] for i in range(batch)]
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in chosen]
        started = time.perf_counter()
        response = requests.post(base + "/api/classify", files=files, data={"model": model}, timeout=120)
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        per_image.append(elapsed / batch)
    return percentiles(per_image)


def time_model(photos: list[Path], batch: int, repeats: int, model: str) -> dict:
    from coinspotter.imageio import decode_image
    from coinspotter.inference import ModelRegistry
    from coinspotter.config import Settings
    from coinspotter.preprocessing import batch_model_input

    registry = ModelRegistry(Settings.from_env().models_dir)
    classifier = registry.get(model)
    pictures = [decode_image(p.read_bytes()) for p in photos]
    if hasattr(classifier, "predict_arrays"):
        arrays = batch_model_input(pictures, classifier.card.input_size)
        call = lambda chunk: classifier.predict_arrays(arrays[chunk])  # noqa: E731  (the bare model call)
    else:
        call = lambda chunk: classifier.predict_images([pictures[i] for i in chunk])  # noqa: E731
    call(list(range(batch)))  # warm-up
    per_image = []
    for repeat in range(repeats):
        chunk = [(repeat * batch + i) % len(pictures) for i in range(batch)]
        started = time.perf_counter()
        call(chunk)
        per_image.append((time.perf_counter() - started) * 1000 / batch)
    return percentiles(per_image)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, type=Path, help="folder of coin photos (searched recursively)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", default="student")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    photos = pick_photos(args.photos, 64)
    results = {"model": args.model, "photos": str(args.photos), "repeats": args.repeats, "rows": []}
    with running_server() as (base, pid):
        results["server_memory_after_start_mb"] = round(resident_mb(pid), 1)
        for batch in (1, 8):
            results["rows"].append({"what": "API POST /api/classify", "batch": batch, **time_api(base, photos, batch, args.repeats, args.model)})
        results["server_memory_after_run_mb"] = round(resident_mb(pid), 1)
    for batch in (1, 8):
        results["rows"].append({"what": "bare model call", "batch": batch, **time_model(photos, batch, args.repeats, args.model)})

    print(f"model {args.model}; {args.repeats} requests per row; per-image milliseconds")
    print(f"{'what':<26} {'batch':>5} {'median':>8} {'p95':>8}")
    for row in results["rows"]:
        print(f"{row['what']:<26} {row['batch']:>5} {row['median_ms']:>8} {row['p95_ms']:>8}")
    print(f"server memory: {results['server_memory_after_start_mb']} MB after start, "
          f"{results['server_memory_after_run_mb']} MB after the run (gunicorn master + worker, proportional set size)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
