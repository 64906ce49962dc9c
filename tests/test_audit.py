"""training/audit.py on a tiny made-up data set: exact, near and conflicting duplicates are found."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from coinspotter import dataset
from training import audit

SIZE = 160


def texture(seed: int) -> Image.Image:
    """A random picture with detail at every scale the 16×16 hashes look at (like a coin photo; a very
    smooth picture leaves the hashes' fine bits to noise): unrelated seeds give unrelated hashes."""
    cells = np.random.default_rng(seed).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((SIZE, SIZE), Image.Resampling.BICUBIC)


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def put(root, key: str, data: bytes) -> None:
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("coins")
    photo_a, photo_b, photo_c = jpeg(texture(1)), jpeg(texture(2)), jpeg(texture(3))
    put(root, "train/1/a.jpg", photo_a)
    put(root, "train/1/a_copy.jpg", photo_a)  # exact duplicate within train
    put(root, "train/1/b.jpg", photo_b)
    put(root, "train/2/c.jpg", photo_c)
    put(root, "train/3/c_as_3.jpg", photo_c)  # the same picture under another class: a conflict
    put(root, "train/3/d.jpg", jpeg(texture(4)))
    # the same photograph, smaller and re-encoded harder: a near duplicate with other bytes
    put(root, "validation/1/a_resaved.jpg", jpeg(texture(1).resize((120, 120), Image.Resampling.LANCZOS), 60))
    put(root, "validation/2/clean.jpg", jpeg(texture(5)))
    put(root, "test/1/b_again.jpg", photo_b)  # exact duplicate of a training picture
    put(root, "test/3/clean.jpg", jpeg(texture(6)))
    return root


@pytest.fixture(scope="module")
def report(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("reports")
    result = audit.run_audit(data, out)
    return result, out


def test_near_duplicate_is_within_threshold_and_strangers_are_not(data):
    samples = [s for split in dataset.SPLITS for s in dataset.list_split(data, split)]
    hashes = audit.perceptual_hashes(samples)
    digests = audit.exact_digests(samples, {})
    pairs, histogram = audit.close_pairs(hashes, digests, audit.MAX_BITS)
    distance = {(samples[i].key, samples[j].key): d for i, j, d in pairs}
    assert distance[("train/1/a.jpg", "validation/1/a_resaved.jpg")] <= 30
    unrelated = [d for (a, b), d in distance.items() if a.split("/")[-1][0] != b.split("/")[-1][0]]
    assert min(unrelated) > 100
    assert histogram.sum() == len(pairs)  # every pair of different bytes is counted once


def test_exact_and_near_duplicates_are_not_leak_free(report):
    result, _ = report
    assert result["leak_free"] == {"validation": ["validation/2/clean.jpg"], "test": ["test/3/clean.jpg"]}
    counts = result["counts"]
    assert counts["validation_vs_train"] == {"images": 2, "duplicates": 1, "exact": 0, "near_only": 1}
    assert counts["test_vs_train"] == {"images": 2, "duplicates": 1, "exact": 1, "near_only": 0}
    assert counts["test_vs_validation"]["duplicates"] == 0


def test_conflicting_labels_are_listed_and_dropped_with_redundant_copies(report):
    result, _ = report
    assert result["conflicts"] == [{
        "match": "exact",
        "class_ids": [2, 3],
        "members": [
            {"key": "train/2/c.jpg", "class_id": 2, "label": "2 Cents (Australia)"},
            {"key": "train/3/c_as_3.jpg", "class_id": 3, "label": "5 Cents (Australia)"},
        ],
    }]
    assert result["train_drop_reasons"] == {
        "train/1/a_copy.jpg": "redundant copy",
        "train/2/c.jpg": "conflicting label",
        "train/3/c_as_3.jpg": "conflicting label",
    }
    assert result["counts"]["within_train"]["exact_groups"] == 2  # a + a_copy, c + c_as_3


def test_files_are_written_and_read_back(report, data):
    result, out = report
    for name in ("audit.md", "audit.json", "audit_pairs.png", "audit_distances.png"):
        assert (out / name).stat().st_size > 0
    markdown = (out / "audit.md").read_text(encoding="utf-8")
    assert "`train/3/c_as_3.jpg`" in markdown and "| validation ↔ train | 2 | 1 | 0 | 1 | 1 |" in markdown

    loaded = dataset.read_audit(out / "audit.json")
    assert loaded.leak_free("validation") == {"validation/2/clean.jpg"}
    assert loaded.train_drop == {"train/1/a_copy.jpg", "train/2/c.jpg", "train/3/c_as_3.jpg"}
    kept = loaded.training_samples(dataset.list_split(data, "train"))
    assert [s.key for s in kept] == ["train/1/a.jpg", "train/1/b.jpg", "train/3/d.jpg"]
    assert dataset.leak_free_keys(data, "test", loaded) == {"test/3/clean.jpg"}
    assert dataset.leak_free_keys(data, "test") == {"test/3/clean.jpg"}  # byte rule without an audit


def test_original_hashes_make_differently_stored_copies_exact(tmp_path):
    put(tmp_path, "train/1/x.jpg", jpeg(texture(7), 90))
    put(tmp_path, "validation/1/x_stored_again.jpg", jpeg(texture(7), 80))
    put(tmp_path, "test/1/y.jpg", jpeg(texture(8)))
    rows = ["split\tclass_id\tfilename\tsha256_original"]
    rows += [f"{key.split('/')[0]}\t1\t{key.split('/')[2]}\t{digest}" for key, digest in
             (("train/1/x.jpg", "same"), ("validation/1/x_stored_again.jpg", "same"), ("test/1/y.jpg", "other"))]
    (tmp_path / dataset.HASHES_FILE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = audit.run_audit(tmp_path, tmp_path / "out", pictures=False)
    assert result["counts"]["validation_vs_train"]["exact"] == 1
    assert result["leak_free"]["validation"] == []


def test_read_audit_refuses_other_json(tmp_path):
    path = tmp_path / "audit.json"
    path.write_text(json.dumps({"leak_free": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a coinspotter-audit"):
        dataset.read_audit(path)
