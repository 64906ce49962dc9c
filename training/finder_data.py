"""The coin finder's training data: coin-scenes/train read and split, coin faces and close-ups cut, synthetic
scenes rendered, targets encoded, pictures augmented, and the batches of an epoch (``Samples``).

Used by ``train_finder.py`` (its docstring tells what ``train`` does with each) and by the benchmarks that hold out
the same photos (``split_train_photos``).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter.finder import INPUT_SIDE, PAD_VALUE, STRIDE  # noqa: E402
from coinspotter.synthetic import MIN_VISIBLE_SHARE  # noqa: E402

HOLD_OUT_EVERY = 5
FACE_SIDE = 96  # cut-outs kept at this size in memory


def read_scene_boxes(folder: Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """``{file: [boxes]}`` of a coin-scenes part (an empty list for a photo without coins)."""
    photos: dict[str, list] = {}
    with open(folder / "boxes.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            boxes = photos.setdefault(row["file"], [])
            if row["x0"]:
                boxes.append(tuple(float(row[key]) for key in ("x0", "y0", "x1", "y1")))
    return photos


def split_train_photos(photos: dict) -> tuple[list[str], list[str]]:
    """(training files, held-out files): every HOLD_OUT_EVERY-th photo of each source, by name, is held out."""
    by_source = defaultdict(list)
    for name in sorted(photos):
        by_source[Path(name).name.split("__")[0]].append(name)
    train, held = [], []
    for names in by_source.values():
        for index, name in enumerate(names):
            (held if index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1 else train).append(name)
    return train, held


def write_split(work: Path, photos: dict) -> tuple[list[str], list[str]]:
    """``split_train_photos`` of ``photos``, also written to WORK/split.json (what ``tune`` reads the held-out from)."""
    train, held = split_train_photos(photos)
    (work / "split.json").write_text(json.dumps({"train": train, "held_out": held}, indent=1))
    return train, held


def load_faces(coin_images: Path | None, real_photos: Path | None, count: int, rng: np.random.Generator):
    from tqdm import tqdm

    from coinspotter.localize import Circle, split_faces
    from coinspotter.synthetic import cutout_from_picture, face_from_crop, resized_cutout

    faces = []
    if real_photos is not None:
        files = sorted((real_photos / "images").glob("*.jpg"))
        files = [path for path in files if not path.name.startswith("casa0018")]  # whole photos, not crops
        for path in tqdm(files, desc="faces from real photos", file=sys.stdout, mininterval=5):
            margin = 0.02 if path.name.startswith(("kaa", "sahz05", "iapr")) else 0.08
            faces.append(resized_cutout(face_from_crop(Image.open(path).convert("RGB"), margin), FACE_SIDE))
    if coin_images is not None:
        files = sorted((coin_images / "train").glob("*/*.jpg"))
        chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
        for index in tqdm(chosen, desc="faces from catalogue", file=sys.stdout, mininterval=5):
            picture = Image.open(files[index]).convert("RGB")
            for box in split_faces(picture):
                if box.radius is None:
                    continue
                circle = Circle(box.cx, box.cy, box.radius)
                if box.radius * 0.97 <= box.cx <= picture.width - box.radius * 0.97 and \
                        box.radius * 0.97 <= box.cy <= picture.height - box.radius * 0.97:
                    faces.append(resized_cutout(cutout_from_picture(picture, circle), FACE_SIDE))
    return faces


def close_up_boxes(picture: Image.Image, catalogue: bool) -> list[tuple[float, float, float, float]]:
    """The tight boxes (circle's square) of the coins in a close-up, as the classifier's training cuts it.

    A catalogue picture: every face ``split_faces`` finds with a circle. A real single-coin photo: Hough's one
    coin, or nothing when it finds none or several (the photo is then not used: a doubtful label is worse than
    none)."""
    from coinspotter.localize import locate_coins, split_faces

    boxes = split_faces(picture) if catalogue else locate_coins(picture).boxes
    boxes = [box for box in boxes if box.radius is not None]
    if not catalogue and len(boxes) != 1:
        return []
    return [(box.cx - box.radius, box.cy - box.radius, box.cx + box.radius, box.cy + box.radius) for box in boxes]


def load_close_ups(work: Path, coin_images: Path | None, real_photos: Path | None, count: int,
                   rng: np.random.Generator, side: int = INPUT_SIDE) -> list[tuple[Image.Image, np.ndarray]]:
    """Single coins filling much of the frame, boxed as the classifier's crops are (``close_up_boxes``): ``count``
    catalogue pictures of coin-images/train and the real single-coin photos of real-photos-train (not the
    casa0018 source: it is the classifier's held-out real source). The boxes are computed once into
    ``WORK/close_ups.json``; the pictures are kept at a longer side of ``side`` (the network's input)."""
    from tqdm import tqdm

    cache = work / "close_ups.json"
    if cache.exists():
        listed = json.loads(cache.read_text())
    else:
        candidates = []
        if real_photos is not None:
            candidates += [(path, False) for path in sorted((real_photos / "images").glob("*.jpg"))
                           if not path.name.startswith("casa0018")]
        if coin_images is not None and count:
            files = sorted((coin_images / "train").glob("*/*.jpg"))
            chosen = rng.choice(len(files), size=min(count, len(files)), replace=False)
            candidates += [(files[index], True) for index in sorted(chosen)]
        listed = []
        for path, catalogue in tqdm(candidates, desc="close-up boxes", file=sys.stdout, mininterval=10):
            boxes = close_up_boxes(Image.open(path).convert("RGB"), catalogue)
            if boxes:
                listed.append({"path": str(path), "boxes": [[round(v, 1) for v in box] for box in boxes]})
        cache.write_text(json.dumps(listed))
    pictures = []
    for item in listed:
        picture = Image.open(item["path"]).convert("RGB")
        scale = min(1.0, side / max(picture.size))
        if scale < 1.0:
            picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                     Image.BILINEAR)
        pictures.append((picture, np.array(item["boxes"], np.float32).reshape(-1, 4) * scale))
    return pictures


def render_synthetic(work: Path, count: int, faces, backgrounds, seed: int, side: int = INPUT_SIDE,
                     heap_share: float = 0.2, min_visible_share: float = MIN_VISIBLE_SHARE,
                     solid_share: float = 0.0) -> list[dict]:
    """Scenes 0..count-1 as WORK/synthetic/NNNNN.jpg (longer side ``side``) and labels.jsonl; resumable.

    ``heap_share``: the share of scenes whose coins lie in a heap; ``min_visible_share``: how much of a coin under
    others must be seen for it to be labelled; ``solid_share``: the share whose coins are drawn as solid discs, their
    edge seen (``make_photo_scene``)."""
    from tqdm import tqdm

    from coinspotter.synthetic import make_photo_scene

    folder = work / "synthetic"
    folder.mkdir(parents=True, exist_ok=True)
    labels_path = folder / "labels.jsonl"
    done = {}
    if labels_path.exists():
        for line in labels_path.read_text().splitlines():
            item = json.loads(line)
            if (folder / item["file"]).exists():
                done[item["file"]] = item
    with open(labels_path, "a") as labels:
        for index in tqdm(range(count), desc="synthetic scenes", file=sys.stdout, mininterval=10):
            name = f"{index:05d}.jpg"
            if name in done:
                continue
            rng = np.random.default_rng([seed, index])
            n_coins = 0 if rng.random() < 0.1 else int(rng.integers(1, 16))
            scene = make_photo_scene(rng, n_coins, faces=faces, backgrounds=backgrounds, heap_share=heap_share,
                                     min_visible_share=min_visible_share, solid_share=solid_share)
            scale = side / max(scene.image.size)
            size = (round(scene.image.width * scale), round(scene.image.height * scale))
            scene.image.resize(size, Image.BILINEAR).save(folder / name, quality=int(rng.integers(45, 96)))
            item = {"file": name, "boxes": [[round(v * scale, 2) for v in box] for box in scene.boxes],
                    "negatives": scene.negatives}
            labels.write(json.dumps(item) + "\n")
            done[name] = item
    return [done[f"{index:05d}.jpg"] for index in range(count)]


def encode_targets(boxes: np.ndarray, side: int = INPUT_SIDE, stride: int = STRIDE) -> np.ndarray:
    """(grid, grid, 6), grid = side / stride: Gaussian centre map, log width, log height, x offset, y offset,
    centre mask.

    ``boxes``: (n, 4) in input pixels of a ``side`` square. Peak sigma: an eighth of the coin's diameter in cells
    (at least 0.6), so touching coins keep separate peaks."""
    grid = side // stride
    target = np.zeros((grid, grid, 6), np.float32)
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for x0, y0, x1, y1 in boxes:
        w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
        cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride
        ix, iy = int(np.clip(np.floor(cx), 0, grid - 1)), int(np.clip(np.floor(cy), 0, grid - 1))
        sigma = max(0.6, min(w, h) / stride / 8)
        peak = np.exp(-((xx - cx + 0.5) ** 2 + (yy - cy + 0.5) ** 2) / (2 * sigma * sigma))
        target[..., 0] = np.maximum(target[..., 0], peak)
        target[iy, ix, 0] = 1.0
        target[iy, ix, 1:5] = [np.log(w / stride), np.log(h / stride), cx - ix, cy - iy]
        target[iy, ix, 5] = 1.0
    return target


def place(image: Image.Image, boxes: np.ndarray, rng: np.random.Generator, shrink: tuple[float, float],
          side: int = INPUT_SIDE):
    """The photo scaled to a longer side ``side`` * U(shrink), top left on the grey square, with its boxes."""
    scale = side * rng.uniform(*shrink) / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = np.full((side, side, 3), PAD_VALUE, np.uint8)
    canvas[: size[1], : size[0]] = np.asarray(image.resize(size, Image.BILINEAR))
    return canvas, boxes * scale, size


def frame_cut(image: Image.Image, boxes: np.ndarray, rng: np.random.Generator,
              share: tuple[float, float] = (0.5, 0.9)) -> tuple[Image.Image, np.ndarray]:
    """A window of the photo, each side ``share`` of the photo's, so that coins lie across the frame's edge as in
    a phone photo of a table; their boxes are clipped to it (coin-scenes boxes the part of a coin inside the frame,
    slivers included). A coin with less of its box inside than ``MIN_VISIBLE_SHARE`` is not labelled."""
    width, height = image.size
    cut_w, cut_h = (max(1, round(side * rng.uniform(*share))) for side in (width, height))
    left, top = int(rng.integers(0, width - cut_w + 1)), int(rng.integers(0, height - cut_h + 1))
    boxes = boxes.reshape(-1, 4)
    clipped = np.stack([np.clip(boxes[:, 0] - left, 0, cut_w), np.clip(boxes[:, 1] - top, 0, cut_h),
                        np.clip(boxes[:, 2] - left, 0, cut_w), np.clip(boxes[:, 3] - top, 0, cut_h)], axis=1)
    inside = np.prod(clipped[:, 2:] - clipped[:, :2], axis=1)
    whole = np.maximum(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), 1e-6)
    seen = (inside / whole >= MIN_VISIBLE_SHARE) & np.all(clipped[:, 2:] - clipped[:, :2] >= 2, axis=1)
    return image.crop((left, top, left + cut_w, top + cut_h)), clipped[seen].astype(np.float32)


def augment(canvas: np.ndarray, boxes: np.ndarray, size: tuple[int, int], rng: np.random.Generator):
    """Flips and 90-degree turns of the photo part (it stays top left), colour jitter, sometimes JPEG again."""
    width, height = size
    photo = canvas[:height, :width]
    boxes = boxes.copy()
    if rng.random() < 0.5:
        photo = photo[:, ::-1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    if rng.random() < 0.5:
        photo = photo[::-1]
        boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
    if rng.random() < 0.5:  # transpose
        photo = photo.transpose(1, 0, 2)
        boxes = boxes[:, [1, 0, 3, 2]]
        width, height = height, width
    photo = photo.astype(np.float32) * rng.uniform(0.75, 1.25, 3) + rng.uniform(-20, 20)
    if rng.random() < 0.1:
        photo = photo.mean(axis=2, keepdims=True).repeat(3, axis=2)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, "JPEG", quality=int(rng.integers(40, 90)))
        photo = np.asarray(Image.open(buffer))
    out = np.full(canvas.shape, PAD_VALUE, np.uint8)
    out[:height, :width] = photo
    return out, boxes


class Samples:
    """Training samples (synthetic files and real photos) as batches of (input, targets)."""

    def __init__(self, synthetic: list[dict], synthetic_dir: Path, real: list[tuple[Image.Image, np.ndarray]],
                 real_repeat: int, batch: int, seed: int,
                 close_ups: list[tuple[Image.Image, np.ndarray]] = (), close_ups_per_epoch: int = 0,
                 side: int = INPUT_SIDE, frame_cuts: float = 0.0, stride: int = STRIDE):
        self.items = [("synthetic", index) for index in range(len(synthetic))]
        self.items += [("real", index) for index in range(len(real))] * real_repeat
        # close-ups: a fresh draw from the pool at every epoch (the slot, not the picture, is the item)
        self.items += [("close_up", slot) for slot in range(close_ups_per_epoch if close_ups else 0)]
        self.synthetic, self.synthetic_dir, self.real, self.close_ups = synthetic, synthetic_dir, real, close_ups
        self.batch, self.seed, self.epoch, self.side = batch, seed, 0, side
        self.frame_cuts = frame_cuts  # the share of scenes and photos seen through a smaller window (frame_cut)
        self.stride = stride
        self.order = np.arange(len(self.items))

    def __len__(self) -> int:
        return len(self.items) // self.batch

    def shuffle(self, epoch: int) -> None:
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.items))

    def sample(self, position: int):
        kind, index = self.items[self.order[position]]
        rng = np.random.default_rng([self.seed, self.epoch, position])
        if kind == "synthetic":
            item = self.synthetic[index]
            image = Image.open(self.synthetic_dir / item["file"]).convert("RGB")
            boxes = np.array(item["boxes"], np.float32).reshape(-1, 4)
            if self.frame_cuts and rng.random() < self.frame_cuts:  # no draw without: older stages' samples stay
                image, boxes = frame_cut(image, boxes, rng)
            canvas, boxes, size = place(image, boxes, rng, (0.8, 1.0), self.side)
        elif kind == "real":
            image, boxes = self.real[index]
            if self.frame_cuts and rng.random() < self.frame_cuts:
                image, boxes = frame_cut(image, boxes, rng)
            canvas, boxes, size = place(image, boxes, rng, (0.45, 1.0), self.side)
        else:  # a close-up: the coin from a third of the frame to all of it
            image, boxes = self.close_ups[int(rng.integers(len(self.close_ups)))]
            canvas, boxes, size = place(image, boxes, rng, (0.35, 1.0), self.side)
        canvas, boxes = augment(canvas, boxes, size, rng)
        return canvas, encode_targets(boxes, self.side, self.stride)

    def batch_at(self, step: int):
        pairs = [self.sample(step * self.batch + k) for k in range(self.batch)]
        inputs = np.stack([p[0] for p in pairs]).astype(np.float32) / 127.5 - 1.0
        return inputs, np.stack([p[1] for p in pairs])
