"""The coin-images folder layout: ``<root>/{train,validation,test}/<class_id>/*.jpg`` plus
``cat_to_name.json`` and, in our copy, ``SHA256SUMS-original.tsv`` (hashes of the original bytes).

"Leak-free" validation/test images are those whose original bytes are not identical to any training
image's: the data set was scraped from the web and holds the same file in several splits.
``training/audit.py`` also finds near duplicates (re-encoded, resized or re-cropped copies) and label
conflicts; :func:`read_audit` loads its decisions, and :func:`leak_free_keys` prefers them when given.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif"}
HASHES_FILE = "SHA256SUMS-original.tsv"


@dataclass(frozen=True)
class Sample:
    path: Path
    class_id: int
    split: str

    @property
    def key(self) -> str:
        """split/class/file: how reports and hash tables name a sample."""
        return f"{self.split}/{self.class_id}/{self.path.name}"


def list_split(root: Path | str, split: str) -> list[Sample]:
    base = Path(root) / split
    if not base.is_dir():
        raise FileNotFoundError(f"no {split!r} folder in {root}")
    samples = []
    for class_dir in sorted(base.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not class_dir.is_dir() or not class_dir.name.isdigit():
            continue
        for path in sorted(class_dir.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                samples.append(Sample(path, int(class_dir.name), split))
    return samples


def read_original_hashes(root: Path | str) -> dict[str, str]:
    """sample key -> sha256 of the original bytes, from the data set's hash list (empty if absent)."""
    path = Path(root) / HASHES_FILE
    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {
            f"{row['split']}/{int(row['class_id'])}/{row['filename']}": row["sha256_original"]
            for row in csv.DictReader(handle, delimiter="\t")
        }


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def leak_free(samples: list[Sample], train: list[Sample], hashes: dict[str, str] | None = None) -> list[Sample]:
    """The samples whose bytes (original bytes where the hash list has them) match no training image."""
    hashes = hashes or {}

    def digest(sample: Sample) -> str:
        return hashes.get(sample.key) or file_sha256(sample.path)

    train_digests = {digest(sample) for sample in train}
    return [sample for sample in samples if digest(sample) not in train_digests]


def load_pictures(samples: list[Sample], size: int, desc: str = "decoding") -> "np.ndarray":
    """Decode and letterbox every sample exactly as serving does -> uint8 array (n, size, size, 3).

    Training goes through the same ``imageio.decode_image`` and ``preprocessing.to_model_input`` as
    the server, so a model never sees a picture prepared differently from the ones users send.
    """
    import numpy as np
    from tqdm import tqdm

    from .imageio import decode_image
    from .preprocessing import to_model_input

    pictures = np.zeros((len(samples), size, size, 3), dtype=np.uint8)
    for index, sample in enumerate(tqdm(samples, desc=desc, unit="img", mininterval=2)):
        pictures[index] = to_model_input(decode_image(sample.path.read_bytes()), size).astype(np.uint8)
    return pictures


AUDIT_FORMAT = "coinspotter-audit/1"


@dataclass(frozen=True)
class Audit:
    """What ``training/audit.py`` decided about the data set: which evaluation images are leak-free
    (neither exact nor near duplicates of any training image) and which training images to drop
    (label conflicts and redundant byte-identical copies)."""

    leak_free_keys: dict[str, frozenset[str]]  # split -> sample keys
    train_drop: frozenset[str]
    conflicts: tuple[dict, ...] = ()
    near_duplicate_rule: dict | None = None
    path: Path | None = None

    def leak_free(self, split: str) -> set[str]:
        if split not in self.leak_free_keys:
            raise KeyError(f"the audit {self.path} lists no leak-free {split!r} images")
        return set(self.leak_free_keys[split])

    def training_samples(self, train: list[Sample]) -> list[Sample]:
        """The training samples the audit keeps (one copy per duplicate group, no conflicting labels)."""
        return [sample for sample in train if sample.key not in self.train_drop]


def read_audit(path: Path | str) -> Audit:
    path = Path(path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != AUDIT_FORMAT:
        raise ValueError(f"{path} is not a {AUDIT_FORMAT} file (format {data.get('format')!r})")
    return Audit(
        leak_free_keys={split: frozenset(keys) for split, keys in data["leak_free"].items()},
        train_drop=frozenset(data["train_drop"]),
        conflicts=tuple(data.get("conflicts", ())),
        near_duplicate_rule=data.get("near_duplicate_rule"),
        path=path,
    )


def leak_free_keys(root: Path | str, split: str, audit: Audit | None = None) -> set[str]:
    """Keys of the leak-free ``split`` images: from the audit when there is one, else by the
    byte-identical rule of :func:`leak_free` (which misses re-encoded and resized copies)."""
    if audit is not None:
        return audit.leak_free(split)
    train = list_split(root, "train")
    return {sample.key for sample in leak_free(list_split(root, split), train, read_original_hashes(root))}
