"""Discrimination and stability measures of a score: AUC, Gini, KS, PSI.

Scores are *higher is better*; outcomes are 1 for bad (the event) and 0 for good.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from trustledger.errors import InputError

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


def auc(scores: Floats, bad: Ints) -> float:
    """Probability that a random good outranks a random bad (ties count half)."""
    bad = np.asarray(bad)
    n_bad = int(bad.sum())
    n_good = int(bad.size - n_bad)
    if n_bad == 0 or n_good == 0:
        raise InputError("auc: both outcomes must be present")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, dtype=np.float64)
    sorted_scores = scores[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    rank_sum_good = float(ranks[bad == 0].sum())
    return (rank_sum_good - n_good * (n_good + 1) / 2.0) / (n_good * n_bad)


def gini(auc_value: float) -> float:
    """Gini coefficient (accuracy ratio) from an AUC: ``2 * AUC - 1``."""
    return 2.0 * auc_value - 1.0


def ks(scores: Floats, bad: Ints) -> float:
    """Kolmogorov-Smirnov statistic: largest gap between the bads' and goods' score CDFs."""
    bad = np.asarray(bad)
    thresholds = np.unique(scores)
    bad_scores = np.sort(scores[bad == 1])
    good_scores = np.sort(scores[bad == 0])
    if bad_scores.size == 0 or good_scores.size == 0:
        raise InputError("ks: both outcomes must be present")
    cdf_bad = np.searchsorted(bad_scores, thresholds, side="right") / bad_scores.size
    cdf_good = np.searchsorted(good_scores, thresholds, side="right") / good_scores.size
    return float(np.max(np.abs(cdf_bad - cdf_good)))


def psi(expected: Floats, actual: Floats, *, buckets: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected``'s quantile buckets.

    Under 0.1 is usually read as stable, 0.1 to 0.25 as a moderate shift, above 0.25
    as a major one.
    """
    if expected.size == 0 or actual.size == 0:
        raise InputError("psi: both samples must be non-empty")
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, buckets + 1)[1:-1]))
    e = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=edges.size + 1)
    a = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=edges.size + 1)
    # A floor keeps an empty bucket from making the index infinite.
    pe = np.maximum(e / expected.size, 1e-6)
    pa = np.maximum(a / actual.size, 1e-6)
    return float(np.sum((pa - pe) * np.log(pa / pe)))
