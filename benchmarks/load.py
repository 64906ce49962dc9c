"""Load on the production server: the Procfile's gunicorn on 127.0.0.1, N concurrent clients posting
real coin photos to /api/classify for a bounded time.

    python benchmarks/load.py --photos ../shared/data/coin-images/validation --clients 8 --seconds 60

Reports throughput, p50/p95/p99 latency, errors, and the server's memory (sampled every second) with
its growth from the first to the last quarter of the run. Only loopback is ever contacted.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from latency import pick_photos  # noqa: E402
from server import resident_mb, running_server  # noqa: E402


def client_loop(base: str, photos: list[Path], deadline: float, seed: int, per_request: int, results: list, lock):
    rng = np.random.default_rng(seed)
    session = requests.Session()
    while time.monotonic() < deadline:
        chosen = [photos[int(i)] for i in rng.integers(0, len(photos), per_request)]
        files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in chosen]
        started = time.perf_counter()
        try:
            response = session.post(base + "/api/classify", files=files, timeout=120)
            ok = response.status_code == 200 and all(r["ok"] for r in response.json()["results"])
            status = response.status_code
        except (requests.RequestException, ValueError) as error:
            ok, status = False, type(error).__name__
        with lock:
            results.append({"ms": (time.perf_counter() - started) * 1000, "ok": ok, "status": status})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, type=Path)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--photos-per-request", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.seconds > 600 or args.clients > 64:
        raise SystemExit("bounded on purpose: at most 64 clients for 600 s")
    photos = pick_photos(args.photos, 64)
    results: list[dict] = []
    memory: list[tuple[float, float]] = []
    lock = threading.Lock()
    with running_server() as (base, pid):
        start_mb = resident_mb(pid)
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(target=client_loop, args=(base, photos, deadline, seed, args.photos_per_request, results, lock))
            for seed in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            memory.append((time.monotonic() - started, resident_mb(pid)))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        healthy = requests.get(base + "/healthz", timeout=5).status_code == 200
    latencies = np.array([r["ms"] for r in results]) if results else np.zeros(1)
    errors = [r for r in results if not r["ok"]]
    quarter = max(1, len(memory) // 4)
    first, last = np.mean([m for _, m in memory[:quarter]]), np.mean([m for _, m in memory[-quarter:]])
    report = {
        "clients": args.clients, "seconds": round(elapsed, 1), "photos_per_request": args.photos_per_request,
        "requests": len(results), "errors": len(errors), "error_kinds": sorted({str(e["status"]) for e in errors}),
        "throughput_rps": round(len(results) / elapsed, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 95, 99)},
        "memory_mb": {"after_start": round(start_mb, 1), "peak": round(max(m for _, m in memory), 1),
                      "first_quarter_mean": round(float(first), 1), "last_quarter_mean": round(float(last), 1)},
        "healthy_after": healthy,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not errors and healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
