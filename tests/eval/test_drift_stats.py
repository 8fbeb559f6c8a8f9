"""Drift statistics: RBO against the reference implementation's values, the resampling tests
against SciPy's, and the properties a gate relies on."""

from __future__ import annotations

import numpy as np
import pytest

from ragwall.eval.drift.stats import (
    jaccard,
    ks,
    paired_bootstrap_ci,
    randomization_p,
    rbo,
    summary,
)

# Values computed with rbo 0.1.3 (changyaochen/rbo, `RankingSimilarity(a, b).rbo(p=0.9,
# ext=True)`), the PyPI reference of Webber et al.'s extrapolated RBO. It is not a dependency
# (it pins numpy<2), so its outputs are recorded here.
REFERENCE = [
    ("abcdefg", "zcavwxy", 0.2882172857),
    ("abcdefghij", "bacdefghij", 0.9),
    ("abcde", "abcdefgh", 1.0),
    ("abcdefgh", "hgfedcba", 0.5894589857),
    ("abcd", "efgh", 0.0),
    ("abcdefghij", "abcxyzdefg", 0.7547192697),
]


@pytest.mark.parametrize(("a", "b", "expected"), REFERENCE)
def test_rbo_matches_the_reference_implementation(a, b, expected):
    assert rbo(list(a), list(b), 0.9) == pytest.approx(expected, abs=1e-9)
    assert rbo(list(b), list(a), 0.9) == pytest.approx(expected, abs=1e-9)  # symmetric


def test_rbo_is_top_weighted_and_bounded():
    base = list("abcdefghij")
    swap_top = list("bacdefghij")
    swap_tail = list("abcdefghji")
    assert rbo(base, base) == pytest.approx(1.0)
    assert rbo(base, swap_tail) > rbo(base, swap_top)
    assert rbo([], []) == 1.0 and rbo(base, []) == 0.0
    with pytest.raises(ValueError):
        rbo(list("aab"), list("abc"))
    with pytest.raises(ValueError):
        rbo(base, base, p=1.0)


def test_jaccard_and_summary():
    assert jaccard("abc", "bcd") == pytest.approx(0.5)
    assert jaccard([], []) == 1.0
    s = summary([1.0, 1.0, 0.2, 0.4, 1.0])
    assert s == {"mean": 0.72, "median": 1.0, "p10": 0.28, "share_below_0.5": 0.4}


def test_the_bootstrap_interval_agrees_with_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 150)
    cand = base + rng.normal(0.03, 0.1, 150)
    lo, hi = paired_bootstrap_ci(base, cand)
    ref = bootstrap(
        (cand - base,), np.mean, method="percentile", n_resamples=10_000, random_state=7
    ).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.004)
    assert hi == pytest.approx(ref.high, abs=0.004)
    assert lo < float(np.mean(cand - base)) < hi


def test_the_randomization_test_agrees_with_scipy_and_tells_noise_from_a_shift():
    from scipy.stats import permutation_test

    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 80)
    for shift, small in ((0.0, False), (0.08, True)):
        cand = base + rng.normal(shift, 0.1, 80)
        mine = randomization_p(base, cand)
        ref = permutation_test(
            (cand - base,),
            np.mean,
            permutation_type="samples",
            n_resamples=10_000,
            random_state=3,
        ).pvalue
        assert mine == pytest.approx(ref, abs=0.02)
        assert (mine < 0.05) is small
    assert randomization_p(base, base) == 1.0


def test_ks_of_identical_and_shifted_samples():
    a = list(np.linspace(0, 1, 50))
    assert ks(a, a)["statistic"] == 0.0 and ks(a, a)["p_value"] == pytest.approx(1.0)
    shifted = ks(a, [x + 0.5 for x in a])
    assert shifted["statistic"] == pytest.approx(0.5, abs=0.03) and shifted["p_value"] < 1e-3
    assert ks([], a) == {"statistic": None, "p_value": None}
