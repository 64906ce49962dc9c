"""Compact student: TensorFlow Lite copies of a card's .h5, measured against it on the same pictures in one run.

    python benchmarks/compact.py --update-card --readme README.md

(the defaults: ``--card web-app/models/student.json --data ../shared/data/coin-images
--real-photos ../shared/data/real-photos-dev --audit reports/audit.json --out reports``). It

1. exports the card's ``.h5`` to TFLite as float32, float16, dynamic-range int8 and full int8
   (``coinspotter.compact``; full int8 calibrated on ``--representative`` training pictures drawn with
   ``--seed``, localised and letterboxed as serving prepares an upload) into ``--work``;
2. decodes and localises the validation split and the real photos once (``training/evaluate.py``'s own
   path: decode -> localiser -> best box) and gives the very same pictures to the ``.h5`` and to every
   TFLite file: top-1 on all and on leak-free validation (the audit's list), value accuracy on the real
   photos, and how often each file's top-1 agrees with the ``.h5``'s;
3. times ``predict_images`` (letterbox + network) at batch 1 and 8 for every model, interleaved over
   ``--latency-rounds`` rounds (median of the rounds' medians), so that a background job slows all of
   them alike; the machine's load average is recorded, as figures on a shared box are noisy;
4. picks the file to serve among those faster than the ``.h5`` at batch 1, not slower at batch 8, and at
   most ``--tolerance`` (0.5 points) below the ``.h5`` on leak-free validation top-1 and on real-photo value
   accuracy: the fastest at batch 1, or the smallest of those within 10% of it. ``--update-card`` copies it beside the card and writes it into
   the card's ``serving`` (with the sha256 of the ``.h5`` it came from), or, when none qualifies, removes a
   ``serving`` entry so the ``.h5`` is served, and says why;
5. writes ``--out``/compact.json and compact.md, and with ``--readme`` the table between the README's
   ``<!-- compact:begin -->`` and ``<!-- compact:end -->`` lines.

After the ``.h5`` is replaced by a retrained one, the same command measures everything again.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import evaluate  # noqa: E402
from report_blocks import add_data_arguments, publish  # noqa: E402

from coinspotter import dataset  # noqa: E402
from coinspotter.compact import VARIANTS, tflite_bytes  # noqa: E402

log = logging.getLogger("compact")
FULL_INT8_LIMIT = 0.01  # full int8 is worth keeping only within 1 point of the .h5 (issue 8)
SAME_SPEED = 0.10  # batch-1 times within 10% of each other count as equally fast


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, "compact")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--representative", type=int, default=200,
                        help="training pictures that calibrate full int8's activation ranges")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the accuracy runs")
    parser.add_argument("--latency-repeats", type=int, default=10, help="timed calls per batch size and round")
    parser.add_argument("--latency-rounds", type=int, default=5, help="rounds over all models, interleaved")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="largest accuracy drop (fraction) a served TFLite file may have against the .h5")
    parser.add_argument("--work", default="cache/compact", help="folder for the exported .tflite files")
    parser.add_argument("--out", default="reports", help="folder for compact.json and compact.md")
    parser.add_argument("--update-card", action="store_true",
                        help="serve the chosen TFLite file (copied beside the card), or the .h5 when none qualifies")
    parser.add_argument("--readme", help="README whose compact block to rewrite (README.md)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- measuring


def representative_pictures(data: str, audit_path: str | None, count: int, seed: int, size: int) -> np.ndarray:
    """``count`` training pictures drawn at random, prepared as serving prepares an upload."""
    from coinspotter.preprocessing import batch_model_input

    samples = dataset.list_split(data, "train")
    if audit_path:
        samples = dataset.read_audit(audit_path).training_samples(samples)
    chosen = np.random.default_rng(seed).choice(len(samples), size=min(count, len(samples)), replace=False)
    pictures, _, _ = evaluate.load_pictures([samples[i].path for i in sorted(chosen)], True, "representative")
    return batch_model_input(pictures, size)


def accuracy_row(classifier, eval_sets, batch_size: int, reference: dict | None) -> tuple[dict, dict]:
    """(headline figures of one model on every set, its probabilities per set), with its agreement with the .h5."""
    row, probabilities = evaluate.set_figures(classifier, eval_sets, batch_size)
    if reference is not None:
        for name, probs in probabilities.items():
            same = probs.argmax(1) == reference[name].argmax(1)
            row[name]["top1_agrees_with_h5"] = round(float(same.mean()), 4)
            row[name]["max_probability_difference"] = round(float(np.abs(probs - reference[name]).max()), 4)
    return row, probabilities


def interleaved_latency(classifiers: dict, pictures: list, repeats: int, rounds: int) -> dict:
    """Per model: median over ``rounds`` of ``evaluate.latency``'s median ms per picture, every model timed
    once per round in turn, so slow spells of a shared machine fall on all of them."""
    from tqdm import tqdm

    per_round: dict[str, list[dict]] = {name: [] for name in classifiers}
    loads = []
    for _ in tqdm(range(rounds), desc="latency rounds", unit="round"):
        for name, classifier in classifiers.items():
            figures = evaluate.latency(classifier, pictures, repeats)
            loads.append(figures["load_average_1min"])
            per_round[name].append(figures)
    result = {}
    for name, runs in per_round.items():
        result[name] = {key: round(float(np.median([run[key] for run in runs])), 2)
                        for key in runs[0] if key.endswith("_ms_per_image")}
        result[name]["rounds"] = [{k: v for k, v in run.items() if k != "repeats"} for run in runs]
    return {"models": result, "load_average_1min_min": min(loads), "load_average_1min_max": max(loads)}


# ----------------------------------------------------------------------------------------- choosing


def accuracy_drops(row: dict, baseline: dict) -> dict:
    """How far a model is below the .h5 (positive: worse) on the two figures the choice is made on."""
    return {
        "validation_leak_free_top1": round(baseline["validation"]["leak_free"]["top1"]
                                           - row["validation"]["leak_free"]["top1"], 4),
        "real_photos_value_accuracy": round(baseline[evaluate.REAL_PHOTOS]["value_accuracy"]
                                            - row[evaluate.REAL_PHOTOS]["value_accuracy"], 4),
    }


def choose(rows: dict, tolerance: float) -> tuple[str | None, dict]:
    """(variant to serve or None for the .h5, why for every variant)."""
    h5 = rows["h5"]
    verdicts, candidates = {}, []
    for name, row in rows.items():
        if name == "h5":
            continue
        drops = row["drop_vs_h5"]
        worse = {k: v for k, v in drops.items() if v > tolerance + 1e-9}
        faster_1 = row["latency"]["batch_1_ms_per_image"] < h5["latency"]["batch_1_ms_per_image"]
        faster_8 = row["latency"]["batch_8_ms_per_image"] <= h5["latency"]["batch_8_ms_per_image"]
        if worse:
            verdicts[name] = "less accurate than the .h5: " + ", ".join(
                f"{k.replace('_', ' ')} {100 * v:.1f} points lower" for k, v in worse.items())
        elif not (faster_1 and faster_8):
            verdicts[name] = "as accurate, but not faster than the .h5 at " + (
                "batch 1" if not faster_1 else "batch 8")
        else:
            candidates.append(name)
            verdicts[name] = "as accurate as the .h5 and faster"
    if not candidates:
        return None, verdicts
    # the fastest at batch 1; but timings on a shared box wobble by several percent, so among files within
    # SAME_SPEED of the fastest, the smallest (float16 over float32 when they run alike)
    fastest = min(rows[n]["latency"]["batch_1_ms_per_image"] for n in candidates)
    alike = [n for n in candidates if rows[n]["latency"]["batch_1_ms_per_image"] <= fastest * (1 + SAME_SPEED)]
    best = min(alike, key=lambda n: (rows[n]["file_bytes"], rows[n]["latency"]["batch_1_ms_per_image"]))
    verdicts[best] += (f"; the smallest of those within {100 * SAME_SPEED:.0f}% of the fastest at batch 1: served"
                       if len(alike) > 1 else "; the fastest of those at batch 1: served")
    return best, verdicts


def update_card(card_path: Path, result: dict, choice: str | None, files: dict[str, Path]) -> str:
    """Write the choice into the card (re-read just before, so other fields written meanwhile survive)."""
    from coinspotter.modelcard import read_card

    card = read_card(card_path)
    folder = card_path.parent
    previous = card.serving.get("file")
    if choice is None:
        card.serving = {}
        message = f"{card.name}: serving {card.file} (no TFLite file qualified)"
    else:
        row = result["models"][choice]
        target = folder / f"{card.name}.{choice}.tflite"
        shutil.copyfile(files[choice], target)
        h5 = result["models"]["h5"]
        card.serving = {
            "file": target.name,
            "format": "tflite",
            "variant": choice,
            "source_file": card.file,
            "source_sha256": result["source_sha256"],
            "why": (f"{row['verdict']}: {row['latency']['batch_1_ms_per_image']} vs "
                    f"{h5['latency']['batch_1_ms_per_image']} ms per picture at batch 1, "
                    f"{row['latency']['batch_8_ms_per_image']} vs {h5['latency']['batch_8_ms_per_image']} at batch 8; "
                    f"leak-free validation top-1 {row['validation']['leak_free']['top1']} vs "
                    f"{h5['validation']['leak_free']['top1']}, real-photo value accuracy "
                    f"{row[evaluate.REAL_PHOTOS]['value_accuracy']} vs {h5[evaluate.REAL_PHOTOS]['value_accuracy']} "
                    f"(allowed drop {result['tolerance']}); the .h5 stays the source of truth"),
            "file_mb": round(row["file_bytes"] / 1e6, 2),
            "validation_leak_free_top1": row["validation"]["leak_free"]["top1"],
            "real_photos_value_accuracy": row[evaluate.REAL_PHOTOS]["value_accuracy"],
            "latency_ms_per_image": {k: v for k, v in row["latency"].items() if k.endswith("_ms_per_image")},
            "measured_by": result["measured_by"],
            "measured_at": result["measured_at"],
        }
        # the dense kernel beside it, for "Show why" without TensorFlow (as training/export_tflite.py writes it)
        from coinspotter.compact import NotPooledDense, cam_file_name, write_cam_kernel
        from coinspotter.inference import load_keras_model

        try:
            layer = write_cam_kernel(load_keras_model(card.model_path), folder / cam_file_name(card.name))
            card.serving.update(cam=cam_file_name(card.name), feature_layer=layer)
        except NotPooledDense as error:
            log.warning("%s: no class activation map: %s", card.name, error)
        message = f"{card.name}: serving {target.name}"
    card.save(card_path)
    if previous and previous != card.serving.get("file") and re.fullmatch(rf"{re.escape(card.name)}\.\w+\.tflite", previous):
        (folder / previous).unlink(missing_ok=True)  # a file this script put there earlier, no longer named
    return message


# ----------------------------------------------------------------------------------------- reporting

LABELS = {"h5": "Keras `.h5` (source)", "float32": "TFLite float32", "float16": "TFLite float16",
          "dynamic_int8": "TFLite dynamic-range int8", "full_int8": "TFLite full int8"}


def table(result: dict) -> list[str]:
    lines = [
        "| model | file MB | val top-1 all / leak-free | real photos value acc. / top-1 | top-1 agrees with .h5 (val / real) "
        "| ms/img batch 1 | ms/img batch 8 | speed-up b1 / b8 | served |",
        "|---|---:|---|---|---|---:|---:|---|---|",
    ]
    h5 = result["models"]["h5"]["latency"]
    for name, row in result["models"].items():
        val, real, lat = row["validation"], row[evaluate.REAL_PHOTOS], row["latency"]
        agree = (f"{100 * val['top1_agrees_with_h5']:.1f}% / {100 * real['top1_agrees_with_h5']:.1f}%"
                 if "top1_agrees_with_h5" in val else "–")
        served = "**yes**" if name == (result["served"] or "h5") else "no"
        lines.append(
            f"| {LABELS[name]} | {row['file_bytes'] / 1e6:.2f} | {100 * val['top1']:.1f} / **{100 * val['leak_free']['top1']:.1f}** "
            f"| **{100 * real['value_accuracy']:.1f}** / {100 * real['top1']:.1f} | {agree} "
            f"| {lat['batch_1_ms_per_image']:.1f} | {lat['batch_8_ms_per_image']:.1f} "
            f"| {h5['batch_1_ms_per_image'] / lat['batch_1_ms_per_image']:.2f}× / "
            f"{h5['batch_8_ms_per_image'] / lat['batch_8_ms_per_image']:.2f}× | {served} |"
        )
    return lines


def summary_lines(result: dict) -> list[str]:
    load = result["latency_load"]
    served = result["served"]
    lines = [
        f"Validation: {result['models']['h5']['validation']['images']} pictures, "
        f"{result['models']['h5']['validation']['leak_free']['images']} of them leak-free; real photos: "
        f"{result['models']['h5'][evaluate.REAL_PHOTOS]['images']}. Latency: median CPU ms per picture of "
        f"`predict_images` (letterbox + network), {result['latency_rounds']} interleaved rounds of "
        f"{result['latency_repeats']} calls, {result['cpu_count']} cores, 1-minute load average "
        f"{load['load_average_1min_min']}–{load['load_average_1min_max']} during the timing"
        + (" (other work was running: absolute times are noisy, ratios between rows of this run are the "
           "meaningful part)." if load["load_average_1min_max"] > 0.5 * result["cpu_count"] else "."),
        "",
        f"Served: **{result['models'][served]['served_file'] if served else result['source_file']}** — "
        + (result["models"][served]["verdict"] if served else "no TFLite file is as accurate and faster; the .h5 is served")
        + ".",
    ]
    for name, row in result["models"].items():
        if name != "h5":
            lines.append(f"- {LABELS[name]}: {row['verdict']}.")
    if "full_int8" in result["models"]:
        within = result["models"]["full_int8"]["within_one_point"]
        lines.append(f"- Full int8 {'keeps' if within else 'does **not** keep'} accuracy within 1 point of the .h5 "
                     f"(calibrated on {result['representative']} training pictures).")
    return lines


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compact.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    lines = [f"# Compact student: {result['model']} as TensorFlow Lite", "",
             f"Measured by `{result['measured_by']}` at {result['measured_at']} (source `{result['source_file']}`, "
             f"sha256 {result['source_sha256'][:12]}…).", ""]
    lines += table(result) + [""] + summary_lines(result) + [""]
    (out / "compact.md").write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from coinspotter.inference import KerasClassifier, TFLiteClassifier, configure_tensorflow_threads, file_sha256
    from coinspotter.modelcard import read_card

    configure_tensorflow_threads()
    command = "python benchmarks/compact.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    card_path = Path(args.card)
    card = read_card(card_path)
    if card.is_ensemble:
        raise SystemExit(f"{card.name} is an ensemble: compact one of its members")
    source_sha256 = file_sha256(card.model_path)
    keras_classifier = KerasClassifier(card)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    representative = None
    if "full_int8" in args.variants:
        representative = representative_pictures(args.data, args.audit, args.representative, args.seed, card.input_size)
    files, export_seconds = {}, {}
    for variant in args.variants:
        started = time.perf_counter()
        content = tflite_bytes(keras_classifier.model, variant, representative)
        export_seconds[variant] = round(time.perf_counter() - started, 1)
        files[variant] = work / f"{card.name}.{variant}.tflite"
        files[variant].write_bytes(content)
        log.info("%s: %d bytes in %.1f s", variant, len(content), export_seconds[variant])

    with evaluate.coin_search():  # the server's coin search cuts the pictures
        eval_sets = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))
    classifiers = {"h5": keras_classifier}
    classifiers.update({variant: TFLiteClassifier(card, path=files[variant]) for variant in args.variants})

    result = {
        "model": card.name, "card": str(card_path), "source_file": card.file, "source_sha256": source_sha256,
        "measured_by": command, "measured_at": time.strftime("%Y-%m-%d %H:%M"), "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
        "tolerance": args.tolerance, "representative": len(representative) if representative is not None else 0,
        "latency_repeats": args.latency_repeats, "latency_rounds": args.latency_rounds,
        "leak_free_rule": f"audit {args.audit}" if args.audit else "original bytes identical to no training image",
        "tflite_threads": classifiers[args.variants[0]].threads if args.variants else None,
        "models": {},
    }
    reference = None
    for name, classifier in classifiers.items():
        row, probabilities = accuracy_row(classifier, eval_sets, args.batch_size, reference)
        reference = reference or probabilities
        path = card.model_path if name == "h5" else files[name]
        row["file_bytes"] = path.stat().st_size
        if name != "h5":
            row["export_seconds"] = export_seconds[name]
        result["models"][name] = row
    for name, row in result["models"].items():
        if name != "h5":
            row["drop_vs_h5"] = accuracy_drops(row, result["models"]["h5"])
    if "full_int8" in result["models"]:
        drops = result["models"]["full_int8"]["drop_vs_h5"]
        result["models"]["full_int8"]["within_one_point"] = all(v <= FULL_INT8_LIMIT + 1e-9 for v in drops.values())

    timing = interleaved_latency(classifiers, eval_sets[0].pictures, args.latency_repeats, args.latency_rounds)
    result["latency_load"] = {k: v for k, v in timing.items() if k != "models"}
    for name, figures in timing["models"].items():
        result["models"][name]["latency"] = figures
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]

    served, verdicts = choose(result["models"], args.tolerance)
    result["served"] = served
    for name, verdict in verdicts.items():
        result["models"][name]["verdict"] = verdict
    if served:
        result["models"][served]["served_file"] = f"{card.name}.{served}.tflite"
    if args.update_card:
        result["card_update"] = update_card(card_path, result, served, files)
        log.info("%s", result["card_update"])
    write_reports(result, Path(args.out))
    intro = (f"Measured by `{result['measured_by']}` ({result['measured_at']}; [reports/compact.md](reports/compact.md)):")
    return publish(args.readme, "compact", intro, table(result) + [""] + summary_lines(result))


if __name__ == "__main__":
    raise SystemExit(main())
