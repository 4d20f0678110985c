"""Small statistics for honest comparisons: bootstrap confidence intervals of means and gaps.

Pure functions over plain sequences (None values dropped); numpy's seeded Generator makes every
interval reproducible. Used by signal reports, evaluations and the Results page.

    mean, (low, high) = bootstrap_mean_ci([1, 0, 1, 1])
    gap, (low, high) = bootstrap_diff_ci(teacher_scores, student_scores)   # teacher − student
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000


def _clean(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=np.float64)


def bootstrap_mean_ci(values: Sequence[float | None], *, confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> tuple[float | None, tuple[float | None, float | None]]:
    """Mean and percentile-bootstrap interval; (None, (None, None)) for no values."""
    x = _clean(values)
    if x.size == 0:
        return None, (None, None)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(x.mean()), (float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha)))


def bootstrap_diff_ci(a: Sequence[float | None], b: Sequence[float | None], *, paired: bool = False,
                      confidence: float = 0.95, resamples: int = DEFAULT_RESAMPLES,
                      seed: int = 0) -> tuple[float | None, tuple[float | None, float | None]]:
    """mean(a) − mean(b) with a bootstrap interval.

    Unpaired resamples each group on its own; paired (same items scored twice, e.g. one eval
    prompt before and after a round) resamples the item-wise differences, dropping pairs with a None.
    """
    if paired:
        if len(a) != len(b):
            raise ValueError("paired samples must have the same length")
        diffs = [x - y for x, y in zip(a, b) if x is not None and y is not None]
        return bootstrap_mean_ci(diffs, confidence=confidence, resamples=resamples, seed=seed)
    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return None, (None, None)
    rng = np.random.default_rng(seed)
    ma = xa[rng.integers(0, xa.size, size=(resamples, xa.size))].mean(axis=1)
    mb = xb[rng.integers(0, xb.size, size=(resamples, xb.size))].mean(axis=1)
    d = ma - mb
    alpha = (1 - confidence) / 2
    return float(xa.mean() - xb.mean()), (float(np.quantile(d, alpha)), float(np.quantile(d, 1 - alpha)))


def mean_or_none(values) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def excludes_zero(ci: tuple[float | None, float | None]) -> bool:
    """True when the interval lies strictly on one side of zero."""
    low, high = ci if ci is not None else (None, None)
    return low is not None and high is not None and (low > 0 or high < 0)
