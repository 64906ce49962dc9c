"""Start the production server (the Procfile's gunicorn command) on 127.0.0.1 for a benchmark, and read
its memory. Shared by the latency and load benchmarks."""
from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent


def procfile_command() -> list[str]:
    line = next(l for l in (REPO_ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    return shlex.split(line.split(":", 1)[1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def resident_mb(pid: int) -> float:
    """Memory of a process and its children (gunicorn master + workers), in MB.

    Proportional set size: pages the forked worker still shares with the master count once, not twice
    as plain RSS would count them.
    """
    total = 0
    for candidate in [pid] + children(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{candidate}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


def children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found.append(int(child))
            found.extend(children(int(child)))
    return found


@contextlib.contextmanager
def running_server(extra_env: dict | None = None, startup_timeout: float = 180):
    """The Procfile's gunicorn on a free loopback port; yields (base_url, master pid)."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    command = procfile_command()
    # bind to loopback only, whatever the Procfile says for the platform
    command += ["--bind", f"127.0.0.1:{port}"]
    # the server's log (one JSON line per request) for a look afterwards; runs/ is not under version control
    log_path = REPO_ROOT / "runs" / "benchmark-server.log"
    log = open(log_path, "w") if log_path.parent.is_dir() else subprocess.DEVNULL
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(base + "/healthz", timeout=2).ok and workers_ready(process.pid):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            time.sleep(0.5)
        yield base, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not subprocess.DEVNULL:
            log.close()


def workers_ready(pid: int) -> bool:
    # the worker loads the models after forking; it answers /healthz before that, so wait for its memory to settle
    first = resident_mb(pid)
    time.sleep(1.0)
    return bool(children(pid)) and abs(resident_mb(pid) - first) < 5


if __name__ == "__main__":
    sys.exit("import this module; see latency.py and load.py")
