"""Smoke test of the app as deployed: run with the deployed environment's own Python (a fresh virtual environment
from requirements.txt alone, as benchmarks/deploy_size.py --smoke builds it), against a copy of the files the app
serves:

    DIR/venv/bin/python benchmarks/deploy_smoke.py --app DIR/app [--photo PHOTO] [--json OUT]

It checks that TensorFlow cannot be imported there, starts the Procfile's gunicorn from that environment on
127.0.0.1, and asks it for the page, /healthz, the API with both models and explain=1 (Grad-CAM), and the page's
own "Show why" callback through Dash's HTTP route; then reads the server's memory. Exit code 0 when every check
passes. Needs nothing beyond requirements.txt (requests) and the standard library.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

STARTUP_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children (gunicorn master + worker), MB."""
    def children(p):
        try:
            found = [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            return []
        return found + [g for c in found for g in children(c)]

    total = 0
    for candidate in [pid] + children(pid):
        try:
            for line in Path(f"/proc/{candidate}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def default_photo() -> tuple[str, bytes]:
    """A real validation photo where the shared data set is, else a drawn coin."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "data" / "coin-images" / "validation" / "209"
    photos = sorted(shared.glob("*.jpg")) if shared.is_dir() else []
    if photos:
        return photos[0].name, photos[0].read_bytes()
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (300, 300), (240, 240, 240))
    ImageDraw.Draw(picture).ellipse((40, 40, 260, 260), fill=(180, 150, 90), outline=(60, 60, 60), width=4)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG")
    return "drawn-coin.jpg", buffer.getvalue()


def check(results: dict, name: str, ok: bool, detail) -> None:
    results["checks"][name] = {"ok": bool(ok), "detail": detail}
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")


def dash_callback(base: str, dependencies: list, output_part: str, inputs: list, outputs: list) -> dict:
    """Call one of the page's callbacks through Dash's HTTP route, as the browser does."""
    (callback,) = [c for c in dependencies if output_part in c["output"]]
    body = {"output": callback["output"], "outputs": outputs[0] if len(outputs) == 1 else outputs, "inputs": inputs,
            "changedPropIds": [f"{json.dumps(inputs[0]['id'], sort_keys=True, separators=(',', ':'))}."
                               f"{inputs[0]['property']}" if isinstance(inputs[0]["id"], dict)
                               else f"{inputs[0]['id']}.{inputs[0]['property']}"],
            "state": []}
    response = requests.post(f"{base}/_dash-update-component", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["response"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--app", required=True, help="the copy of the files the app serves (deploy_size.py --keep)")
    parser.add_argument("--photo", help="a coin photo to send (default: one from the shared validation set)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    app = Path(args.app).resolve()
    results = {"python": sys.executable, "checks": {}}
    name, photo = (Path(args.photo).name, Path(args.photo).read_bytes()) if args.photo else default_photo()
    results["photo"] = name

    missing = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True)
    check(results, "no TensorFlow in this environment", missing.returncode != 0,
          (missing.stderr.strip().splitlines() or ["importable!"])[-1])

    port = free_port()
    procfile = next(l for l in (app / "Procfile").read_text().splitlines() if l.startswith("web:"))
    command = shlex.split(procfile.split(":", 1)[1])
    command[0] = str(Path(sys.executable).with_name(command[0]))  # the environment's own gunicorn
    command += ["--bind", f"127.0.0.1:{port}"]
    env = {**os.environ, "PORT": str(port), "COINSPOTTER_RATE_PROVIDERS": "none", "COINSPOTTER_RATE_CACHE": "off"}
    log_path = app.parent / "server.log"
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        server = subprocess.Popen(command, cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        health = None
        while time.monotonic() - started < STARTUP_TIMEOUT_S and server.poll() is None:
            try:
                health = requests.get(f"{base}/healthz", timeout=2).json()
                if all(health["models"].values()):
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.5)
        results["startup_seconds"] = round(time.monotonic() - started, 1)
        results["memory_after_start_mb"] = pss_mb(server.pid)
        check(results, "healthz: both models", health == {"status": "ok", "models": {"student": True,
                                                                                      "ensemble": True}}, health)
        page = requests.get(base + "/", timeout=30)
        check(results, "the page", page.status_code == 200 and "Coin Spotter" in page.text, page.status_code)

        for model, explained in (("student", "student"), ("ensemble", "mobilenetv2_deep")):
            response = requests.post(f"{base}/api/classify", files=[("image", (name, photo, "image/jpeg"))],
                                     data={"model": model, "explain": "1", "currency": "EUR"}, timeout=120)
            answer = response.json()
            coins = [r for r in answer.get("results", []) if r.get("ok")]
            ok = (response.status_code == 200 and coins and all(
                r["explanation"].startswith("data:image/png;base64,") and r["explanation_model"] == explained
                for r in coins) and "total" in answer)
            check(results, f"API {model} with explain=1", ok,
                  [f"{r['prediction']['name']} p={r['prediction']['probability']}" for r in coins]
                  or answer.get("error"))

        dependencies = requests.get(f"{base}/_dash-dependencies", timeout=30).json()
        content = "data:image/jpeg;base64," + base64.b64encode(photo).decode()
        batch = {"names": [name], "sizes": [len(photo)], "contents": [content]}
        classified = dash_callback(base, dependencies, "classification.data",
                                   [{"id": "upload-batch", "property": "data", "value": batch},
                                    {"id": "model-switch", "property": "value", "value": "ensemble"},
                                    {"id": "coin-currencies", "property": "value", "value": []}],
                                   [{"id": "classification", "property": "data"}])
        coins = [r for r in classified["classification"]["data"]["results"] if r.get("ok")]
        check(results, "page callback: classify (ensemble)", bool(coins), [r["prediction"]["name"] for r in coins])
        why = {"type": "why-image", "index": 0}
        request = {"name": name, "content": content, "coin": 1, "model": "ensemble", "currencies": None}
        answer = dash_callback(base, dependencies, "why-image",
                               [{"id": {"type": "why-request", "index": 0}, "property": "data", "value": request}],
                               [{"id": why, "property": "src"}, {"id": why, "property": "alt"},
                                {"id": why, "property": "hidden"},
                                {"id": {"type": "why-status", "index": 0}, "property": "children"}])
        key = json.dumps(why, sort_keys=True, separators=(",", ":"))
        image = answer.get(key, {})
        check(results, "page callback: Show why (ensemble)",
              str(image.get("src", "")).startswith("data:image/png;base64,") and image.get("hidden") is False,
              image.get("alt"))
        results["memory_after_requests_mb"] = pss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    results["ok"] = all(c["ok"] for c in results["checks"].values())
    print(f"server memory (PSS, master + worker): {results.get('memory_after_start_mb')} MB after start, "
          f"{results.get('memory_after_requests_mb')} MB after the requests; started in {results['startup_seconds']} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
