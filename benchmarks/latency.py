"""Per-image latency of the API and of the bare model call, for batches of 1 and 8, and the app's memory.

    python benchmarks/latency.py --photos ../shared/data/coin-images/validation --repeats 20
    python benchmarks/latency.py --photos ../shared/data/coin-images/validation --repeats 20 --explain

Prints a table (median and p95 milliseconds per image) and writes it as JSON with --json. ``--explain`` adds
what a Grad-CAM heat map per coin costs: the API asked with ``explain=1`` (each explain=1 request right after
an explain=0 one with the same photos, so that both meet the same load on a shared machine), the first such
request after the server started (which traces the gradient graph), and the bare heat-map call next to the
bare model call.
"""
from __future__ import annotations

import argparse
import json
import os
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


def post_ms(base: str, chosen: list[Path], fields: dict) -> float:
    """Milliseconds for one API request with the ``chosen`` photos and form ``fields``."""
    files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in chosen]
    started = time.perf_counter()
    response = requests.post(base + "/api/classify", files=files, data=fields, timeout=300)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed


def time_api(base: str, photos: list[Path], batch: int, repeats: int, model: str,
             explain: bool = False) -> list[dict]:
    """One row per way of asking: plain, and with ``explain`` also explain=1 on the same photos in turn."""
    asks = [{"model": model}] + ([{"model": model, "explain": "1"}] if explain else [])
    per_image: list[list[float]] = [[] for _ in asks]
    for repeat in range(repeats):
        chosen = [photos[(repeat * batch + i) % len(photos)] for i in range(batch)]
        for samples, fields in zip(per_image, asks):
            samples.append(post_ms(base, chosen, fields) / batch)
    names = ["API POST /api/classify", "API POST /api/classify explain=1"]
    return [{"what": name, "batch": batch, **percentiles(samples)} for name, samples in zip(names, per_image)]


def time_model(photos: list[Path], batch: int, repeats: int, model: str, explain: bool = False) -> list[dict]:
    """The bare model call per image; with ``explain`` also the bare Grad-CAM call (the heat maps of the
    predicted classes) and the whole explanation (those maps laid over the photos, as PNG data URLs)."""
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
    calls = {"bare model call": call}
    if explain:
        from coinspotter.explain import explainer_for

        explainer = explainer_for(classifier)
        explained = explainer.explained
        inputs = batch_model_input(pictures, explained.card.input_size)
        predicted = [classifier.class_ids[i] for i in classifier.predict_images(pictures).argmax(axis=1)]
        indices = [explained.class_ids.index(class_id) for class_id in predicted]
        calls["bare Grad-CAM call"] = lambda chunk: explainer.grad_cam.heatmaps(inputs[chunk], [indices[i] for i in chunk])
        calls["Grad-CAM + overlay + PNG"] = lambda chunk: explainer.explain([pictures[i] for i in chunk],
                                                                            [predicted[i] for i in chunk])
    rows = []
    for what, timed in calls.items():
        timed(list(range(batch)))  # warm-up (the first Grad-CAM call traces its graph)
        per_image = []
        for repeat in range(repeats):
            chunk = [(repeat * batch + i) % len(pictures) for i in range(batch)]
            started = time.perf_counter()
            timed(chunk)
            per_image.append((time.perf_counter() - started) * 1000 / batch)
        rows.append({"what": what, "batch": batch, **percentiles(per_image)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, type=Path, help="folder of coin photos (searched recursively)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--model", default="student")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--explain", action="store_true", help="also time Grad-CAM explanations (explain=1)")
    args = parser.parse_args()
    photos = pick_photos(args.photos, 64)
    results = {"model": args.model, "photos": str(args.photos), "repeats": args.repeats,
               "load_average_at_start": round(os.getloadavg()[0], 2), "rows": []}
    with running_server() as (base, pid):
        results["server_memory_after_start_mb"] = round(resident_mb(pid), 1)
        if args.explain:  # before any other request: what the first user to ask pays
            results["first_explain_request_ms"] = round(post_ms(base, photos[:1], {"model": args.model, "explain": "1"}), 1)
        for batch in (1, 8):
            results["rows"].extend(time_api(base, photos, batch, args.repeats, args.model, args.explain))
        results["server_memory_after_run_mb"] = round(resident_mb(pid), 1)
    for batch in (1, 8):
        results["rows"].extend(time_model(photos, batch, args.repeats, args.model, args.explain))

    print(f"model {args.model}; {args.repeats} requests per row; per-image milliseconds; "
          f"load average {results['load_average_at_start']} at the start")
    print(f"{'what':<34} {'batch':>5} {'median':>8} {'p95':>8}")
    for row in results["rows"]:
        print(f"{row['what']:<34} {row['batch']:>5} {row['median_ms']:>8} {row['p95_ms']:>8}")
    if args.explain:
        print(f"first explain=1 request after start (one photo): {results['first_explain_request_ms']} ms")
    print(f"server memory: {results['server_memory_after_start_mb']} MB after start, "
          f"{results['server_memory_after_run_mb']} MB after the run (gunicorn master + worker, proportional set size)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
