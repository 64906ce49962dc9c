"""Temperature scaling: make a model's confidence honest, so the page's "not sure" state means what it says.

    python training/calibrate.py runs/models/student_baseline.json --data ../shared/data/coin-images \
        --audit reports/audit.json

Label smoothing leaves a model under-confident (its 0.6 means right 8 times in 10). One temperature T,
fitted on the leak-free validation pictures (prepared the server's way) by minimising the negative
log-likelihood, divides the logits: the ranking of classes — and so every accuracy — is unchanged.
T is baked into the saved file (the "logits" layer's kernel and bias divided by T), so serving needs
nothing new; the card records T and the calibration error before and after. Never fitted on real photos.
The pictures are cut by the server's coin search (``--finder`` chooses another), so that the confidence is
honest on the crops the page will show.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize_scalar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from coinspotter import dataset  # noqa: E402
from coinspotter.evaluation import expected_calibration_error  # noqa: E402
from coinspotter.modelcard import read_card  # noqa: E402
from coinspotter.tta import temperature_scaled  # noqa: E402


def negative_log_likelihood(probabilities, labels, temperature) -> float:
    scaled = temperature_scaled(probabilities, temperature)
    return float(-np.mean(np.log(scaled[np.arange(len(labels)), labels] + 1e-12)))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    result = minimize_scalar(lambda t: negative_log_likelihood(probabilities, labels, t), bounds=(0.05, 20),
                             method="bounded")
    return float(result.x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("card", type=Path)
    parser.add_argument("--data", required=True)
    parser.add_argument("--audit")
    parser.add_argument("--tta", type=int, nargs="?", const=0, default=None, metavar="TURNS",
                        help="fit the card's tta_temperature, the average over its tta_rotations turns as served "
                             "(with TURNS: serve that many turns from now on, and fit for them)")
    parser.add_argument("--finder", choices=("hough", "learned"), default=None,
                        help="the coin search that cuts the pictures (default: the server's, as evaluate.py)")
    parser.add_argument("--finder-dir", type=Path, default=None, help="the learned finder's folder")
    args = parser.parse_args(argv)

    import keras

    import evaluate
    from coinspotter.inference import KerasClassifier, load_keras_model

    card = read_card(args.card)
    command = "python training/calibrate.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.tta is None and card.training.get("calibration"):
        raise SystemExit(f"{card.name} is calibrated already (T = {card.training['calibration']['temperature']})")
    if args.tta:
        if not 2 <= args.tta <= 16:
            raise SystemExit(f"--tta takes 2 to 16 turns, not {args.tta}")
        card.tta_rotations = args.tta
        card.save(card.path)
    if args.tta is not None and card.tta_rotations == 1:
        raise SystemExit(f"{card.name} is served without test-time augmentation (tta_rotations 1): nothing to fit")
    audit = dataset.read_audit(args.audit) if args.audit else None
    with evaluate.coin_search(args.finder, args.finder_dir) as cut_by:
        validation = evaluate.load_catalogue_split(Path(args.data), "validation", audit, localise=True)
    keep = validation.leak_free
    index_of = {class_id: i for i, class_id in enumerate(card.class_ids)}
    labels = np.array([index_of[c] for c in validation.class_ids])[keep]
    pictures = [p for p, k in zip(validation.pictures, keep) if k]
    fitted_on = f"{len(labels)} leak-free validation pictures, cut by {evaluate.COIN_SEARCH_NAMES[cut_by]}"

    if args.tta is not None:
        return calibrate_tta(card, pictures, labels, command, fitted_on)
    classifier = KerasClassifier(card)
    probabilities = evaluate.predict(classifier, pictures, 32, "validation")
    temperature = fit_temperature(probabilities, labels)
    calibrated = temperature_scaled(probabilities, temperature)

    model = load_keras_model(card.model_path)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([kernel / temperature, bias / temperature])
    model.save(card.model_path)
    check = KerasClassifier(card).predict_images(pictures[:16])
    np.testing.assert_allclose(check, calibrated[:16], atol=2e-3)  # the file now gives the calibrated output

    card.training["calibration"] = {
        "temperature": round(temperature, 4),
        "fitted_on": fitted_on,
        "nll_before": round(negative_log_likelihood(probabilities, labels, 1.0), 4),
        "nll_after": round(negative_log_likelihood(probabilities, labels, temperature), 4),
        "ece_before": expected_calibration_error(probabilities, labels)["ece"],
        "ece_after": expected_calibration_error(calibrated, labels)["ece"],
        "command": command,
    }
    card.save(args.card)
    print(card.training["calibration"])
    keras.backend.clear_session()
    return 0


def calibrate_tta(card, pictures, labels, command: str, fitted_on: str) -> int:
    """Fit the temperature of the average over turns (the card's ``tta_temperature``); the model file stays as it is.

    The model's own temperature was fitted on one view per picture; the average over turns is softer, so a
    second temperature, fitted on the same leak-free validation pictures with the turns in the loop, puts the
    served confidence right again. Accuracy is unchanged (one temperature keeps every ranking).
    """
    import evaluate
    from coinspotter.inference import ModelRegistry
    from coinspotter.tta import RotationAveraged

    served = ModelRegistry(card.path.parent).get(card.name)
    averaged = RotationAveraged(getattr(served, "inner", served), card.tta_rotations)  # before any earlier fit
    probabilities = evaluate.predict(averaged, pictures, 32, f"validation, {card.tta_rotations} turns")
    temperature = fit_temperature(probabilities, labels)
    card.tta_temperature = round(temperature, 4)
    card.training.setdefault("tta", {})["calibration"] = {
        "temperature": card.tta_temperature,
        "fitted_on": f"{fitted_on}, {card.tta_rotations} turns each",
        "nll_before": round(negative_log_likelihood(probabilities, labels, 1.0), 4),
        "nll_after": round(negative_log_likelihood(probabilities, labels, temperature), 4),
        "ece_before": expected_calibration_error(probabilities, labels)["ece"],
        "ece_after": expected_calibration_error(temperature_scaled(probabilities, temperature), labels)["ece"],
        "command": command,
    }
    card.save(card.path)
    print(card.training["tta"]["calibration"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
