"""One picture of the coin finder's stages on coin-scenes/dev, from the reports `coin_scenes.py` wrote.

    python benchmarks/plot_finder_stages.py --reports reports/coin_finder_dev_stage1.json:"stage 1" ... \\
        reports/coin_finder_dev.json:"stage 9 (served)" --out reports/coin_finder_stages.png

Each report is ``FILE:LABEL``, in the order to draw them. Per stage: recall, precision and the share of photos
counted exactly right, over all photos (solid) and over the one source the bars are missed on (dashed, ``--source``),
with the issue's bars as grey lines and Hough's figures (from the first report) as the first point. Only figures
already in the reports are drawn: nothing is measured here.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# The bars of issue 13 on coin-scenes/dev.
BARS = {"recall": 0.95, "precision": 0.95, "count_exact": 0.80}
TITLES = {"recall": "recall (IoU >= 0.5)", "precision": "precision", "count_exact": "photos counted exactly right"}


def parse_report(spec: str) -> tuple[Path, str]:
    path, sep, label = spec.partition(":")
    if not sep or not label:
        raise SystemExit(f"a report is FILE:LABEL, not {spec!r}")
    return Path(path), label


def read_rows(specs: list[str], source: str) -> list[dict]:
    """One row per stage (Hough's first, from the first report): its label and its figures overall and on source."""
    rows = []
    for index, spec in enumerate(specs):
        path, label = parse_report(spec)
        searches = (["hough"] if index == 0 else []) + ["finder"]
        try:
            results = json.loads(path.read_text())["results"]
            rows += [{"label": "Hough" if search == "hough" else label, "all": results[search]["all"],
                      "source": results[search].get(f"source: {source}")} for search in searches]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise SystemExit(f"{path}: not a coin_scenes.py report ({error!r})") from None
    return rows


def plot(rows: list[dict], source: str, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharex=True)
    positions = range(len(rows))
    for axis, (key, bar) in zip(axes, BARS.items()):
        axis.plot(positions, [row["all"][key] for row in rows], "o-", color="tab:blue", label="all photos")
        on_source = [row["source"][key] if row["source"] else float("nan") for row in rows]
        axis.plot(positions, on_source, "s--", color="tab:orange", label=f"source: {source}")
        axis.axhline(bar, color="grey", linewidth=1)
        axis.text(0, bar, f" bar {bar:.2f}", color="grey", va="bottom", fontsize=8)
        axis.set_title(TITLES[key])
        axis.set_ylim(0.2, 1.02)
        axis.set_xticks(list(positions))
        axis.set_xticklabels([row["label"] for row in rows], rotation=45, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    figure.suptitle("Coin finder on coin-scenes/dev (evaluation only), stage by stage")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", nargs="+", required=True, help="FILE:LABEL, in drawing order")
    parser.add_argument("--source", default="ynsgkturk-try", help="the source drawn dashed")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    plot(read_rows(args.reports, args.source), args.source, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
