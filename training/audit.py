"""Audit the coin-images splits for duplicate pictures and conflicting labels.

    python training/audit.py --data /work/shared/data/coin-images --out reports

Exact duplicates share the sha256 of their ORIGINAL bytes (``SHA256SUMS-original.tsv``; the sha256
of the stored file where the list has no row). Near duplicates are the same photograph re-encoded,
resized or re-framed by a pixel or two: each decoded picture gets a 256-bit pHash and a 256-bit dHash (imagehash,
``hash_size=16``), and two pictures are near duplicates when the two Hamming distances add up to at
most ``--max-distance`` (default 30 of 512 bits). Duplicates are joined transitively into groups.

Why these hashes and 30: every coin picture is a bright disc in the middle of the frame, so 64-bit
hashes (``hash_size=8``) put many *different* coins within 4-6 bits of each other. With 16×16 hashes
the non-identical pairs of the real data fall into clear bands of summed distance: 0-13 (≈290 pairs,
the same photograph re-saved), 23-26 (8 pairs, the same UK penny photograph framed slightly differently),
nothing from 27 to 36, then 37 (another photograph of the same Czech coin from a different year) and
a continuum from 43 up (other photographs of a shared design, then unrelated coins). 30 sits in the
empty band. ``audit_pairs.png`` shows the pairs either side of the threshold, so this can be
rechecked by eye whenever the data change; rotated and mirrored copies were checked once
(the 90°/180°/270° turns and the mirror image of every validation and test picture against
training) and none were found, so hashes are taken of the upright picture only.

Limits, measured on 50 validation pictures: re-encoding at quality 40, resizing to 50-75 % and +10 %
brightness move a picture by at most 23, but cutting 4 % off each side moves it by 165 or more, so
cropped copies are NOT found (neither hash is crop-invariant).

Writes to ``--out``:
  audit.md                 counts, conflicts with file names, the threshold and how it was chosen
  audit.json               for ``coinspotter.dataset.read_audit``: leak-free validation/test keys,
                           training keys to drop, conflicts, duplicate groups
  audit_pairs.png          picture pairs just inside and just outside the near-duplicate threshold
  audit_distances.png      how many picture pairs lie at each distance (log scale)

A validation/test picture is leak-free when its duplicate group holds no training picture. Training
drops every picture of a group with conflicting labels (the picture alone cannot tell the classes
apart) and all but the first copy of each byte-identical group (one photograph is one example).
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter import dataset  # noqa: E402
from coinspotter.catalog import load_catalog  # noqa: E402

log = logging.getLogger("audit")

HASH_SIZE = 16  # 16×16 = 256 bits per hash; see the module docstring for why not 8
HASH_KINDS = ("phash", "dhash")
MAX_BITS = len(HASH_KINDS) * HASH_SIZE * HASH_SIZE
PICTURE_MARGIN = 16  # how far past the threshold audit_pairs.png looks for "just outside" pairs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="coin-images folder (train/validation/test)")
    parser.add_argument("--out", default="reports", help="folder for audit.md, audit.json and the pictures")
    parser.add_argument(
        "--max-distance", type=int, default=30,
        help=f"near duplicates: phash + dhash Hamming distance at most this (of {MAX_BITS} bits)",
    )
    parser.add_argument(
        "--dedupe-train", choices=("exact", "near"), default="exact",
        help="drop all but one training copy of each byte-identical group (exact) or of each duplicate group (near)",
    )
    parser.add_argument("--chunk", type=int, default=128, help="rows per block of the pairwise distance search")
    parser.add_argument("--no-pictures", action="store_true", help="skip the PNG files")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- hashing


def exact_digests(samples: list[dataset.Sample], original_hashes: dict[str, str]) -> list[str]:
    """sha256 of each sample's original bytes where the hash list has it, else of the stored file."""
    return [original_hashes.get(sample.key) or dataset.file_sha256(sample.path) for sample in samples]


def perceptual_hashes(samples: list[dataset.Sample]) -> np.ndarray:
    """(n, 2, 4) uint64: the packed pHash and dHash of each picture, decoded as the server decodes it."""
    import imagehash
    from tqdm import tqdm

    from coinspotter.imageio import decode_image

    words = HASH_SIZE * HASH_SIZE // 64
    hashes = np.zeros((len(samples), len(HASH_KINDS), words), dtype=np.uint64)
    for index, sample in enumerate(tqdm(samples, desc="perceptual hashes", unit="img", mininterval=2)):
        picture = decode_image(sample.path.read_bytes())
        for kind, function in enumerate((imagehash.phash, imagehash.dhash)):
            bits = function(picture, hash_size=HASH_SIZE).hash.flatten()
            hashes[index, kind] = np.packbits(bits).view(">u8")
    return hashes


def close_pairs(hashes: np.ndarray, digests: list[str], max_distance: int, chunk: int = 128):
    """Every pair i < j of different bytes within ``max_distance`` -> (pairs (k, 3) [i, j, distance],
    histogram of the distances of ALL such pairs, length MAX_BITS + 1)."""
    from tqdm import tqdm

    codes = np.unique(np.asarray(digests), return_inverse=True)[1]
    count = len(hashes)
    found = []
    histogram = np.zeros(MAX_BITS + 1, dtype=np.int64)
    for start in tqdm(range(0, count, chunk), desc="pairwise distances", unit="block", mininterval=2):
        rows = np.arange(start, min(start + chunk, count))
        distance = np.bitwise_count(hashes[rows, None] ^ hashes[None, start:]).sum(axis=(2, 3), dtype=np.int32)
        columns = np.arange(start, count)
        wanted = (columns[None, :] > rows[:, None]) & (codes[rows, None] != codes[None, start:])
        histogram += np.bincount(distance[wanted], minlength=MAX_BITS + 1)
        row_at, column_at = np.nonzero(wanted & (distance <= max_distance))
        found.append(np.stack([rows[row_at], columns[column_at], distance[row_at, column_at]], axis=1))
    pairs = np.concatenate(found) if found else np.zeros((0, 3), dtype=np.int64)
    return pairs[np.argsort(pairs[:, 2], kind="stable")], histogram


class DisjointSets:
    def __init__(self, size: int):
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self.parent[max(root_a, root_b)] = min(root_a, root_b)


# ----------------------------------------------------------------------------------------- the audit


def duplicate_groups(digests: list[str], near_pairs: np.ndarray) -> list[list[int]]:
    """Indices joined by identical bytes or a near-duplicate pair (transitively), groups of 2 or more."""
    sets = DisjointSets(len(digests))
    first_with_digest: dict[str, int] = {}
    for index, digest in enumerate(digests):
        sets.union(first_with_digest.setdefault(digest, index), index)
    for i, j, _ in near_pairs:
        sets.union(int(i), int(j))
    members = defaultdict(list)
    for index in range(len(digests)):
        members[sets.find(index)].append(index)
    return [group for group in members.values() if len(group) > 1]


def sample_order(sample: dataset.Sample) -> tuple:
    """train, validation, test; then class and file name: how people read the lists."""
    return dataset.SPLITS.index(sample.split), sample.class_id, sample.path.name


def build_audit(samples: list[dataset.Sample], digests: list[str], near_pairs: np.ndarray, dedupe_train: str) -> dict:
    """The decisions and counts of the audit (everything in audit.json but the provenance)."""
    catalog = load_catalog()
    groups = duplicate_groups(digests, near_pairs)
    group_of = {index: number for number, group in enumerate(groups) for index in group}
    indices_in = {split: [i for i, s in enumerate(samples) if s.split == split] for split in dataset.SPLITS}

    def shares_group_with(index: int, splits: set[str]) -> bool:
        """Whether a duplicate of picture ``index`` lies in one of ``splits``."""
        return index in group_of and any(samples[i].split in splits for i in groups[group_of[index]] if i != index)

    def match(group) -> str:
        return "exact" if len({digests[i] for i in group}) == 1 else "near"

    def ordered(group) -> list[int]:
        return sorted(group, key=lambda i: sample_order(samples[i]))

    conflicting = [group for group in groups if len({samples[i].class_id for i in group}) > 1]
    conflict_members = {i for group in conflicting for i in group}

    # Training pictures to drop: conflicts, then every copy but the first (of byte-identical or of all duplicates).
    drop = {samples[i].key: "conflicting label" for i in indices_in["train"] if i in conflict_members}
    copies = defaultdict(list)
    for index in indices_in["train"]:
        if index not in conflict_members:
            near = dedupe_train == "near" and index in group_of
            copies[("group", group_of[index]) if near else ("bytes", digests[index])].append(index)
    drop.update({samples[i].key: "redundant copy" for members in copies.values() for i in members[1:]})

    def overlap(split: str, other: str) -> dict:
        """How many ``split`` pictures duplicate an ``other`` picture, byte-identically or only nearly."""
        other_digests = {digests[i] for i in indices_in[other]}
        shared = [i for i in indices_in[split] if shares_group_with(i, {other})]
        exact = [i for i in shared if digests[i] in other_digests]
        return {"images": len(indices_in[split]), "duplicates": len(shared), "exact": len(exact),
                "near_only": len(shared) - len(exact)}

    leak_free = {
        split: sorted(samples[i].key for i in indices_in[split] if not shares_group_with(i, {"train"}))
        for split in ("validation", "test")
    }
    train_digests = Counter(digests[i] for i in indices_in["train"])
    train_groups = [[i for i in group if samples[i].split == "train"] for group in groups]
    train_groups = [group for group in train_groups if len(group) > 1]
    train_kept = Counter(samples[i].class_id for i in indices_in["train"] if samples[i].key not in drop)
    train_classes = sorted({samples[i].class_id for i in indices_in["train"]})
    counts = {
        "images": {split: len(indices) for split, indices in indices_in.items()},
        "unique_original_bytes": len(set(digests)),
        "near_duplicate_pairs": int(len(near_pairs)),
        "duplicate_groups": len(groups),
        "within_train": {
            "exact_groups": sum(1 for n in train_digests.values() if n > 1),
            "exact_redundant_copies": sum(n - 1 for n in train_digests.values() if n > 1),
            "groups": len(train_groups),
            "groups_with_near_duplicates": sum(1 for group in train_groups if match(group) == "near"),
        },
        "validation_vs_train": overlap("validation", "train"),
        "test_vs_train": overlap("test", "train"),
        "test_vs_validation": overlap("test", "validation"),
        "leak_free": {split: len(keys) for split, keys in leak_free.items()},
        "test_free_of_train_and_validation": sum(
            1 for i in indices_in["test"] if not shares_group_with(i, {"train", "validation"})
        ),
        "conflict_groups": len(conflicting),
        "conflict_groups_exact": sum(1 for group in conflicting if match(group) == "exact"),
        "train_drop": dict(Counter(drop.values())),
        "train_kept": sum(train_kept.values()),
        "train_kept_per_class_min": min((train_kept[c] for c in train_classes), default=0),
    }

    def member(index: int) -> dict:
        sample = samples[index]
        label = {"label": catalog[sample.class_id].label} if sample.class_id in catalog else {}
        return {"key": sample.key, "class_id": sample.class_id, **label}

    conflicts = [
        {"match": match(group), "class_ids": sorted({samples[i].class_id for i in group}),
         "members": [member(i) for i in ordered(group)]}
        for group in sorted(conflicting, key=lambda g: (sorted({samples[i].class_id for i in g}), ordered(g)))
    ]
    return {
        "counts": counts,
        "leak_free": leak_free,
        "train_drop": sorted(drop),
        "train_drop_reasons": dict(sorted(drop.items())),
        "train_classes_below_5_after_drop": {str(c): train_kept[c] for c in train_classes if train_kept[c] < 5},
        "conflicts": conflicts,
        "groups": [
            {"match": match(group), "keys": [samples[i].key for i in ordered(group)]}
            for group in sorted(groups, key=lambda g: sample_order(samples[ordered(g)[0]]))
        ],
    }


# ----------------------------------------------------------------------------------------- reports


def write_markdown(audit: dict, path: Path) -> None:
    counts, rule = audit["counts"], audit["near_duplicate_rule"]
    images, within, dropped = counts["images"], counts["within_train"], counts["train_drop"]
    lines = [
        "# Data audit: duplicates and label conflicts",
        "",
        f"Made by `{audit['command']}` on {audit['created']}.",
        "",
        f"Images: train {images['train']}, validation {images['validation']}, test {images['test']}; "
        f"{counts['unique_original_bytes']} distinct original byte strings.",
        "",
        "**Exact duplicate**: same sha256 of the original bytes. **Near duplicate**: the same photograph "
        "re-encoded, resized or re-framed by a pixel or two (cropped copies are not found: the hashes are not "
        f"crop-invariant): pHash + dHash Hamming distance ≤ {rule['max_distance']} of {rule['bits']} bits "
        f"(imagehash, hash_size {rule['hash_size']}). Duplicates are grouped transitively. "
        f"{counts['near_duplicate_pairs']} near-duplicate pairs with different bytes; "
        f"{counts['duplicate_groups']} duplicate groups in all.",
        "",
        "## Overlap between splits",
        "",
        "| | images | duplicates | of which exact | near only | leak-free |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, key, free in (
        ("validation ↔ train", "validation_vs_train", counts["leak_free"].get("validation")),
        ("test ↔ train", "test_vs_train", counts["leak_free"].get("test")),
        ("test ↔ validation", "test_vs_validation", None),
    ):
        row = counts[key]
        lines.append(
            f"| {name} | {row['images']} | {row['duplicates']} | {row['exact']} | {row['near_only']} | "
            f"{'' if free is None else free} |"
        )
    lines += [
        "",
        "Test images that duplicate neither a training nor a validation image: "
        f"{counts['test_free_of_train_and_validation']}.",
        "",
        "## Within train",
        "",
        f"- Byte-identical groups: {within['exact_groups']} ({within['exact_redundant_copies']} redundant copies).",
        f"- Duplicate groups including near duplicates: {within['groups']} "
        f"({within['groups_with_near_duplicates']} of them hold copies that are not byte-identical).",
        f"- Dropped from training: {', '.join(f'{why}: {n}' for why, n in sorted(dropped.items())) or 'none'}; "
        f"{counts['train_kept']} training images kept (fewest in one class: {counts['train_kept_per_class_min']}).",
    ]
    low = audit["train_classes_below_5_after_drop"]
    if low:
        listed = ", ".join(f"{c} ({n})" for c, n in low.items())
        lines.append(f"- Classes left with fewer than 5 training images: {listed}.")
    lines += [
        "",
        f"## Conflicting labels: {counts['conflict_groups']} groups ({counts['conflict_groups_exact']} byte-identical)",
        "",
        "The same picture under different class ids: mostly a side the coins share (an obverse with the "
        "country's arms or the monarch), which the picture alone cannot tell apart.",
        "",
        "| # | match | classes | files |",
        "|---:|---|---|---|",
    ]
    for number, conflict in enumerate(audit["conflicts"], 1):
        labels = {m["class_id"]: m.get("label", "") for m in conflict["members"]}
        classes = "; ".join(f"{c} {labels[c]}" for c in conflict["class_ids"])
        files = "<br>".join(f"`{m['key']}`" for m in conflict["members"])
        lines.append(f"| {number} | {conflict['match']} | {classes} | {files} |")
    lines += ["", "## Threshold", "", rule["justification"], ""]
    bands = rule["distance_bands"]
    lines += ["| phash + dhash distance | pairs of different bytes |", "|---|---:|"]
    lines += [f"| {band} | {n} |" for band, n in bands.items()]
    lines += ["", "![pairs around the threshold](audit_pairs.png)", "", "![distances](audit_distances.png)", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def distance_bands(histogram: np.ndarray, max_distance: int) -> dict[str, int]:
    """Pairs of different bytes counted in bands of distance around the threshold."""
    edges = sorted({max_distance // 2, max_distance, max_distance + PICTURE_MARGIN // 2, max_distance + PICTURE_MARGIN,
                    64, 96, 128})
    bands, low = {}, 0
    for high in edges:
        bands[f"{low}-{high}"] = int(histogram[low : high + 1].sum())
        low = high + 1
    return bands


def boundary_pairs(pairs: np.ndarray, max_distance: int, per_side: int = 10, per_distance: int = 2):
    """Near pairs with the largest distances and non-near pairs with the smallest, a few per distance."""

    def take(candidates):
        chosen, used = [], Counter()
        for i, j, distance in candidates:
            if used[distance] < per_distance:
                chosen.append((int(i), int(j), int(distance)))
                used[distance] += 1
            if len(chosen) == per_side:
                break
        return chosen

    inside = take(pairs[pairs[:, 2] <= max_distance][::-1])
    outside = take(pairs[pairs[:, 2] > max_distance])
    return inside, outside


def draw_boundary_pairs(samples, pairs, max_distance: int, path: Path, thumb: int = 112, columns: int = 4) -> None:
    """A contact sheet of the pairs either side of the threshold, small enough to keep in the repo."""
    from PIL import Image, ImageDraw, ImageFont

    inside, outside = boundary_pairs(pairs, max_distance, per_side=2 * columns)
    font = ImageFont.load_default(size=10)
    cell_width, caption, heading = 2 * thumb + 16, 38, 22
    sections = [
        (f"near duplicates (distance <= {max_distance}): should be the same photograph", "#b00000", inside),
        (f"distinct (distance > {max_distance}): should be different photographs", "#006000", outside),
    ]
    height = sum(heading + (len(chosen) + columns - 1) // columns * (thumb + caption) for _, _, chosen in sections)
    sheet = Image.new("RGB", (columns * cell_width, height), "white")
    draw = ImageDraw.Draw(sheet)
    top = 0
    for title, colour, chosen in sections:
        draw.text((4, top + 5), title, fill=colour, font=ImageFont.load_default(size=13))
        top += heading
        for number, (i, j, distance) in enumerate(chosen):
            x, y = number % columns * cell_width, top + number // columns * (thumb + caption)
            draw.text((x + 4, y), f"distance {distance}", fill=colour, font=font)
            for line, index in enumerate((i, j)):
                draw.text((x + 4, y + 11 + 11 * line), samples[index].key[:44], fill="black", font=font)
                picture = Image.open(samples[index].path).convert("RGB")
                picture.thumbnail((thumb, thumb))
                sheet.paste(picture, (x + 4 + line * (thumb + 4), y + caption))
        top += (len(chosen) + columns - 1) // columns * (thumb + caption)
    sheet.save(path, optimize=True)


def draw_distance_histogram(histogram: np.ndarray, max_distance: int, path: Path, shown: int = 160) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 3.6))
    distances = np.arange(shown + 1)
    axis.bar(distances, np.maximum(histogram[: shown + 1], 0), width=1.0, color="tab:blue", log=True)
    axis.axvline(max_distance + 0.5, color="tab:red", linestyle="--", label=f"threshold ≤ {max_distance}")
    axis.set_xlabel(f"pHash + dHash Hamming distance (of {MAX_BITS} bits)")
    axis.set_ylabel("pairs of pictures with different bytes")
    axis.set_title("Near duplicates sit left of the gap; different photographs to the right")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# ----------------------------------------------------------------------------------------- main


def run_audit(data: Path | str, out: Path | str, max_distance: int = 30, dedupe_train: str = "exact",
              chunk: int = 128, pictures: bool = True, command: str | None = None) -> dict:
    data, out = Path(data), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if not (data / "train").is_dir():
        raise FileNotFoundError(f"no train folder in {data}")
    splits = [split for split in dataset.SPLITS if (data / split).is_dir()]
    samples = [sample for split in splits for sample in dataset.list_split(data, split)]
    original_hashes = dataset.read_original_hashes(data)
    log.info("%d images in %s; original-byte hashes for %d of them", len(samples), ", ".join(splits),
             sum(s.key in original_hashes for s in samples))
    digests = exact_digests(samples, original_hashes)
    hashes = perceptual_hashes(samples)
    pairs, histogram = close_pairs(hashes, digests, max_distance + PICTURE_MARGIN, chunk)
    near_pairs = pairs[pairs[:, 2] <= max_distance]
    audit = {"format": dataset.AUDIT_FORMAT}
    audit.update(build_audit(samples, digests, near_pairs, dedupe_train))
    audit["near_duplicate_rule"] = {
        "hashes": list(HASH_KINDS),
        "hash_size": HASH_SIZE,
        "bits": MAX_BITS,
        "max_distance": max_distance,
        "picture": "coinspotter.imageio.decode_image of the stored file, upright only",
        "distance_bands": distance_bands(histogram, max_distance),
        "justification": (
            "Every coin picture is a bright disc in the middle of the frame, so 64-bit hashes put many different "
            "coins within a few bits of each other; 16×16 hashes separate them. The table counts pairs of pictures "
            "with different bytes by summed distance: the same photograph re-saved or resized lies far left, "
            "other photographs of the same design start well above the threshold. audit_pairs.png shows the pairs "
            "nearest the threshold on both sides; check it by eye when the data or the threshold change."
        ),
    }
    audit["command"] = command or "python training/audit.py " + shlex.join(["--data", str(data), "--out", str(out)])
    audit["created"] = time.strftime("%Y-%m-%d %H:%M")
    audit["data"] = str(data)
    (out / "audit.json").write_text(json.dumps(audit, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_markdown(audit, out / "audit.md")
    if pictures:
        draw_boundary_pairs(samples, pairs, max_distance, out / "audit_pairs.png")
        draw_distance_histogram(histogram, max_distance, out / "audit_distances.png")
    log.info("audit written to %s in %.0f s", out, time.perf_counter() - started)
    return audit


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = "python training/audit.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    audit = run_audit(args.data, args.out, args.max_distance, args.dedupe_train, args.chunk,
                      pictures=not args.no_pictures, command=command)
    log.info("counts %s", json.dumps(audit["counts"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
