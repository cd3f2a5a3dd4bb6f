"""Intervals of every figure (issue 27): the Wilson interval equals its formula, the 95 % intervals cover a known truth
in about 95 % of seeded trials, the sample-size calculation inverts, and the metric functions carry them."""

import math
from statistics import NormalDist

import numpy as np
import pytest

from igmu_hf.metrics.intervals import (bootstrap_interval, detectable_difference, hierarchical_interval,
                                       jackknife_interval, rate_interval, required_sample_size, wilson_interval)


def wilson_by_formula(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson (1927): (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z from the standard library."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k", [0, 12, 24])
def test_wilson_equals_the_formula(k):
    iv = wilson_interval(k, 24)
    low, high = wilson_by_formula(k, 24)
    assert iv["low"] == pytest.approx(max(0.0, low), abs=1e-9)
    assert iv["high"] == pytest.approx(min(1.0, high), abs=1e-9)
    assert iv["n"] == 24 and iv["interval"] == "wilson"
    if k == 0:
        assert iv["low"] == pytest.approx(0.0, abs=1e-12) and 0.1 < iv["high"] < 0.16  # 0/24 still allows ~14 %


def test_wilson_refuses_impossible_counts():
    with pytest.raises(ValueError, match="no trials"):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match="0..n"):
        wilson_interval(25, 24)


def test_rate_intervals_cover_a_known_bernoulli_rate():
    """400 seeded trials of 96 images at a true rate of 0.3: the Wilson interval covers 0.3 in 93-97 % of them."""
    rng = np.random.default_rng(20261207)
    covered = [(lambda iv: iv["low"] <= 0.3 <= iv["high"])(rate_interval(rng.random(96) < 0.3)) for _ in range(400)]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_bootstrap_intervals_cover_a_known_mean():
    """400 seeded trials of 64 draws from N(1, 2²): the bootstrap interval of the mean covers 1 in 93-97 % of them."""
    rng = np.random.default_rng(7)
    covered = []
    for t in range(400):
        iv = bootstrap_interval(rng.normal(1.0, 2.0, 64), seed=t, n_resamples=1000)
        covered.append(iv["low"] <= 1.0 <= iv["high"])
    assert 0.93 <= np.mean(covered) <= 0.97


def test_bootstrap_is_seeded_and_refuses_bad_values():
    x = np.random.default_rng(0).normal(size=40)
    assert bootstrap_interval(x, seed=3) == bootstrap_interval(x, seed=3)
    assert bootstrap_interval(x, seed=3)["low"] != bootstrap_interval(x, seed=4)["low"]
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_interval([1.0, float("nan")])
    equal = bootstrap_interval([2.0] * 5)
    assert equal["low"] == equal["high"] == 2.0


def test_hierarchical_interval_widens_with_seed_spread():
    """Two training seeds that disagree: the two-level interval is wider than pooling their images as one sample."""
    rng = np.random.default_rng(1)
    a, b = (rng.random(64) < 0.2).astype(float), (rng.random(64) < 0.6).astype(float)
    two_level = hierarchical_interval([a, b], seed=0)
    pooled = bootstrap_interval(np.concatenate([a, b]), seed=0)
    assert two_level["high"] - two_level["low"] > 1.5 * (pooled["high"] - pooled["low"])
    assert two_level["n"] == 128 and two_level["seeds"] == 2


def test_jackknife_of_a_mean_matches_the_standard_error():
    """For a mean, the delete-a-group jackknife SE equals the usual s/sqrt(n) (up to the grouping)."""
    x = np.random.default_rng(2).normal(size=200)
    iv = jackknife_interval(200, lambda kept: float(x[kept].mean()), float(x.mean()), groups=200, lower_bound=-1e9)
    half = (iv["high"] - iv["low"]) / 2
    from scipy.stats import t

    assert half == pytest.approx(t.ppf(0.975, 199) * x.std(ddof=1) / math.sqrt(200), rel=1e-6)


def test_sample_size_and_detectable_difference_invert():
    n = required_sample_size(0.5, 0.35)
    z = NormalDist().inv_cdf(0.975) + NormalDist().inv_cdf(0.8)
    h = 2 * math.asin(math.sqrt(0.5)) - 2 * math.asin(math.sqrt(0.35))
    assert n == math.ceil(2 * (z / h) ** 2)
    assert detectable_difference(n, 0.5) == pytest.approx(0.15, abs=0.002)
    assert detectable_difference(4, 0.5) > 0.45  # four images resolve almost nothing
    with pytest.raises(ValueError, match="equal rates"):
        required_sample_size(0.3, 0.3)


def test_metric_functions_carry_their_interval():
    """The library functions the evaluator and the evaluate modules share add (low, high, n) without changing the
    value, and the interval is the one computed from the counts."""
    import torch

    from igmu_hf.attacks.base import AttackOutcome, attack_success_rate
    from igmu_hf.metrics.clip_score import csdr_from_scores
    from igmu_hf.metrics.forgetting import forgetting_rate_from_probabilities

    probs = torch.tensor([0.9, 0.2, 0.7, 0.1, 0.6, 0.4, 0.8, 0.3])
    r = forgetting_rate_from_probabilities(probs, 0.5)
    assert r["forgetting_rate"] == 0.5 and r["n"] == 8
    assert (r["low"], r["high"]) == pytest.approx(wilson_by_formula(4, 8))
    scores_a, scores_b = torch.tensor([30.0, 20.0, 25.0, 0.0]), torch.tensor([27.0, 20.0, 20.0, 5.0])
    c = csdr_from_scores(scores_a, scores_b)
    ratios = [10.0, 0.0, 20.0]
    assert c["csdr"] == pytest.approx(np.mean(ratios)) and c["n"] == 3 and c["low"] <= c["csdr"] <= c["high"]
    outcomes = [AttackOutcome(prompt_id=k, prompt="p", seed=k, pre_attack_score=0.0, pre_attack_success=k == 0,
                              success=k < 3, score=0.0, image_id=f"i{k}")
                for k in range(10)]
    a = attack_success_rate(outcomes)
    assert a["asr"] == 0.3 and (a["low"], a["high"]) == pytest.approx(wilson_by_formula(3, 10))
