"""XLM's exponential smoothing q_i = p_i^alpha / sum_j p_j^alpha, checked against hand values."""

from __future__ import annotations

import math

import pytest

from xling.errors import XlingError
from xling.tokenization.sampling import sample_counts, smoothed_probs

SIZES = {"en": 900, "de": 90, "sw": 10}  # p = 0.9, 0.09, 0.01


@pytest.mark.parametrize("alpha, expected", [
    (1.0, {"en": 0.9, "de": 0.09, "sw": 0.01}),
    (0.0, {"en": 1 / 3, "de": 1 / 3, "sw": 1 / 3}),
    # sqrt(0.9), sqrt(0.09), sqrt(0.01) normalised
    (0.5, {k: v / (math.sqrt(0.9) + 0.3 + 0.1) for k, v in {"en": math.sqrt(0.9), "de": 0.3, "sw": 0.1}.items()}),
])
def test_smoothed_probs_formula(alpha, expected):
    q = smoothed_probs(SIZES, alpha)
    assert list(q) == list(SIZES)
    assert q == pytest.approx(expected, abs=1e-12)
    assert sum(q.values()) == pytest.approx(1.0, abs=1e-12)


def test_smaller_alpha_boosts_small_languages():
    q = [smoothed_probs(SIZES, a)["sw"] for a in (1.0, 0.7, 0.5, 0.3, 0.0)]
    assert q == sorted(q) and q[0] < q[-1]


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_sample_counts_sum_and_largest_remainder(alpha):
    counts = {"en": 10_000, "de": 3_000, "fr": 1_000}
    total = 1_001
    n = sample_counts(counts, alpha, total)
    q = smoothed_probs(counts, alpha)
    assert sum(n.values()) == total
    for k in counts:
        assert math.floor(q[k] * total) <= n[k] <= math.ceil(q[k] * total)


def test_sample_counts_hand_example():
    # alpha=1 on 6:3:1 with total 7: wants 4.2, 2.1, 0.7 -> floors 4, 2, 0, leftover 1 to fr (0.7)
    assert sample_counts({"en": 600, "de": 300, "fr": 100}, 1.0, 7) == {"en": 4, "de": 2, "fr": 1}


def test_sample_counts_caps_at_available():
    n = sample_counts({"en": 1000, "sw": 5}, 0.0, 100)  # uniform wants 50 of sw, it has 5
    assert n["sw"] == 5
    assert n["en"] >= 50 and n["en"] <= 1000


@pytest.mark.parametrize("counts, alpha, match", [
    ({}, 0.5, "empty"),
    ({"en": 10, "de": 0}, 0.5, "no data for de"),
    ({"en": 10}, 1.5, "alpha must be in"),
    ({"en": 10}, -0.1, "alpha must be in"),
])
def test_errors(counts, alpha, match):
    with pytest.raises(XlingError, match=match):
        smoothed_probs(counts, alpha)


def test_sample_counts_redistributes_shortfall():
    from xling.tokenization.sampling import sample_counts

    assert sample_counts({"en": 900, "sw": 10}, 0.0, 200) == {"en": 190, "sw": 10}
    # two uncapped keys share the shortfall in proportion to their probabilities
    got = sample_counts({"a": 1000, "b": 1000, "c": 2}, 0.0, 32)
    assert got == {"a": 15, "b": 15, "c": 2}
    assert sample_counts({"a": 5, "b": 5}, 0.5, 100) == {"a": 5, "b": 5}
