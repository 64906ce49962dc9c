"""Evaluate served models by their model cards, the way the server runs them.

    python training/evaluate.py web-app/models/student.json \
        --data /work/shared/data/coin-images --real-photos /work/shared/data/real-photos-dev \
        --audit reports/audit.json --out reports

Every picture goes the server's way: ``imageio.decode_image`` -> the localiser (``classifier_view``)
-> the classifier's ``predict_images``. Catalogue pictures go through the localiser too by default, as
an upload would (``--catalogue-view whole`` gives them whole); real photos are cut to the localiser's
best coin box. Ensembles are built by ``ModelRegistry`` from their cards.

Figures, on the full validation split and its leak-free part side by side (leak-free = the audit's
list when ``--audit`` is given, else "original bytes match no training image"), optionally on the
test split, and on the real photos: top-1, top-5, value accuracy (currency and face value both
right), per-class accuracy, the most confused class pairs, expected calibration error (15 bins);
then model size on disk, parameter count and CPU latency per picture at batch 1 and 8.

Writes to ``--out``:
  <model>_eval.json        everything measured, with the command; its "card_metrics" are the
                           headline figures for the model card (``--update-card`` writes them there)
  <model>_confusion.png    confusion matrix of the worst classes on leak-free validation
  <model>_confusion_real_photos.png   the same on the real photos
  <model>_reliability.png  reliability diagrams
  evaluation.md            one row per model (every <model>_eval.json in --out), real photos per currency
  evaluation_summary.png   the headline accuracies of every model as bars

Training scripts call ``evaluate_card(card_path, data_root, real_photos_root, audit_path)``.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import os
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from coinspotter import dataset, evaluation  # noqa: E402
from coinspotter.catalog import load_catalog  # noqa: E402

log = logging.getLogger("evaluate")

REAL_PHOTOS = "real_photos_dev"
REAL_HOLDOUT = "real_photos_holdout"  # real-photos-train's held-out sources (--real-holdout)
REAL_SETS = (REAL_PHOTOS, REAL_HOLDOUT)
LATENCY_BATCH_SIZES = (1, 8)
WORST_CLASSES = 25
TOP_CONFUSED = 15
CALIBRATION_BINS = 15


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("cards", nargs="+", help="model cards to evaluate (web-app/models/<name>.json)")
    parser.add_argument("--data", required=True, help="coin-images folder (train/validation/test)")
    parser.add_argument("--real-photos", help="real-photos-dev folder (labels.csv + images/)")
    parser.add_argument("--real-holdout",
                        help="real-photos-train folder: its --holdout-sources are measured, per currency")
    parser.add_argument("--holdout-sources", nargs="+", default=[],
                        help="source short names (file name prefixes) held out of training, for --real-holdout")
    parser.add_argument("--audit", help="audit.json from training/audit.py: its leak-free lists (default: byte rule)")
    parser.add_argument("--splits", nargs="+", default=["validation"], choices=("validation", "test"))
    parser.add_argument("--out", default="reports", help="folder for the json, markdown and pictures")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-repeats", type=int, default=15, help="timed calls per batch size (0: skip)")
    parser.add_argument("--catalogue-view", choices=("whole", "localised"), default="localised",
                        help="catalogue pictures cut by the localiser (as the server does) or whole")
    parser.add_argument("--finder", choices=LOCALISERS, default=None,
                        help="the coin search that cuts the pictures: Hough circles or the learned finder "
                             "(default: the server's, i.e. learned unless COINSPOTTER_FINDER=hough)")
    parser.add_argument("--finder-dir", type=Path, default=None,
                        help="the learned finder's folder for --finder learned (default: the bundled one)")
    parser.add_argument("--update-card", action="store_true",
                        help="write the headline figures into each card's metrics")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- pictures


# which coin search cuts the pictures (--finder): "hough" (coinspotter.localize) or "learned" (a
# coinspotter.finder.CoinFinder of --finder-dir, whatever COINSPOTTER_FINDER says)
LOCALISERS = ("hough", "learned")
COIN_SEARCH_NAMES = {"hough": "the Hough localiser", "learned": "the learned coin finder"}  # for the reports
localiser = "hough"
learned_finder = None  # the CoinFinder main() loads for --finder learned


def classifier_view(image, localise: bool = True):
    """The picture the classifier is given for a decoded upload, and how many coins the localiser found.

    The one place evaluation calls the localiser, so evaluation follows it as it improves: the box
    with the highest score (the first of equals) when it finds coins, else the whole picture.
    """
    from coinspotter.localize import crop_box

    if not localise:
        return image, None
    boxes = coin_boxes(image)
    if not boxes:
        return image, 0
    best = max(boxes, key=lambda box: box.score)  # max keeps the first of equal scores
    return crop_box(image, best), len(boxes)


def coin_boxes(image) -> list:
    """The coins the search in use (``coin_search``) finds in a decoded picture, as crop boxes."""
    from coinspotter.localize import locate_coins

    return (learned_finder.locate(image) if localiser == "learned" else locate_coins(image)).boxes


def catalogue_face_crops(image) -> list:
    """Each coin face of a catalogue training picture, cut by the search in use, so that a classifier trains on
    the crops it is served: Hough's two-face split (``localize.face_crops``, as ``views.py`` cuts), or the
    learned finder's two most probable boxes (a catalogue picture shows one coin, at most both its faces side
    by side); the whole picture when nothing is found, because a catalogue picture always shows a coin."""
    from coinspotter.localize import crop_box, face_crops

    if localiser != "learned":
        return face_crops(image) or [image]
    best = sorted(coin_boxes(image), key=lambda box: box.score, reverse=True)[:2]
    return [crop_box(image, box) for box in best] or [image]


def coin_search_tag() -> str:
    """Names the search in use and, for the learned finder, its files' bytes: crops cached under this tag are
    cut again when the served finder changes."""
    import hashlib

    if localiser != "learned":
        return "hough"
    digest = hashlib.sha256()
    for path in sorted(Path(learned_finder.folder).glob("coin_finder.*")):
        digest.update(path.name.encode() + path.read_bytes())
    return "finder-" + digest.hexdigest()[:10]


@dataclass
class EvalSet:
    """Pictures decoded and localised once, then given to every model."""

    name: str  # "validation", "test", "real_photos_dev"
    keys: list[str]
    class_ids: list[int]  # the true class of each picture
    pictures: list = field(repr=False)
    leak_free: np.ndarray | None = None  # bool per picture; None where there is no training split to leak from
    coins_found: list[int | None] = field(default_factory=list, repr=False)  # None: localiser not used
    prepare_ms: float | None = None  # median time to decode (and localise) one picture

    def localiser_summary(self) -> dict:
        found = [n for n in self.coins_found if n is not None]
        if not found:
            return {"used": False}
        return {"used": True, "search": localiser, "no_coin_whole_picture": found.count(0), "one_coin": found.count(1),
                "several_coins_best_box": sum(n > 1 for n in found), "decode_and_locate_ms_median": self.prepare_ms}


def load_pictures(paths: list[Path], localise: bool, desc: str):
    from tqdm import tqdm

    from coinspotter.imageio import decode_image

    pictures, coins_found, times = [], [], []
    for path in tqdm(paths, desc=desc, unit="img", mininterval=2):
        data = path.read_bytes()
        started = time.perf_counter()
        picture, found = classifier_view(decode_image(data), localise)
        times.append(time.perf_counter() - started)
        pictures.append(picture)
        coins_found.append(found)
    return pictures, coins_found, round(float(np.median(times)) * 1000, 1) if times else None


def load_catalogue_split(root: Path, split: str, audit: dataset.Audit | None, localise: bool) -> EvalSet:
    samples = dataset.list_split(root, split)
    clean = dataset.leak_free_keys(root, split, audit)
    pictures, coins_found, prepare_ms = load_pictures([s.path for s in samples], localise, split)
    return EvalSet(
        name=split, keys=[s.key for s in samples], class_ids=[s.class_id for s in samples], pictures=pictures,
        leak_free=np.array([s.key in clean for s in samples], dtype=bool), coins_found=coins_found,
        prepare_ms=prepare_ms,
    )


def load_real_photos(root: Path, name: str = REAL_PHOTOS, sources: list[str] | None = None) -> EvalSet:
    """A real-photos folder (labels.csv, images/); with ``sources``, only the photos of those sources (the
    prefix of a file name before "__"), as held out of training by ``finetune.py --holdout-sources``."""
    with open(root / "labels.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if sources is not None:
        known = {Path(row["file"]).name.split("__", 1)[0] for row in rows}
        if set(sources) - known:
            raise SystemExit(f"{root} has no source named {sorted(set(sources) - known)}; it has {sorted(known)}")
        rows = [row for row in rows if Path(row["file"]).name.split("__", 1)[0] in sources]
    pictures, coins_found, prepare_ms = load_pictures([root / row["file"] for row in rows], True,
                                                      name.replace("_", " "))
    return EvalSet(
        name=name, keys=[row["file"] for row in rows], class_ids=[int(row["class_id"]) for row in rows],
        pictures=pictures, coins_found=coins_found, prepare_ms=prepare_ms,
    )


def load_eval_sets(data_root, real_photos_root=None, audit_path=None, splits=("validation",),
                   catalogue_view: str = "localised", real_holdout_root=None, holdout_sources=()) -> list[EvalSet]:
    audit = dataset.read_audit(audit_path) if audit_path else None
    sets = [load_catalogue_split(Path(data_root), split, audit, catalogue_view == "localised") for split in splits]
    if real_photos_root:
        sets.append(load_real_photos(Path(real_photos_root)))
    if real_holdout_root:
        if not holdout_sources:
            raise SystemExit("--real-holdout needs --holdout-sources: the sources the model was not trained on")
        sets.append(load_real_photos(Path(real_holdout_root), REAL_HOLDOUT, list(holdout_sources)))
    return sets


# ----------------------------------------------------------------------------------------- measuring


def predict(classifier, pictures: list, batch_size: int, desc: str) -> np.ndarray:
    from tqdm import tqdm

    batches = range(0, len(pictures), batch_size)
    rows = [classifier.predict_images(pictures[start : start + batch_size])
            for start in tqdm(batches, desc=desc, unit="batch", mininterval=2)]
    return np.concatenate(rows) if rows else np.zeros((0, len(classifier.class_ids)), np.float32)


def keras_parts(classifier) -> list:
    """The Keras models behind a classifier: itself, or an ensemble's members (each once)."""
    inner = getattr(classifier, "inner", None)  # a test-time-augmentation wrapper
    if inner is not None:
        return keras_parts(inner)
    members = getattr(classifier, "members", None)
    if members is None:
        return [classifier]
    parts = {}
    for member in members:
        for part in keras_parts(member):
            parts.setdefault(part.card.name, part)
    return list(parts.values())


def footprint(classifier) -> dict:
    parts = keras_parts(classifier)
    files = [getattr(part, "path", None) or part.card.model_path for part in parts]  # a served .tflite, or the .h5
    size = sum(path.stat().st_size for path in files)
    parameters = sum(part.model.count_params() for part in parts)
    return {"file_bytes": size, "file_mb": round(size / 1e6, 2), "parameters": int(parameters),
            "files": [path.name for path in files]}


def latency(classifier, pictures: list, repeats: int) -> dict:
    """Median milliseconds per picture of ``predict_images`` (letterbox + network) at each batch size.

    The box is shared (2 cores, maybe a training job): medians, and the load average, are recorded.
    """
    if repeats <= 0 or not pictures:
        return {}
    figures = {"repeats": repeats, "load_average_1min": round(os.getloadavg()[0], 2)}
    for batch_size in LATENCY_BATCH_SIZES:
        batch = [pictures[i % len(pictures)] for i in range(batch_size)]
        for _ in range(2):  # warm-up: the first calls of a shape set up kernels and memory
            classifier.predict_images(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            classifier.predict_images(batch)
            times.append(time.perf_counter() - started)
        figures[f"batch_{batch_size}_ms_per_image"] = round(float(np.median(times)) * 1000 / batch_size, 2)
    return figures


def subset_metrics(probabilities: np.ndarray, labels: np.ndarray, class_ids: list[int]) -> dict:
    metrics = evaluation.classification_metrics(probabilities, labels, class_ids)
    if not len(labels):
        return metrics
    calibration = evaluation.expected_calibration_error(probabilities, labels, CALIBRATION_BINS)
    metrics["ece"] = calibration["ece"]
    metrics["calibration_bins"] = calibration["bins"]
    metrics["per_class"] = evaluation.per_class_accuracy(probabilities, labels, class_ids)
    metrics["confused_pairs"] = evaluation.confused_pairs(probabilities, labels, class_ids, TOP_CONFUSED)
    return metrics


def evaluate_set(eval_set: EvalSet, probabilities: np.ndarray, class_ids: list[int]) -> dict:
    index_of = {class_id: index for index, class_id in enumerate(class_ids)}
    missing = sorted(set(eval_set.class_ids) - set(index_of))
    if missing:
        raise ValueError(f"{eval_set.name}: the model has no output for classes {missing}")
    labels = np.array([index_of[c] for c in eval_set.class_ids], dtype=np.int64)
    result = {"full": subset_metrics(probabilities, labels, class_ids), "localiser": eval_set.localiser_summary()}
    if eval_set.leak_free is not None:
        result["leak_free"] = subset_metrics(probabilities[eval_set.leak_free], labels[eval_set.leak_free], class_ids)
    else:
        result["per_currency"] = evaluation.metrics_by_currency(probabilities, labels, class_ids)
    return result


HEADLINE_FIELDS = ("images", "top1", "top5", "value_accuracy", "ece")
SET_FIELDS = ("images", "top1", "value_accuracy", "ece")


def set_figures(classifier, eval_sets: list[EvalSet], batch_size: int = 32, label: str | None = None):
    """(figures, probabilities) per set: images, top-1, value accuracy and ECE of the whole set and, where it
    has one, of its leak-free part; for scripts that compare many variants of a model (compact, prune)."""
    figures, probabilities = {}, {}
    for eval_set in eval_sets:
        probs = predict(classifier, eval_set.pictures, batch_size, f"{label or classifier.card.name} {eval_set.name}")
        result = evaluate_set(eval_set, probs, classifier.class_ids)
        figures[eval_set.name] = {key: result["full"][key] for key in SET_FIELDS}
        if "leak_free" in result:
            figures[eval_set.name]["leak_free"] = {key: result["leak_free"][key] for key in SET_FIELDS}
        probabilities[eval_set.name] = probs
    return figures, probabilities


def card_metrics(report: dict) -> dict:
    """The headline figures of a report, in the shape model cards keep them (with the command)."""

    def headline(metrics):
        return {key: metrics[key] for key in HEADLINE_FIELDS if key in metrics}

    figures = {}
    for name, result in report["sets"].items():
        if name in REAL_SETS:
            figures[name] = headline(result["full"])
            figures[name]["per_currency"] = {code: {key: m[key] for key in ("images", "top1", "value_accuracy")}
                                             for code, m in result["per_currency"].items()}
        else:
            figures[name] = headline(result["full"])
            figures[f"{name}_leak_free"] = headline(result["leak_free"])
    figures["latency_ms_per_image"] = {k: v for k, v in report["latency"].items() if k.endswith("_ms_per_image")}
    figures["file_mb"] = report["footprint"]["file_mb"]
    figures["parameters"] = report["footprint"]["parameters"]
    figures["leak_free_rule"] = report["leak_free_rule"]
    figures["coin_search"] = report.get("coin_search")
    figures["measured_by"] = report["measured_by"]
    figures["measured_at"] = report["measured_at"]
    return figures


def evaluate_classifier(classifier, eval_sets: list[EvalSet], batch_size: int = 32,
                        latency_repeats: int = 15) -> dict:
    class_ids = classifier.class_ids
    report = {"sets": {}, "predictions": {}}
    for eval_set in eval_sets:
        probabilities = predict(classifier, eval_set.pictures, batch_size, f"{classifier.card.name} {eval_set.name}")
        report["sets"][eval_set.name] = evaluate_set(eval_set, probabilities, class_ids)
        predicted = probabilities.argmax(axis=1)
        leak_free = [None] * len(eval_set.keys) if eval_set.leak_free is None else eval_set.leak_free.tolist()
        rows = zip(eval_set.keys, eval_set.class_ids, predicted, probabilities.max(axis=1), leak_free)
        report["predictions"][eval_set.name] = [  # key, true class, predicted class, confidence, leak-free
            [key, true, class_ids[int(guess)], round(float(confidence), 4), free]
            for key, true, guess, confidence, free in rows
        ]
    report["footprint"] = footprint(classifier)
    report["latency"] = latency(classifier, eval_sets[0].pictures if eval_sets else [], latency_repeats)
    return report


def evaluate_card(card_path, data_root, real_photos_root=None, audit_path=None, *, splits=("validation",),
                  out_dir=None, batch_size: int = 32, latency_repeats: int = 15, catalogue_view: str = "localised",
                  eval_sets: list[EvalSet] | None = None, registry=None, command: str | None = None) -> dict:
    """Evaluate the model of one card; returns the report, whose "card_metrics" suit ``ModelCard.metrics``.

    With ``out_dir`` the report, its pictures and the summary of ``out_dir`` are written too. Pass
    ``eval_sets`` (from :func:`load_eval_sets`) to reuse decoded pictures across models.
    """
    from coinspotter.inference import ModelRegistry, configure_tensorflow_threads
    from coinspotter.modelcard import read_card

    configure_tensorflow_threads()
    card = read_card(card_path)
    registry = registry or ModelRegistry(card.path.parent)
    classifier = registry.get(card.name)
    if eval_sets is None:
        eval_sets = load_eval_sets(data_root, real_photos_root, audit_path, splits, catalogue_view)
    if command is None:
        command = "python training/evaluate.py " + shlex.join(
            [str(card_path), "--data", str(data_root)]
            + (["--real-photos", str(real_photos_root)] if real_photos_root else [])
            + (["--audit", str(audit_path)] if audit_path else [])
            + ["--splits", *[s.name for s in eval_sets if s.name not in REAL_SETS]]
            + (["--catalogue-view", catalogue_view] if catalogue_view != "localised" else [])
        )
    started = time.perf_counter()
    report = {
        "model": card.name,
        "display_name": card.display_name,
        "architecture": card.architecture,
        "card": str(card_path),
        "measured_by": command,
        "measured_at": time.strftime("%Y-%m-%d %H:%M"),
        "leak_free_rule": f"audit {audit_path}" if audit_path else "original bytes identical to no training image",
        "catalogue_view": catalogue_view,
        "coin_search": localiser,  # which search cut the pictures: "learned" (the served one) or "hough"
        "cpu_count": os.cpu_count(),
    }
    report.update(evaluate_classifier(classifier, eval_sets, batch_size, latency_repeats))
    report["card_metrics"] = card_metrics(report)
    log.info("%s evaluated in %.0f s", card.name, time.perf_counter() - started)
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report


# ----------------------------------------------------------------------------------------- reports


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    name = report["model"]
    text = json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    (out / f"{name}_eval.json").write_text(text, encoding="utf-8")
    report = json.loads(text)  # the pictures are drawn from what is on disk (string class keys and all)
    plot_confusion(report, "validation", out / f"{name}_confusion.png")
    plot_confusion(report, REAL_PHOTOS, out / f"{name}_confusion_real_photos.png")
    plot_reliability(report, out / f"{name}_reliability.png")
    write_summary(out)


def read_reports(out: Path) -> list[dict]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in sorted(out.glob("*_eval.json"))]


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def pair(result: dict | None, key: str) -> str:
    """'full / leak-free' for one figure of one split."""
    if not result:
        return "–"
    return f"{percent(result['full'].get(key))} / {percent(result['leak_free'].get(key))}"


def write_summary(out: Path) -> None:
    """evaluation.md and evaluation_summary.png from every report in ``out`` (one row per model)."""
    reports = read_reports(out)
    if not reports:
        return
    catalog = load_catalog()
    lines = [
        "# Model evaluation",
        "",
        "Accuracies in %, **full / leak-free** where a split has both (leak-free: pictures that are no exact or near "
        "duplicate of a training picture). Value = currency and face value both right. ECE: expected calibration "
        f"error, {CALIBRATION_BINS} bins, in %. Latency: median CPU ms per picture through `predict_images` "
        "(letterbox + network), on a shared 2-core box.",
        "",
        "| model | params | MB | ms/img b1 | ms/img b8 | val top-1 | val top-5 | val value | val ECE | test top-1 | "
        "real top-1 | real value | real ECE |",
        "|---|---:|---:|---:|---:|---|---|---|---|---|---:|---:|---:|",
    ]
    for report in reports:
        sets, lat, size = report["sets"], report["latency"], report["footprint"]
        real = sets.get(REAL_PHOTOS, {}).get("full", {})
        lines.append(
            f"| {report['model']} | {size['parameters'] / 1e6:.2f} M | {size['file_mb']:.1f} | "
            f"{lat.get('batch_1_ms_per_image', '–')} | {lat.get('batch_8_ms_per_image', '–')} | "
            f"{pair(sets.get('validation'), 'top1')} | {pair(sets.get('validation'), 'top5')} | "
            f"{pair(sets.get('validation'), 'value_accuracy')} | {pair(sets.get('validation'), 'ece')} | "
            f"{pair(sets.get('test'), 'top1')} | {percent(real.get('top1'))} | {percent(real.get('value_accuracy'))} | "
            f"{percent(real.get('ece'))} |"
        )
    lines += ["", "Measured by:", ""]

    def pictures(r) -> str:  # reports written before the learned finder was served say nothing: Hough cut them
        if r.get("catalogue_view") == "whole":
            return "catalogue pictures whole"
        return f"pictures cut by {COIN_SEARCH_NAMES[r.get('coin_search') or 'hough']}"
    lines += [f"- {r['model']} ({r['measured_at']}, leak-free rule: {r['leak_free_rule']}, {pictures(r)}, "
              f"1-minute load average "
              f"{r['latency'].get('load_average_1min', '–')} on {r['cpu_count']} cores): `{r['measured_by']}`"
              for r in reports]

    titles = {REAL_PHOTOS: "Real photos (real-photos-dev)",
              REAL_HOLDOUT: "Real photos of sources held out of training (part of real-photos-train)"}
    for real_set in REAL_SETS:
        with_set = [r for r in reports if real_set in r["sets"]]
        if not with_set:
            continue
        currencies = sorted({code for r in with_set for code in r["sets"][real_set]["per_currency"]})
        lines += ["", f"## {titles[real_set]} per currency: top-1 / value accuracy in %", "",
                  "| currency | photos | " + " | ".join(r["model"] for r in with_set) + " |",
                  "|---|---:|" + "---|" * len(with_set)]
        for code in currencies + ["all"]:
            cells, count = [], 0
            for report in with_set:
                m = (report["sets"][real_set]["per_currency"].get(code) if code != "all"
                     else report["sets"][real_set]["full"])
                count = m["images"] if m else count
                cells.append(f"{percent(m['top1'])} / {percent(m['value_accuracy'])}" if m else "–")
            lines.append(f"| {code} | {count} | " + " | ".join(cells) + " |")
    with_real = [r for r in reports if REAL_PHOTOS in r["sets"]]
    if with_real:
        lines += [""]
        for report in with_real:
            found = report["sets"][REAL_PHOTOS]["localiser"]
            if found.get("used"):
                lines.append(f"Localiser on the real photos ({report['model']}): one coin {found['one_coin']}, several "
                             f"(best box used) {found['several_coins_best_box']}, none (whole picture used) "
                             f"{found['no_coin_whole_picture']}; decoding and locating took "
                             f"{found['decode_and_locate_ms_median']} ms per photo (median).")
    for report in reports:
        for set_name, picture in (("validation", "confusion"), (REAL_PHOTOS, "confusion_real_photos")):
            result = report["sets"].get(set_name)
            if not result:
                continue
            subset = result.get("leak_free", result["full"])
            which = f"leak-free {set_name}" if "leak_free" in result else set_name
            lines += ["", f"## {report['model']}: most confused classes on {which}", "",
                      "| true | predicted | times |", "|---|---|---:|"]
            lines += [f"| {c['true']} {catalog[c['true']].label} | {c['predicted']} {catalog[c['predicted']].label} "
                      f"| {c['count']} |" for c in subset.get("confused_pairs", [])]
            lines += ["", f"![{picture}]({report['model']}_{picture}.png)"]
        lines += ["", f"![reliability]({report['model']}_reliability.png)"]
    lines += ["", "![summary](evaluation_summary.png)", ""]
    (out / "evaluation.md").write_text("\n".join(lines), encoding="utf-8")
    plot_summary(reports, out / "evaluation_summary.png")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_summary(reports: list[dict], path: Path) -> None:
    plt = _pyplot()
    bars = [("validation", "full", "validation"), ("validation", "leak_free", "validation leak-free"),
            ("test", "leak_free", "test leak-free"), (REAL_PHOTOS, "full", "real photos")]
    bars = [b for b in bars if any(b[0] in r["sets"] for r in reports)]
    currencies = sorted({c for r in reports for c in r["sets"].get(REAL_PHOTOS, {}).get("per_currency", {})})
    figure, axes = plt.subplots(1, 2 if currencies else 1, figsize=(12 if currencies else 7, 4), squeeze=False)
    width = 0.8 / max(1, len(reports))
    for number, report in enumerate(reports):
        values = [report["sets"].get(split, {}).get(part, {}).get("top1") or 0 for split, part, _ in bars]
        positions = np.arange(len(bars)) + number * width
        drawn = axes[0, 0].bar(positions, np.array(values) * 100, width, label=report["model"])
        axes[0, 0].bar_label(drawn, fmt="%.0f", fontsize=8)
        if currencies:
            per_currency = report["sets"].get(REAL_PHOTOS, {}).get("per_currency", {})
            values = [per_currency.get(code, {}).get("top1") or 0 for code in currencies]
            drawn = axes[0, 1].bar(np.arange(len(currencies)) + number * width, np.array(values) * 100, width,
                                   label=report["model"])
            axes[0, 1].bar_label(drawn, fmt="%.0f", fontsize=8)
    offset = width * (len(reports) - 1) / 2
    axes[0, 0].set_xticks(np.arange(len(bars)) + offset, [label for _, _, label in bars])
    axes[0, 0].set_ylabel("top-1 accuracy, %")
    axes[0, 0].set_ylim(0, 105)
    axes[0, 0].set_title("Top-1 accuracy")
    axes[0, 0].legend(fontsize=8)
    if currencies:
        axes[0, 1].set_xticks(np.arange(len(currencies)) + offset, currencies)
        axes[0, 1].set_ylim(0, 105)
        axes[0, 1].set_title("Real photos: top-1 per currency")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def worst_classes(per_class: dict, count: int = WORST_CLASSES) -> list[int]:
    """The classes with the lowest accuracy (more pictures first among equals)."""
    ranked = sorted(per_class.items(), key=lambda item: (item[1]["accuracy"], -item[1]["images"], int(item[0])))
    return [int(class_id) for class_id, _ in ranked[:count]]


def confusion_picture_subset(report: dict, set_name: str):
    """(metrics, predictions) the confusion picture of ``set_name`` is drawn from: leak-free where known."""
    result = report["sets"].get(set_name)
    if not result:
        return None, []
    rows = report["predictions"][set_name]
    if "leak_free" in result:
        return result["leak_free"], [row for row in rows if row[4]]
    return result["full"], rows


def plot_confusion(report: dict, set_name: str, path: Path) -> None:
    """Rows: the worst classes; columns: what they were taken for most often (their own class included),
    then "other", so a glance shows where the mistakes go."""
    metrics, rows = confusion_picture_subset(report, set_name)
    if not metrics or not metrics.get("per_class"):
        return
    per_class = metrics["per_class"]
    classes = worst_classes(per_class)
    guesses = Counter(guess for _, true, guess, _, _ in rows if true in classes)
    # the worst classes that were ever predicted, in row order, then the most frequent other guesses
    columns = [c for c in classes if guesses[c]] + [c for c, _ in guesses.most_common() if c not in classes]
    columns = columns[: WORST_CLASSES + 5]
    row_of = {class_id: i for i, class_id in enumerate(classes)}
    column_of = {class_id: i for i, class_id in enumerate(columns)}
    matrix = np.zeros((len(classes), len(columns) + 1), dtype=int)
    for _, true, guess, _, _ in rows:
        if true in row_of:
            matrix[row_of[true], column_of.get(guess, len(columns))] += 1
    catalog = load_catalog()
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4 + 0.3 * len(columns), 2.5 + 0.3 * len(classes)))
    axis.imshow(matrix, cmap="Blues", aspect="auto")
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            axis.text(column, row, str(value), ha="center", va="center", fontsize=8,
                      color="white" if value > matrix.max() / 2 else "black")
            if column < len(columns) and columns[column] == classes[row]:  # the right answers
                axis.add_patch(plt.Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, color="tab:green", lw=2))
    axis.set_xticks(range(len(columns) + 1), [f"{c} {catalog[c].label}" for c in columns] + ["other"],
                    rotation=90, fontsize=7)
    axis.set_yticks(range(len(classes)), [f"{c} {catalog[c].label} ({per_class[str(c)]['correct']}/"
                                          f"{per_class[str(c)]['images']})" for c in classes], fontsize=7)
    axis.set_xlabel("predicted (green frame: right)")
    axis.set_ylabel("true class (right / pictures)")
    which = f"leak-free {set_name}" if "leak_free" in report["sets"][set_name] else set_name
    axis.set_title(f"{report['model']}: the {len(classes)} worst classes of {which}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_reliability(report: dict, path: Path) -> None:
    """One reliability diagram per evaluated set: accuracy against confidence, bar widths = bins."""
    panels = []
    for name, result in report["sets"].items():
        panels.append((name, result["full"]))
        if result.get("leak_free", {}).get("images"):
            panels.append((f"{name} leak-free", result["leak_free"]))
    panels = [(title, m) for title, m in panels if m.get("calibration_bins")]
    if not panels:
        return
    plt = _pyplot()
    figure, axes = plt.subplots(2, len(panels), figsize=(3.6 * len(panels), 5.4), squeeze=False,
                                gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    for column, (title, metrics) in enumerate(panels):
        bins = metrics["calibration_bins"]
        lower = np.array([b["lower"] for b in bins])
        width = bins[0]["upper"] - bins[0]["lower"]
        accuracy = np.array([b.get("accuracy", 0.0) for b in bins])
        confidence = np.array([b.get("confidence", 0.0) for b in bins])
        counts = np.array([b["images"] for b in bins])
        top, bottom = axes[0, column], axes[1, column]
        top.bar(lower, accuracy, width, align="edge", color="tab:blue", edgecolor="white", label="accuracy")
        top.bar(lower, confidence - accuracy, width, bottom=accuracy, align="edge", color="tab:red", alpha=0.3,
                label="gap to confidence")
        top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
        top.set_title(f"{title}\nECE {percent(metrics['ece'])}%, n={metrics['images']}", fontsize=9)
        top.set_ylim(0, 1)
        bottom.bar(lower, counts, width, align="edge", color="tab:grey")
        bottom.set_xlabel("confidence")
        if column == 0:
            top.set_ylabel("accuracy")
            top.legend(fontsize=7, loc="upper left")
            bottom.set_ylabel("pictures")
    figure.suptitle(f"{report['model']}: reliability", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


# ----------------------------------------------------------------------------------------- main


@contextlib.contextmanager
def coin_search(finder: str | None = None, finder_dir: Path | None = None):
    """Pictures are cut by ``finder`` ("hough" or "learned", from ``finder_dir`` or the bundled folder) inside the
    block; None: the server's search (learned unless COINSPOTTER_FINDER=hough). The library's default (Hough, which
    the training scripts' crops are cut with) is restored after it."""
    global localiser, learned_finder
    library_defaults = localiser, learned_finder
    localiser = finder or ("hough" if os.environ.get("COINSPOTTER_FINDER", "").strip().lower() == "hough"
                           else "learned")
    try:
        if localiser == "learned":
            from coinspotter.finder import DEFAULT_DIR, CoinFinder

            learned_finder = CoinFinder(finder_dir or DEFAULT_DIR)
            if not learned_finder.load():
                raise SystemExit(f"--finder learned: no coin finder in {learned_finder.folder} "
                                 f"({learned_finder.error})")
        yield localiser
    finally:
        localiser, learned_finder = library_defaults


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    command = "python training/evaluate.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with coin_search(args.finder, args.finder_dir):
        return evaluate_cards(args, command)


def evaluate_cards(args, command: str) -> int:
    from coinspotter.inference import ModelRegistry
    from coinspotter.modelcard import read_card

    eval_sets = load_eval_sets(args.data, args.real_photos, args.audit, args.splits, args.catalogue_view,
                               args.real_holdout, args.holdout_sources)
    registries: dict[Path, ModelRegistry] = {}  # one per models folder, so ensemble members load once
    for card_path in args.cards:
        folder = Path(card_path).resolve().parent
        registry = registries.setdefault(folder, ModelRegistry(folder))
        report = evaluate_card(
            card_path, args.data, args.real_photos, args.audit, out_dir=args.out, batch_size=args.batch_size,
            latency_repeats=args.latency_repeats, catalogue_view=args.catalogue_view, eval_sets=eval_sets,
            registry=registry, command=command,
        )
        log.info("%s: %s", report["model"], json.dumps({k: v for k, v in report["card_metrics"].items()
                                                         if k not in ("measured_by", "leak_free_rule", "coin_search")}))
        if args.update_card:
            card = read_card(card_path)
            # the original's protocol (whole catalogue pictures) is kept beside the server's-way figures
            card.metrics = (report["card_metrics"] if args.catalogue_view == "localised"
                            else {**card.metrics, "whole_picture": report["card_metrics"]})
            card.save(card_path)
            log.info("wrote the headline figures into %s", card_path)
    log.info("reports in %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
