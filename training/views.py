"""Fixed augmented views of the training pictures, shared by every model trained on them.

    python training/views.py --data ../shared/data/coin-images --out runs/views --views 4 --image-size 224
    # more views with stronger white-balance casts, keeping an existing set's views as they are
    python training/views.py --data ../shared/data/coin-images --out runs/views_phone --extend runs/views \
        --views 8 --colour-cast 0.35 --tint 0.12
    # near-upright views (turned at most 12° either way), for a model shown each photo turned several ways
    python training/views.py --data ../shared/data/coin-images --out runs/views_upright --views 6 --max-turn 12

A 2-core CPU cannot afford to run Xception on a freshly augmented picture at every step, so the
training set is augmented ahead of time: view 0 of each picture is the clean localised crop, views
1..V-1 are phone-photo augmentations of it (``coinspotter.augment``). Teachers and students then train on
features cached over these same views, and a student distils from its teachers' outputs on exactly the
view it sees itself — what knowledge distillation needs.

Writes ``views.npy`` (uint8, V·N × S × S × 3, memory-mapped, view-major), ``faces.npy`` (the clean
crops), ``labels.npy``, ``keys.json`` and ``meta.json``; resumable: a chunk done is never redone.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter import dataset  # noqa: E402
from coinspotter.imageio import decode_image  # noqa: E402
from coinspotter.preprocessing import to_model_input  # noqa: E402

log = logging.getLogger("views")
CHUNK = 64


def face_crops(image) -> list:
    """Each coin face in a catalogue picture: the localiser's two-face split (a user photographs one
    face; catalogue pictures often show both side by side), or the whole picture when it finds none."""
    from coinspotter import localize

    return localize.face_crops(image) or [image]


def earlier_views(folder: Path, args) -> dict:
    """The meta of the views folder being extended, with its augmentation notes as a per-view list; refuses
    one made from other pictures or at another size, whose views could not stand beside the new ones."""
    meta = json.loads((folder / "meta.json").read_text())
    if meta["image_size"] != args.image_size or meta["audit"] != bool(args.audit) or meta["views"] > args.views:
        raise SystemExit(f"{folder} holds {meta['views']} views at {meta['image_size']} px (audit: {meta['audit']}); "
                         f"it cannot be extended to {args.views} views at {args.image_size} px (audit: {bool(args.audit)})")
    if isinstance(meta["augmentation"], str):  # written before per-view notes: views 1.. share one augmenter
        meta["augmentation"] = [{"views": [1, meta["views"] - 1], "augmenter": meta["augmentation"] + ", colour_cast=0.15"}]
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", default="runs/views")
    parser.add_argument("--views", type=int, default=4, help="views per face, the first one clean")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--audit", help="reports/audit.json: drop the training pictures it lists")
    parser.add_argument("--limit", type=int, default=0, help="first N training pictures only (smoke tests)")
    parser.add_argument("--colour-cast", type=float, default=0.15, help="white-balance range: red/blue gains ±")
    parser.add_argument("--tint", type=float, default=0.0, help="green-magenta range: green gain ±")
    parser.add_argument("--max-turn", type=float, default=180.0,
                        help="degrees a view may be turned either way (180: any angle; e.g. 12: near upright)")
    parser.add_argument("--extend", help="an earlier views folder of the same pictures: its views are kept as "
                        "views 0.., the rest are made with this run's settings")
    args = parser.parse_args(argv)
    if not 0 <= args.max_turn <= 180:
        parser.error(f"--max-turn must be within 0..180 degrees, got {args.max_turn:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    import keras

    from coinspotter.augment import coin_augmenter

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples = dataset.list_split(args.data, "train")
    if args.audit:
        drop = dataset.read_audit(args.audit).train_drop
        samples = [s for s in samples if s.key not in drop]
    if args.limit:
        samples = samples[: args.limit]

    # pass 1: every face, cropped and letterboxed once; these clean crops are view 0
    faces_path = out / "faces.npy"
    keys_path = out / "keys.json"
    earlier = earlier_views(Path(args.extend), args) if args.extend else None
    if earlier and earlier["pictures"] != len(samples):
        raise SystemExit(f"{args.extend} was made from {earlier['pictures']} pictures, these are {len(samples)}")
    if earlier and not keys_path.is_file():
        np.save(faces_path, np.load(Path(args.extend) / "faces.npy"))
        keys_path.write_text((Path(args.extend) / "keys.json").read_text())
    if not keys_path.is_file():
        keys, crops = [], []
        for sample in tqdm(samples, desc="faces", unit="img", mininterval=5):
            for index, crop in enumerate(face_crops(decode_image(sample.path.read_bytes()))):
                keys.append((sample.key, index, sample.class_id))
                crops.append(to_model_input(crop, args.image_size).astype(np.uint8))
        np.save(faces_path, np.stack(crops))
        keys_path.write_text(json.dumps({"items": keys}))
    items = json.loads(keys_path.read_text())["items"]
    clean = np.load(faces_path, mmap_mode="r")
    count, views, size = len(items), args.views, args.image_size
    np.save(out / "labels.npy", np.array([class_id for _, _, class_id in items], dtype=np.int32))
    kept = earlier["views"] if earlier else 1
    this_run = (f"coinspotter.augment.coin_augmenter(phone_conditions=True, colour_cast={args.colour_cast}, "
                f"tint={args.tint}, max_turn_degrees={args.max_turn}), seed {args.seed}")
    augmentation = (earlier["augmentation"] if earlier else []) + (
        [{"views": [kept, views - 1], "augmenter": this_run}] if views > kept else [])
    (out / "meta.json").write_text(json.dumps(
        {"faces": count, "pictures": len(samples), "views": views, "image_size": size, "seed": args.seed,
         "audit": bool(args.audit), "augmentation": augmentation, "extends": args.extend}))

    # pass 2: views 1.. are augmentations of the clean crops. View-major layout, so "view v of
    # everything" is one contiguous slice.
    store_path = out / "views.npy"
    mode = "r+" if store_path.is_file() else "w+"
    store = np.lib.format.open_memmap(store_path, mode=mode, dtype=np.uint8, shape=(views * count, size, size, 3))
    done_path = out / "done.json"
    done = set(json.loads(done_path.read_text())) if done_path.is_file() else set()
    if "kept" not in done:
        store[: kept * count] = np.load(Path(args.extend) / "views.npy", mmap_mode="r")[: kept * count] if earlier else clean
        store.flush()
        done.add("kept")

    augmenter = coin_augmenter(seed=args.seed, colour_cast=args.colour_cast, tint=args.tint,
                               max_turn_degrees=args.max_turn)
    chunks = [(v, start) for v in range(kept, views) for start in range(0, count, CHUNK)]
    for view, start in tqdm(chunks, desc="views", unit="chunk"):
        tag = f"{view}:{start}"
        if tag in done:
            continue
        # a seed per chunk: the same views come out after a resume
        keras.utils.set_random_seed(args.seed * 100_003 + view * 1009 + start)
        pictures = np.asarray(augmenter(np.asarray(clean[start : start + CHUNK], dtype=np.float32), training=True))
        store[view * count + start : view * count + start + len(pictures)] = np.clip(pictures + 0.5, 0, 255).astype(np.uint8)
        done.add(tag)
        if len(done) % 10 == 0 or len(done) == len(chunks):
            store.flush()
            done_path.write_text(json.dumps(sorted(done)))
    store.flush()
    done_path.write_text(json.dumps(sorted(done)))
    log.info("%d faces from %d pictures, %d views each -> %s", count, len(samples), views, store_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
