"""How big the deployed app is, compressed as a Heroku slug is: a fresh virtual environment from requirements.txt
alone plus the files the app serves, in one gzipped tar (Heroku refuses a slug over 500 MB compressed).

    python benchmarks/deploy_size.py --json reports/benchmarks/deploy_size.json [--smoke] [--keep DIR]

1. the files the app serves: the repository's tracked files (``git ls-files``) less what ``.slugignore`` leaves
   out (tests, training, benchmarks, reports...), as Heroku leaves them out; the models folder with its cards,
   ``.h5`` files, TFLite copies and kernels;
2. a fresh virtual environment (``python -m venv``, this Python, 3.11) with ``pip install -r requirements.txt``;
3. both in one ``tar -czf`` (gzip's default level 6), and each part on its own; sizes in MB (2^20 bytes).

``--smoke`` then runs benchmarks/deploy_smoke.py with that environment's Python: gunicorn from it serving the page,
the API with both models and "Show why" (exit code 1 when a check fails). ``--keep DIR`` builds in DIR and leaves
it there (default: a temporary folder, removed afterwards).
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 2 ** 20
HEROKU_LIMIT_MB = 500
BAR_MB = 340  # leaves room for the models' full 160 MB budget under Heroku's limit


def slugignore_patterns(root: Path) -> list[str]:
    path = root / ".slugignore"
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def ignored(relative: str, patterns: list[str]) -> bool:
    """Heroku's .slugignore rules, as far as this repository uses them: a leading / anchors at the root, a pattern
    names a file or a folder (everything under it), shell wildcards."""
    parts = relative.split("/")
    for pattern in patterns:
        anchored = pattern.startswith("/")
        pattern = pattern.strip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if anchored and any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes):
            return True
        if not anchored and any(fnmatch.fnmatch(part, pattern) for part in parts):
            return True
    return False


def served_files(root: Path) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    patterns = slugignore_patterns(root)
    return sorted(name for name in listed.decode().split("\0") if name and not ignored(name, patterns)
                  and (root / name).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(path.lstat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def gzipped_bytes(base: Path, *names: str) -> int:
    """Size of ``tar -czf`` of ``names`` under ``base`` (links kept as links, as Heroku's slug keeps them)."""
    with tempfile.NamedTemporaryFile(suffix=".tgz") as archive:
        subprocess.run(["tar", "-C", str(base), "-czf", archive.name, *names], check=True)
        return os.path.getsize(archive.name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requirements", default=str(REPO_ROOT / "requirements.txt"))
    parser.add_argument("--keep", help="build in this folder and keep it (it must not exist)")
    parser.add_argument("--smoke", action="store_true", help="then run benchmarks/deploy_smoke.py in it")
    parser.add_argument("--json", help="write the figures here (reports/benchmarks/deploy_size.json)")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != (3, 11):
        print(f"warning: the pins are for Python 3.11; this is {platform.python_version()}", file=sys.stderr)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="coinspotter-slug-"))
    work.mkdir(parents=True, exist_ok=bool(not args.keep))
    try:
        started = time.monotonic()
        app = work / "app"
        files = served_files(REPO_ROOT)
        for name in files:
            (app / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, app / name)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-cache-dir", "-r",
                                  str(app / "requirements.txt")], capture_output=True, text=True)
        if install.returncode != 0:
            print(install.stdout + install.stderr, file=sys.stderr)
            return 2
        packages = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True,
                                  text=True, check=True).stdout
        site = next((venv / "lib").glob("python3*/site-packages"))
        largest = sorted(((folder_bytes(p) if p.is_dir() else p.stat().st_size, p.name) for p in site.iterdir()),
                         reverse=True)[:8]
        models = app / "web-app" / "models"
        result = {
            "measured_by": "python benchmarks/deploy_size.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "measured_at": time.strftime("%Y-%m-%d %H:%M"),
            "python": platform.python_version(),
            "requirements": Path(args.requirements).name,
            "packages": {p["name"]: p["version"] for p in json.loads(packages)},
            "tensorflow_installed": any(p["name"].lower().startswith("tensorflow") for p in json.loads(packages)),
            "served_files": len(files),
            "uncompressed_mb": {"app": round(folder_bytes(app) / MB, 1), "venv": round(folder_bytes(venv) / MB, 1),
                                "models": round(folder_bytes(models) / MB, 1)},
            "largest_packages_mb": {name: round(size / MB, 1) for size, name in largest},
            "compressed_mb": {
                "app": round(gzipped_bytes(work, "app") / MB, 1),
                "models": round(gzipped_bytes(app / "web-app", "models") / MB, 1),
                "venv": round(gzipped_bytes(work, "venv") / MB, 1),
                "slug": round(gzipped_bytes(work, "app", "venv") / MB, 1),
            },
            "heroku_limit_mb": HEROKU_LIMIT_MB,
            "bar_mb": BAR_MB,
        }
        result["within_bar"] = result["compressed_mb"]["slug"] <= BAR_MB
        result["seconds"] = round(time.monotonic() - started, 1)
        size = result["compressed_mb"]
        print(f"slug (app + fresh venv from {result['requirements']}), tar.gz: {size['slug']} MB "
              f"(venv {size['venv']} MB, app {size['app']} MB of which models {size['models']} MB); "
              f"bar {BAR_MB} MB, Heroku's limit {HEROKU_LIMIT_MB} MB; TensorFlow installed: "
              f"{result['tensorflow_installed']}")
        status = 0 if result["within_bar"] else 1
        if args.smoke:
            smoke_json = work / "smoke.json"
            smoke = subprocess.run([str(python), str(REPO_ROOT / "benchmarks" / "deploy_smoke.py"), "--app", str(app),
                                    "--json", str(smoke_json)])
            result["smoke"] = json.loads(smoke_json.read_text()) if smoke_json.is_file() else {"ok": False}
            status = status or smoke.returncode
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return status
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
