""""Coins from": a classification restricted to the currencies the user says the coins can be.

Someone back from Spain knows their coins are euros. The model's probabilities are kept for the classes of the
chosen currencies only and renormalised over them: ``p' = p * mask / sum(p * mask)``, the model's answer given
that the coin is one of those currencies. Order among the kept classes does not change; every figure that follows
from the probabilities (top-k, "not sure", the totals) follows from ``p'``.

``mass = sum(p * mask)`` is what the model itself gave those currencies. Where it is about zero (the photo looks
like nothing of the kind to the model, or the probabilities underflowed), ``p'`` is the uniform distribution over
the kept classes: still a distribution, never a division by zero or a NaN; and such a coin is shown as not sure
whatever ``p'`` says (``too_little_mass``), as ``p'`` is then the model's noise renormalised.
"""
from __future__ import annotations

import numpy as np

from .catalog import Catalog, load_catalog

# Below this probability of the chosen currencies, the renormalised answer is not trusted (see the module's text;
# benchmarks/currency_hint.py reports how the coins under it fare).
MIN_MASS = 1e-3


def currency_mask(class_ids: list[int], currencies, catalog: Catalog | None = None) -> np.ndarray:
    """True for each model output whose class is of one of ``currencies``."""
    catalog = catalog or load_catalog()
    wanted = set(currencies)
    return np.array([catalog[class_id].currency in wanted for class_id in class_ids], dtype=bool)


def restrict(probabilities, mask) -> tuple[np.ndarray, np.ndarray]:
    """(``p'``, ``mass``) for rows of probabilities (n, k) and a mask of the kept outputs, (k,) for all rows or
    (n, k) for one per row. Non-finite or negative entries count as 0. A row without mass on the kept outputs
    gets the uniform distribution over them; a row with no kept output at all is a ValueError."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2:
        raise ValueError("probabilities must be rows (n, k)")
    mask = np.broadcast_to(np.asarray(mask, dtype=bool), probabilities.shape)
    kept_outputs = mask.sum(axis=1)
    if (kept_outputs == 0).any():
        raise ValueError("the mask keeps no output")
    kept = np.where(mask & np.isfinite(probabilities) & (probabilities > 0), probabilities, 0.0)
    mass = kept.sum(axis=1)
    empty = ~(mass > 0)
    uniform = mask / kept_outputs[:, None]
    restricted = np.where(empty[:, None], uniform, kept / np.where(empty, 1.0, mass)[:, None])
    return restricted, mass


def too_little_mass(mass) -> np.ndarray:
    """True where the model gave the chosen currencies too little probability for its renormalised answer to
    be trusted (a coin to show as not sure)."""
    return np.asarray(mass) < MIN_MASS
