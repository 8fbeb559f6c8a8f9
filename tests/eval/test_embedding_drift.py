"""Embedding-drift measures that compare two unaligned spaces (two models)."""

from __future__ import annotations

import numpy as np
import pytest

from ragwall.eval.drift.embedding import domain_auc, linear_cka, neighbour_overlap


def test_cka_and_neighbours_see_a_rotation_as_the_same_geometry():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 32))
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    assert linear_cka(x, x @ q) == pytest.approx(1.0, abs=1e-9)
    assert neighbour_overlap(x, x @ q) == pytest.approx(1.0)
    # Different sizes are fine (two models' dimensions differ): a padded copy is the same.
    assert linear_cka(x, np.hstack([x, np.zeros((200, 8))])) == pytest.approx(1.0, abs=1e-9)


def test_cka_and_neighbours_see_unrelated_spaces_as_different():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 32)), rng.normal(size=(200, 48))
    assert linear_cka(x, y) < 0.3
    assert neighbour_overlap(x, y) < 0.2


def test_domain_auc_is_chance_for_one_distribution_and_high_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    assert 0.35 < domain_auc(a, b) < 0.65
    assert domain_auc(a, b + 1.0) > 0.95
