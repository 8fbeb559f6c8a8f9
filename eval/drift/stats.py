"""Drift statistics: small pure functions over ranked lists and paired per-query scores.

- :func:`jaccard`: overlap of two top-k sets (1.0 for two empty sets: nothing changed).
- :func:`rbo`: rank-biased overlap, extrapolated (Webber, Moffat & Zobel 2010, eq. 32), for two
  rankings without ties; 1.0 for identical rankings, and top-weighted by ``p`` (p = 0.9 puts
  about 86 % of the weight on the first 10 ranks).
- :func:`paired_bootstrap_ci` and :func:`randomization_p`: the uncertainty of a mean paired
  difference (candidate − baseline per query), so a drop can be told from noise. Both resample
  with a fixed seed, so a report is reproducible.
- :func:`ks`: the two-sample Kolmogorov–Smirnov statistic and p-value (SciPy).
- :func:`summary`: mean, median, 10th percentile and the share below 0.5 of per-query values.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000
SEED = 20261126


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """|A ∩ B| / |A ∪ B| of two collections of ids (as sets)."""
    sa, sb = set(a), set(b)
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


def rbo(a: Sequence[str], b: Sequence[str], p: float = 0.9) -> float:
    """Extrapolated rank-biased overlap of two rankings (each id at most once).

    For lists of lengths s <= l (Webber et al. 2010, eq. 32)::

        RBO_ext = (1-p)/p * (sum_{d=1..l} X_d/d p^d + sum_{d=s+1..l} X_s (d-s)/(s d) p^d)
                  + (X_l - X_s)/l + X_s/s) p^l

    where X_d is the overlap of the two prefixes of depth d (the shorter list contributing all
    its s items past depth s). Two empty rankings give 1.0; one empty ranking gives 0.0.
    """
    if not 0.0 < p < 1.0:
        raise ValueError("p must be in (0, 1)")
    if len(set(a)) != len(a) or len(set(b)) != len(b):
        raise ValueError("a ranking lists each id at most once")
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    s, length = len(short), len(long_)
    if length == 0:
        return 1.0
    if s == 0:
        return 0.0
    seen_short: set[str] = set()
    seen_long: set[str] = set()
    overlap = 0
    x = [0] * (length + 1)  # x[d]: overlap of the prefixes of depth d
    for d in range(1, length + 1):
        item_long = long_[d - 1]
        if d <= s:
            item_short = short[d - 1]
            if item_short == item_long:
                overlap += 1
            else:
                overlap += (item_short in seen_long) + (item_long in seen_short)
            seen_short.add(item_short)
        elif item_long in seen_short:
            overlap += 1
        seen_long.add(item_long)
        x[d] = overlap
    x_s, x_l = x[s], x[length]
    total = sum(x[d] / d * p**d for d in range(1, length + 1))
    total += sum(x_s * (d - s) / (s * d) * p**d for d in range(s + 1, length + 1))
    return float((1 - p) / p * total + ((x_l - x_s) / length + x_s / s) * p**length)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, median, 10th percentile and the share of values below 0.5 (rounded to 4 places)."""
    if not len(values):
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "share_below_0.5": 0.0}
    arr = np.asarray(values, dtype=float)
    return {
        "mean": round(float(arr.mean()), 4),
        "median": round(float(np.median(arr)), 4),
        "p10": round(float(np.percentile(arr, 10)), 4),
        "share_below_0.5": round(float((arr < 0.5).mean()), 4),
    }


def paired_bootstrap_ci(
    baseline: Sequence[float],
    candidate: Sequence[float],
    confidence: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """A percentile bootstrap interval for mean(candidate − baseline), resampling queries."""
    diff = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if diff.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return (float(lo), float(hi))


def randomization_p(
    baseline: Sequence[float],
    candidate: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> float:
    """Two-sided p-value of a paired randomization (sign-flip) test of mean difference = 0.

    Under the null, each query's two scores are exchangeable, so the sign of its difference is a
    coin flip; the p-value is the share of flipped means at least as far from 0 as the observed
    one (counting the observed assignment, so it is never 0).
    """
    diff = np.asarray(candidate, dtype=float) - np.asarray(baseline, dtype=float)
    if diff.size == 0 or not np.any(diff):
        return 1.0
    observed = abs(diff.mean())
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(resamples, diff.size))
    flipped = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(flipped >= observed - 1e-12) + 1) / (resamples + 1))


def ks(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """The two-sample KS statistic and its p-value; ``None`` when a side has no values."""
    if not len(a) or not len(b):
        return {"statistic": None, "p_value": None}
    import warnings

    from scipy.stats import ks_2samp

    with warnings.catch_warnings():  # identical samples make SciPy warn about its exact method
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ks_2samp(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return {"statistic": round(float(res.statistic), 4), "p_value": float(res.pvalue)}
