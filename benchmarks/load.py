"""Load on the production server: the Procfile's gunicorn on 127.0.0.1, N concurrent clients posting
real coin photos to /api/classify for a bounded time.

    python benchmarks/load.py --photos ../shared/data/coin-images/validation --clients 8 --seconds 60

Reports throughput, p50/p95/p99 latency of the requests, failed requests (transport errors and non-200
answers: the pass/fail figure), photos the service answered with an error (no coin found: an answer, not a
failure), and the server's memory (proportional set size, sampled every second) with its growth from the
first to the last quarter of the run. The clients run on the same machine as the server and take some of
its CPU; the machine's load average before the run is reported, so that a busy machine shows. Only
loopback is ever contacted.
"""
from __future__ import annotations

import argparse
import json
import os
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


def client_loop(base: str, photos: list[tuple[str, bytes]], deadline: float, seed: int, per_request: int,
                results: list, lock: threading.Lock) -> None:
    """Post ``per_request`` random photos at a time until ``deadline``; one record per request. Never raises:
    a client that died silently would make the server look faster than it is."""
    rng = np.random.default_rng(seed)
    session = requests.Session()
    while time.monotonic() < deadline:
        files = [("image", (name, data, "image/jpeg"))
                 for name, data in (photos[int(i)] for i in rng.integers(0, len(photos), per_request))]
        started = time.perf_counter()
        record = {"ok": False, "status": None, "files_failed": 0}
        try:
            response = session.post(base + "/api/classify", files=files, timeout=120)
            record["status"] = response.status_code
            if response.status_code == 200:
                record["files_failed"] = response.json()["summary"]["files_failed"]
                record["ok"] = True
        except Exception as error:  # noqa: BLE001  (transport error, bad JSON...: a failed request, counted)
            record["status"] = type(error).__name__
        record["ms"] = (time.perf_counter() - started) * 1000
        with lock:
            results.append(record)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", required=True, type=Path, help="folder of coin photos (searched recursively)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--photos-per-request", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if not (0 < args.seconds <= 600 and 0 < args.clients <= 64 and 0 < args.photos_per_request <= 20):
        raise SystemExit("bounded on purpose: 1-64 clients, up to 600 s, 1-20 photos per request")
    # read once: the clients share the server's CPU, so they should spend none of it on the disk
    photos = [(path.name, path.read_bytes()) for path in pick_photos(args.photos, 64)]
    load_before = os.getloadavg()
    results: list[dict] = []
    memory: list[float] = []
    lock = threading.Lock()
    with running_server() as (base, pid):
        start_mb = resident_mb(pid)
        started = time.monotonic()
        deadline = started + args.seconds
        threads = [
            threading.Thread(target=client_loop, args=(base, photos, deadline, seed, args.photos_per_request,
                                                       results, lock), daemon=True)
            for seed in range(args.clients)
        ]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            memory.append(resident_mb(pid))
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        memory.append(resident_mb(pid))
        healthy = requests.get(base + "/healthz", timeout=5).status_code == 200
    failed = [r for r in results if not r["ok"]]
    latencies = np.array([r["ms"] for r in results] or [0.0])
    quarter = max(1, len(memory) // 4)
    report = {
        "clients": args.clients, "seconds": round(elapsed, 1), "photos_per_request": args.photos_per_request,
        "cpu_cores": os.cpu_count(), "load_average_before": [round(value, 2) for value in load_before],
        "requests": len(results),
        "failed_requests": len(failed), "failure_kinds": sorted({str(r["status"]) for r in failed}),
        "photos_answered_with_an_error": sum(r["files_failed"] for r in results),
        "throughput_rps": round(len(results) / elapsed, 2),
        "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 1) for q in (50, 95, 99)},
        "memory_mb": {"after_start": round(start_mb, 1), "peak": round(max(memory), 1),
                      "first_quarter_mean": round(float(np.mean(memory[:quarter])), 1),
                      "last_quarter_mean": round(float(np.mean(memory[-quarter:])), 1)},
        "healthy_after": healthy,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if not failed and healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
