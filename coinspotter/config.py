"""Runtime settings, read from the environment once so that every entry point (page, API, CLI) agrees."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "web-app" / "models"


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class Limits:
    """What one upload may be. Enforced by the server, whatever the browser already checked."""

    max_bytes_per_file: int = 15 * 1024 * 1024  # phone photos are 2-8 MB; HEIC-to-JPEG exports rarely pass 12 MB
    max_pixels: int = 60_000_000  # a 200 MP sensor is ~ 200e6; 60e6 covers every phone at full size
    max_files: int = 20  # per request
    max_request_bytes: int = 64 * 1024 * 1024  # the whole multipart body


@dataclass(frozen=True)
class Settings:
    models_dir: Path
    limits: Limits
    uncertain_below: float  # top probability under which a prediction is shown as "not sure"

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            models_dir=Path(os.environ.get("COINSPOTTER_MODELS_DIR", DEFAULT_MODELS_DIR)),
            limits=Limits(
                max_bytes_per_file=_int_env("COINSPOTTER_MAX_FILE_BYTES", Limits.max_bytes_per_file),
                max_pixels=_int_env("COINSPOTTER_MAX_PIXELS", Limits.max_pixels),
                max_files=_int_env("COINSPOTTER_MAX_FILES", Limits.max_files),
                max_request_bytes=_int_env("COINSPOTTER_MAX_REQUEST_BYTES", Limits.max_request_bytes),
            ),
            uncertain_below=_float_env("COINSPOTTER_UNCERTAIN_BELOW", 0.5),
        )
