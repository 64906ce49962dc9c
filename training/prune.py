"""How far can the student be pruned? A global magnitude pruning sweep, then a short fine-tune with masks held.

    python training/prune.py --readme README.md

(the defaults: ``--card web-app/models/student.json --data ../shared/data/coin-images
--real-photos ../shared/data/real-photos-dev --audit reports/audit.json --views runs/views --out reports``).

1. **Sweep** (no retraining): for each ``--rates`` value r (0.1 ... 0.9), the r smallest-magnitude
   fraction of all convolution, depthwise-convolution and dense *kernels* of the model, pooled across
   layers (global magnitude pruning), is set to zero; biases and BatchNorm are left alone. Every pruned
   model is evaluated the server's way on the same pictures, decoded and localised once by
   ``training/evaluate.py``: top-1 on all and on leak-free validation, and the real photos' value accuracy.
2. **Fine-tune** (``--finetune-rates``, default ``auto``): at the highest swept rate whose leak-free
   validation top-1 stays within ``--within`` (1 point) of the unpruned model's (or ``--fallback-rate``
   when none does), and at the next rate up, the model is pruned again and its top (the layers above
   ``--cut``, block_12_add: what ``train.py`` trained) is trained for ``--epochs`` on features of the
   cached training views (``runs/views``, written by ``training/views.py``; ``--views-per-face`` random views
   of each face, run once through the pruned, frozen bottom), Adam at ``--learning-rate``, label
   smoothing 0.1, BatchNorm frozen, and the pruned weights set back to zero after every step, so the
   masks hold. The epoch kept is the best on leak-free validation (epoch 0 = no fine-tune); the real
   photos are only measured, never used to choose. The fine-tuned model is saved to ``--work``.
3. Writes ``--out``/prune.json, prune.md and prune.png (accuracy against pruning rate), and with
   ``--readme`` the table between the README's ``<!-- prune:begin -->`` and ``<!-- prune:end -->`` lines.

Nothing here changes the served model: a zero weight still costs a multiply in a dense kernel, so pruning
buys size only once compressed (the ``zlib`` column), and speed only with a sparse runtime.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))

import evaluate  # noqa: E402
from report_blocks import add_data_arguments, publish  # noqa: E402

log = logging.getLogger("prune")
PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, "prune")
    parser.add_argument("--views", default="runs/views", help="training views of training/views.py (read only)")
    parser.add_argument("--rates", type=float, nargs="+", default=[round(0.1 * i, 1) for i in range(1, 10)])
    parser.add_argument("--within", type=float, default=0.01,
                        help="largest leak-free top-1 drop (fraction) a rate may cost to be fine-tuned")
    parser.add_argument("--fallback-rate", type=float, default=0.5, help="rate fine-tuned when no rate keeps --within")
    parser.add_argument("--finetune-rates", nargs="+", default=["auto"],
                        help="rates to fine-tune; auto: the best within --within and the next one up; none: skip")
    parser.add_argument("--cut", default="block_12_add", help="last frozen layer of the backbone while fine-tuning")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--views-per-face", type=int, default=1, help="training views per face fed to the fine-tune")
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="cache/prune", help="folder for the fine-tuned models")
    parser.add_argument("--out", default="reports", help="folder for prune.json, prune.md and prune.png")
    parser.add_argument("--readme", help="README whose prune block to rewrite (README.md)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------- pruning


def prunable_kernels(model) -> list:
    """The kernel variable of every convolution, depthwise convolution and dense layer, nested models
    included (each once, in layer order). Biases, BatchNorm and everything else are not in it."""
    import keras

    kernels, seen = [], set()

    def walk(layer):
        if isinstance(layer, keras.Model):
            for inner in layer.layers:
                walk(inner)
        elif type(layer).__name__ in PRUNABLE and id(layer.kernel) not in seen:
            seen.add(id(layer.kernel))
            kernels.append(layer.kernel)

    walk(model)
    return kernels


def global_magnitude_masks(kernels: list[np.ndarray], rate: float) -> list[np.ndarray]:
    """Masks (True = kept) that zero exactly round(rate * n) of the n kernel weights, the smallest in
    magnitude across all kernels together (ties broken by position, so the count is exact)."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"a pruning rate is a fraction in [0, 1), got {rate}")
    sizes = [k.size for k in kernels]
    magnitudes = np.concatenate([np.abs(np.asarray(k, dtype=np.float32)).ravel() for k in kernels])
    pruned = int(round(rate * magnitudes.size))
    keep = np.ones(magnitudes.size, dtype=bool)
    if pruned:
        keep[np.argpartition(magnitudes, pruned - 1, kind="introselect")[:pruned]] = False
    masks, start = [], 0
    for kernel, size in zip(kernels, sizes):
        masks.append(keep[start : start + size].reshape(np.shape(kernel)))
        start += size
    return masks


def prune_model(model, rate: float) -> tuple[list, list[np.ndarray]]:
    """Global magnitude pruning of ``model``'s kernels in place -> (kernel variables, their masks)."""
    kernels = prunable_kernels(model)
    masks = global_magnitude_masks([k.numpy() for k in kernels], rate)
    apply_masks(kernels, masks)
    return kernels, masks


def apply_masks(kernels: list, masks: list[np.ndarray]) -> None:
    for kernel, mask in zip(kernels, masks):
        kernel.assign(kernel.numpy() * mask)


def sparsity(model) -> dict:
    """Zeros among the prunable kernels, and among all the model's weights."""
    kernels = prunable_kernels(model)
    kernel_zeros = sum(int(np.sum(k.numpy() == 0)) for k in kernels)
    kernel_count = sum(int(np.prod(k.shape)) for k in kernels)
    weights = [np.asarray(w) for w in model.get_weights()]
    all_zeros = sum(int(np.sum(w == 0)) for w in weights)
    all_count = sum(w.size for w in weights)
    return {"kernel_weights": kernel_count, "kernel_sparsity": round(kernel_zeros / kernel_count, 4),
            "all_weights": all_count, "overall_sparsity": round(all_zeros / all_count, 4)}


def layer_sparsity(model) -> dict[str, float]:
    """Zeros in each prunable kernel, by layer (global pruning spreads them very unevenly)."""
    return {kernel.path.rsplit("/", 1)[0]: round(float(np.mean(kernel.numpy() == 0)), 4)
            for kernel in prunable_kernels(model)}


def uneven(model) -> dict:
    """How unevenly a global cut fell: the most pruned layer, and the layers left with under 10% of their weights."""
    layers = layer_sparsity(model)
    worst = max(layers, key=layers.get)
    return {"most_pruned_layer": worst, "most_pruned_layer_sparsity": layers[worst],
            "layers_over_90_percent_pruned": sorted(name for name, value in layers.items() if value > 0.9),
            "layer_sparsity": layers}


def compressed_mb(model) -> float:
    """Size of all weights as float32 compressed with zlib (level 6): what zeros buy on disk."""
    raw = b"".join(np.asarray(w, dtype=np.float32).tobytes() for w in model.get_weights())
    return round(len(zlib.compress(raw, 6)) / 1e6, 2)


# ----------------------------------------------------------------------------------------- measuring


def headline(figures: dict) -> dict:
    return {"validation_top1": figures["validation"]["top1"],
            "validation_leak_free_top1": figures["validation"]["leak_free"]["top1"],
            "real_photos_top1": figures[evaluate.REAL_PHOTOS]["top1"],
            "real_photos_value_accuracy": figures[evaluate.REAL_PHOTOS]["value_accuracy"]}


def finetune_rates(requested: list[str], sweep: list[dict], within: float, fallback: float) -> tuple[list[float], str]:
    """The rates to fine-tune and why."""
    if requested == ["none"]:
        return [], "fine-tune skipped (--finetune-rates none)"
    if requested != ["auto"]:
        return [float(r) for r in requested], "rates given by --finetune-rates"
    base = sweep[0]["validation_leak_free_top1"]
    rows = sweep[1:]
    kept = [row for row in rows if base - row["validation_leak_free_top1"] <= within + 1e-9]
    if not kept:
        return [fallback], (f"no rate keeps leak-free top-1 within {100 * within:.0f} point(s): the fallback rate "
                            f"{fallback} (where the MobileNetV2 study held its accuracy)")
    best = max(row["rate"] for row in kept)
    above = [row["rate"] for row in rows if row["rate"] > best]
    chosen = [best] + ([min(above)] if above else [])
    return chosen, (f"{best}: the highest rate within {100 * within:.0f} point(s) of the unpruned leak-free top-1"
                    + (f"; {min(above)}: the next rate up, to see what a fine-tune buys back" if above else ""))


# ----------------------------------------------------------------------------------------- fine-tuning


def views_features(bottom, views_dir: Path, per_face: int, seed: int, batch_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(features of ``per_face`` random views of every face through the pruned bottom, their class ids, views)."""
    meta = json.loads((views_dir / "meta.json").read_text())
    views = np.load(views_dir / "views.npy", mmap_mode="r")
    class_ids = np.load(views_dir / "labels.npy")
    faces, count = meta["faces"], meta["views"]
    rng = np.random.default_rng(seed)
    picks = np.sort(np.concatenate([rng.choice(count, size=min(per_face, count), replace=False) * faces + face
                                    for face in range(faces)]))
    features = np.zeros((len(picks), *bottom.output_shape[1:]), dtype=np.float16)
    for start in tqdm(range(0, len(picks), batch_size), desc="bottom features (views)", unit="batch", mininterval=10):
        batch = np.asarray(views[picks[start : start + batch_size]], dtype=np.float32)
        features[start : start + len(batch)] = np.asarray(bottom(batch, training=False), dtype=np.float16)
    return features, class_ids[picks % faces], len(picks)


def finetune(classifier, rate: float, originals: list[np.ndarray], eval_sets, args) -> dict:
    """Prune ``classifier.model`` at ``rate`` and train its top with the masks held; returns its history."""
    import keras

    from coinspotter.preprocessing import batch_model_input
    from train import split_model

    model = classifier.model
    kernels = prunable_kernels(model)
    for kernel, original in zip(kernels, originals):
        kernel.assign(original)
    kernels, masks = prune_model(model, rate)
    backbone = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    bottom, top_logits, backbone_top = split_model(model, backbone, args.cut)
    backbone_top.trainable = True  # what train.py trains: the backbone above the cut (BatchNorm frozen) and the head
    for layer in backbone_top.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    top_ids = {id(v) for v in top_logits.trainable_weights}
    held = [(k, keras.ops.convert_to_tensor(m, dtype=k.dtype)) for k, m in zip(kernels, masks) if id(k) in top_ids]

    index_of = {c: i for i, c in enumerate(classifier.class_ids)}
    features, class_ids, count = views_features(bottom, Path(args.views), args.views_per_face, args.seed, args.batch_size)
    labels = np.array([index_of[int(c)] for c in class_ids])
    validation = eval_sets[0]
    size = classifier.card.input_size
    val_features = np.concatenate([
        np.asarray(bottom(batch_model_input(validation.pictures[s : s + args.batch_size], size), training=False))
        for s in range(0, len(validation.pictures), args.batch_size)])
    val_labels = np.array([index_of[c] for c in validation.class_ids])
    free = validation.leak_free

    def leak_free_top1() -> float:
        logits = np.asarray(top_logits.predict(val_features, batch_size=128, verbose=0))
        return round(float(np.mean(logits[free].argmax(1) == val_labels[free])), 4)

    classes = len(classifier.class_ids)
    top_logits.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                       loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=args.label_smoothing))
    history = [{"epoch": 0, "validation_leak_free_top1": leak_free_top1()}]
    best = (history[0]["validation_leak_free_top1"], 0, [w.numpy() for w in top_logits.weights])
    rng = np.random.default_rng(args.seed + 1)
    for epoch in range(1, args.epochs + 1):
        started, losses = time.perf_counter(), []
        order = rng.permutation(count)
        for start in tqdm(range(0, count, args.batch_size), desc=f"fine-tune {rate} epoch {epoch}/{args.epochs}",
                          unit="batch", mininterval=10):
            index = np.sort(order[start : start + args.batch_size])
            x = np.asarray(features[index], dtype=np.float32)
            y = keras.ops.one_hot(labels[index], classes)
            losses.append(float(top_logits.train_on_batch(x, y)))
            for kernel, mask in held:  # the masks hold: pruned weights go back to zero after every step
                kernel.assign(kernel * mask)
        entry = {"epoch": epoch, "loss": round(float(np.mean(losses)), 4),
                 "validation_leak_free_top1": leak_free_top1(), "seconds": round(time.perf_counter() - started, 1)}
        history.append(entry)
        log.info("rate %s %s", rate, entry)
        if entry["validation_leak_free_top1"] > best[0]:
            best = (entry["validation_leak_free_top1"], epoch, [w.numpy() for w in top_logits.weights])
    for weight, value in zip(top_logits.weights, best[2]):
        weight.assign(value)
    return {"rate": rate, "training_views": count, "best_epoch": best[1], "history": history}


# ----------------------------------------------------------------------------------------- reporting


def table(result: dict) -> list[str]:
    base = result["sweep"][0]
    lines = ["| pruned | kernel sparsity | most pruned layer | layers > 90% pruned | zlib MB | val top-1 all / leak-free "
             "| Δ leak-free | real photos value acc. / top-1 | Δ value acc. |", "|---|---:|---|---:|---:|---|---:|---|---:|"]
    rows = [(f"{row['rate']:.1f}", row) for row in result["sweep"]]
    rows += [(f"{row['rate']:.1f} + fine-tune ({row['best_epoch']} of {result['epochs']} epochs)", row)
             for row in result["finetuned"]]
    for label, row in rows:
        lines.append(
            f"| {label} | {100 * row['kernel_sparsity']:.0f}% "
            f"| `{row['most_pruned_layer'].split('/')[-1]}` {100 * row['most_pruned_layer_sparsity']:.0f}% "
            f"| {len(row['layers_over_90_percent_pruned'])} | {row['zlib_mb']:.1f} "
            f"| {100 * row['validation_top1']:.1f} / **{100 * row['validation_leak_free_top1']:.1f}** "
            f"| {100 * (row['validation_leak_free_top1'] - base['validation_leak_free_top1']):+.1f} "
            f"| **{100 * row['real_photos_value_accuracy']:.1f}** / {100 * row['real_photos_top1']:.1f} "
            f"| {100 * (row['real_photos_value_accuracy'] - base['real_photos_value_accuracy']):+.1f} |")
    return lines


def summary_lines(result: dict) -> list[str]:
    lines = [f"Global magnitude pruning of the {result['kernels']} convolution, depthwise and dense kernels "
             f"({result['sweep'][0]['kernel_weights'] / 1e6:.2f} M of the model's {result['sweep'][0]['all_weights'] / 1e6:.2f} M "
             f"weights; biases and BatchNorm untouched), no retraining unless marked; validation "
             f"{result['validation_images']} pictures ({result['leak_free_images']} leak-free), real photos "
             f"{result['real_photo_images']}. Fine-tuned rates: {result['finetune_reason']}."]
    for row in result["finetuned"]:
        swept = next((s for s in result["sweep"] if abs(s["rate"] - row["rate"]) < 1e-9), None)
        before = f" (from {100 * swept['validation_leak_free_top1']:.1f} without it)" if swept else ""
        epochs = ", ".join(f"{100 * h['validation_leak_free_top1']:.1f}" for h in row["history"][1:])
        kept = (f"epoch {row['best_epoch']} kept" if row["best_epoch"] else
                "no epoch beat the pruned model, which is kept as it was (a lower --learning-rate may do better)")
        lines.append(f"- Rate {row['rate']}: fine-tuning the top (above `{result['cut']}`) on {row['training_views']} "
                     f"cached training views, masks held, at learning rate {result.get('learning_rate', '?')}: "
                     f"leak-free top-1 after each epoch {epochs}; {kept}: "
                     f"{100 * row['validation_leak_free_top1']:.1f}{before}; sparsity after: "
                     f"{100 * row['kernel_sparsity']:.1f}%; {row['finetune_seconds']:.0f} s on this machine "
                     f"(load average {row['load_average_1min']}).")
    return lines


def plot(result: dict, path: Path) -> None:
    plt = evaluate._pyplot()
    sweep = result["sweep"]
    rates = [row["rate"] for row in sweep]
    figure, axis = plt.subplots(figsize=(7, 4.2))
    series = [("validation_leak_free_top1", "leak-free validation top-1", "tab:blue"),
              ("validation_top1", "validation top-1 (all)", "tab:cyan"),
              ("real_photos_value_accuracy", "real photos value accuracy", "tab:orange")]
    for key, label, colour in series:
        axis.plot(rates, [100 * row[key] for row in sweep], marker="o", label=label, color=colour)
        tuned = [row for row in result["finetuned"]]
        if tuned and key != "validation_top1":
            axis.scatter([row["rate"] for row in tuned], [100 * row[key] for row in tuned], marker="*", s=160,
                         color=colour, edgecolor="black", zorder=5, label=f"{label}, fine-tuned")
    limit = 100 * (sweep[0]["validation_leak_free_top1"] - result["within"])
    axis.axhline(limit, color="grey", linestyle="--", linewidth=1, label=f"unpruned leak-free top-1 − {100 * result['within']:.0f} point")
    axis.set_xlabel("fraction of kernel weights pruned (global magnitude)")
    axis.set_ylabel("accuracy, %")
    axis.set_ylim(0, 100)
    axis.set_xticks(rates)
    axis.set_title(f"{result['model']}: accuracy against pruning rate")
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "prune.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    plot(result, out / "prune.png")
    lines = [f"# Pruning the {result['model']}", "", f"Measured by `{result['measured_by']}` at {result['measured_at']}.", ""]
    lines += table(result) + [""] + summary_lines(result) + ["", "![accuracy against pruning rate](prune.png)", ""]
    (out / "prune.md").write_text("\n".join(lines), encoding="utf-8")


# ----------------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import keras

    from coinspotter.inference import KerasClassifier, configure_tensorflow_threads
    from coinspotter.modelcard import read_card

    configure_tensorflow_threads()
    keras.utils.set_random_seed(args.seed)
    command = "python training/prune.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    card = read_card(args.card)
    classifier = KerasClassifier(card)
    model = classifier.model
    kernels = prunable_kernels(model)
    originals = [k.numpy() for k in kernels]
    eval_sets = evaluate.load_eval_sets(args.data, args.real_photos, args.audit, ("validation",))

    result = {"model": card.name, "card": args.card, "measured_by": command, "measured_at": time.strftime("%Y-%m-%d %H:%M"),
              "cpu_count": os.cpu_count(), "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
              "kernels": len(kernels), "within": args.within, "cut": args.cut, "epochs": args.epochs,
              "learning_rate": args.learning_rate, "views_per_face": args.views_per_face,
              "validation_images": len(eval_sets[0].keys), "leak_free_images": int(eval_sets[0].leak_free.sum()),
              "real_photo_images": len(eval_sets[1].keys), "sweep": [], "finetuned": []}
    for rate in tqdm([0.0] + sorted(args.rates), desc="prune sweep", unit="rate"):
        for kernel, original in zip(kernels, originals):
            kernel.assign(original)
        prune_model(model, rate)
        figures, _ = evaluate.set_figures(classifier, eval_sets, args.batch_size, f"rate {rate}")
        row = {"rate": rate, **sparsity(model), "zlib_mb": compressed_mb(model), **headline(figures),
               **uneven(model), "figures": figures}
        result["sweep"].append(row)
        log.info("rate %.1f: %s", rate, {k: v for k, v in row.items() if k not in ("figures", "layer_sparsity")})

    rates, result["finetune_reason"] = finetune_rates(args.finetune_rates, result["sweep"], args.within, args.fallback_rate)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for rate in rates:
        started = time.perf_counter()
        tuned = finetune(classifier, rate, originals, eval_sets, args)
        tuned["finetune_seconds"] = round(time.perf_counter() - started, 1)
        tuned["load_average_1min"] = round(os.getloadavg()[0], 2)
        figures, _ = evaluate.set_figures(classifier, eval_sets, args.batch_size, f"rate {rate} fine-tuned")
        tuned.update({**sparsity(model), "zlib_mb": compressed_mb(model), **headline(figures), **uneven(model),
                      "figures": figures})
        tuned["saved_to"] = str(work / f"{card.name}_pruned_{rate:.1f}_finetuned.h5")
        model.save(tuned["saved_to"])
        result["finetuned"].append(tuned)
        log.info("rate %.1f fine-tuned: %s", rate,
                 {k: v for k, v in tuned.items() if k not in ("figures", "history", "layer_sparsity")})
    for kernel, original in zip(kernels, originals):
        kernel.assign(original)
    write_reports(result, Path(args.out))
    intro = (f"Measured by `{result['measured_by']}` ({result['measured_at']}; [reports/prune.md](reports/prune.md), "
             "plot [reports/prune.png](reports/prune.png)):")
    return publish(args.readme, "prune", intro, table(result) + [""] + summary_lines(result))


if __name__ == "__main__":
    raise SystemExit(main())
