"""Runtime settings, read from the environment once so that every entry point (page, API, CLI) agrees."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODELS_DIR = REPO_ROOT / "web-app" / "models"
MB = 1024 * 1024  # "MB" in settings and messages is 2**20 bytes, as phones and file managers count


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{name}={value!r} must be at least 1")
    return number


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def megabytes(count: int) -> str:
    """``15728640`` -> ``"15 MB"``, ``26214400 + 1`` -> ``"25.0 MB"``: whole numbers only where exact."""
    return f"{count // MB} MB" if count % MB == 0 else f"{count / MB:.1f} MB"


@dataclass(frozen=True)
class Limits:
    """What one request may carry. Enforced by the server, whatever the browser already checked."""

    max_bytes_per_file: int = 15 * MB  # phone photos are 2-8 MB; HEIC-to-JPEG exports rarely pass 12 MB
    max_pixels: int = 60_000_000  # checked from the header: every phone's full-size photo (50 MP sensors) fits
    max_files: int = 20  # per request
    max_request_bytes: int = 64 * MB  # the whole body (the page sends base64, so it carries ~3/4 of this in photos)

    def __post_init__(self):
        for field in fields(self):
            if getattr(self, field.name) < 1:
                raise ValueError(f"limit {field.name} must be at least 1")


@dataclass(frozen=True)
class Settings:
    models_dir: Path
    limits: Limits
    uncertain_below: float  # top probability under which a prediction is shown as "not sure"
    # Photos one process decodes and searches at the same time: a 60 MP photo holds ~0.2-0.5 GB while it is
    # decoded and converted, so this (not the number of request threads) bounds the memory uploads can take.
    # Two keeps both cores of a small box busy; more only queue behind them.
    images_at_once: int = 2

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
            images_at_once=_int_env("COINSPOTTER_IMAGES_AT_ONCE", cls.images_at_once),
        )
