"""Uncertainty of every EvalIGMU figure: a count ``n`` and a 95 % interval (``low``, ``high``).

* Rates (MultClf forgetting, ASR, YOLO person rate, NudeNet ratio, CLIP zero-shot/accuracy): the Wilson score
  interval of ``k`` successes in ``n`` trials (scipy's ``binomtest(...).proportion_ci(method="wilson")``).
* Means over images or pairs (CSDR, LPIPS, CLIP score): a seeded bootstrap over the items (scipy's
  ``stats.bootstrap``, BCa; percentile where every resample is equal), so the interval is reproducible.
* FID (a distance between two image sets, not a mean): a delete-a-group jackknife over the image pairs (the
  bootstrap would repeat images, which biases FID upward), value ± t · SE, clipped at 0.
* Several training seeds: a two-level bootstrap, seeds then items within each seed (:func:`hierarchical_interval`).

Every interval is a dict ``{"low", "high", "n", "confidence", "interval"}`` (``interval`` names the method), merged
into the metric's result next to its value, so ``report.json`` shows ``value, low, high, n`` for each figure.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
JACKKNIFE_GROUPS = 20


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> dict:
    """Wilson score interval of ``successes`` in ``n`` trials (a share in 0..1)."""
    from scipy.stats import binomtest

    successes, n = int(successes), int(n)
    if n <= 0:
        raise ValueError("A rate over no trials has no interval; pass at least one image/prompt.")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must lie in 0..n; got {successes} of {n}.")
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"low": float(ci.low), "high": float(ci.high), "n": n, "confidence": confidence, "interval": "wilson"}


def rate_interval(flags: Sequence[bool] | np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """Wilson interval of a rate given its per-item 0/1 outcomes."""
    flags = np.asarray(flags, dtype=float)
    return wilson_interval(int(flags.sum()), int(flags.size), confidence)


def bootstrap_interval(values: Sequence[float] | np.ndarray, statistic: Callable = np.mean, seed: int = 0,
                       n_resamples: int = BOOTSTRAP_RESAMPLES, confidence: float = CONFIDENCE) -> dict:
    """Seeded bootstrap interval of ``statistic`` over ``values`` (one per image or pair; scipy's BCa)."""
    from scipy.stats import bootstrap

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("A statistic over no items has no interval.")
    if not np.isfinite(x).all():
        raise ValueError("Values hold NaN or infinite entries; an interval over them would be meaningless.")
    n = int(x.size)
    if n == 1 or np.ptp(x) == 0:  # nothing varies: every resample gives the value itself
        v = float(statistic(x))
        return {"low": v, "high": v, "n": n, "confidence": confidence,
                "interval": "none (one item)" if n == 1 else "bootstrap (every item equal)"}
    res = bootstrap((x,), lambda a, axis: statistic(a, axis=axis), n_resamples=n_resamples,
                    confidence_level=confidence, method="BCa", random_state=np.random.default_rng(seed), vectorized=True)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    method = f"bootstrap BCa ({n_resamples} resamples, seed {seed})"
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined (degenerate resamples): percentile
        res = bootstrap((x,), lambda a, axis: statistic(a, axis=axis), n_resamples=n_resamples,
                        confidence_level=confidence, method="percentile", random_state=np.random.default_rng(seed),
                        vectorized=True)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        method = f"bootstrap percentile ({n_resamples} resamples, seed {seed})"
    return {"low": low, "high": high, "n": n, "confidence": confidence, "interval": method}


def jackknife_interval(n: int, statistic_without: Callable[[np.ndarray], float], value: float,
                       groups: int = JACKKNIFE_GROUPS, confidence: float = CONFIDENCE, lower_bound: float = 0.0,
                       seed: int = 0) -> dict:
    """Delete-a-group jackknife: ``statistic_without(kept_indices)`` on the items left after removing each of
    ``groups`` random groups; interval value ± t(g-1) · SE (for statistics such as FID that are not a mean)."""
    from scipy.stats import t

    groups = min(groups, n)
    if groups < 2:
        return {"low": value, "high": value, "n": n, "confidence": confidence, "interval": "none (fewer than 2 items)"}
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, groups)
    thetas = np.array([statistic_without(np.setdiff1d(order, part)) for part in parts])
    se = math.sqrt((groups - 1) / groups * float(np.sum((thetas - thetas.mean()) ** 2)))
    half = float(t.ppf(0.5 + confidence / 2, groups - 1)) * se
    return {"low": max(lower_bound, value - half), "high": value + half, "n": n, "confidence": confidence,
            "interval": f"delete-a-group jackknife ({groups} groups, seed {seed}), value ± t·SE"}


def hierarchical_interval(groups: Sequence[Sequence[float]], seed: int = 0, n_resamples: int = BOOTSTRAP_RESAMPLES,
                          confidence: float = CONFIDENCE) -> dict:
    """Interval of the pooled mean of per-item values grouped by training seed: each resample draws seeds with
    replacement, then items with replacement within each drawn seed (a two-level percentile bootstrap), so the
    interval covers both the training seed and the image sampling."""
    arrays = [np.asarray(g, dtype=float) for g in groups]
    if not arrays or any(a.size == 0 for a in arrays):
        raise ValueError("Every seed needs at least one item.")
    if len(arrays) == 1:
        return bootstrap_interval(arrays[0], seed=seed, n_resamples=n_resamples, confidence=confidence)
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    picks = rng.integers(0, len(arrays), size=(n_resamples, len(arrays)))
    for b in range(n_resamples):
        total, count = 0.0, 0
        for s in picks[b]:
            a = arrays[s]
            total += float(a[rng.integers(0, a.size, size=a.size)].sum())
            count += a.size
        stats[b] = total / count
    low, high = np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"low": float(low), "high": float(high), "n": int(sum(a.size for a in arrays)), "seeds": len(arrays),
            "confidence": confidence,
            "interval": f"two-level bootstrap: seeds, then items within each seed ({n_resamples} resamples, seed "
                        f"{seed}; percentile)"}


def with_interval(result: dict, interval: dict, scale: float = 1.0) -> dict:
    """``result`` with the interval's fields added (``low``/``high`` times ``scale``, e.g. 100 for a rate in %)."""
    return {**result, **interval, "low": interval["low"] * scale, "high": interval["high"] * scale}


INTERVAL_KEYS = ("low", "high", "n", "confidence", "interval")


def interval_fields(result: dict) -> dict:
    """The interval part of a metric result (what ``return_interval=True`` adds to an ``evaluate`` module's output)."""
    return {k: result[k] for k in INTERVAL_KEYS if k in result}


def interval_text(entry: dict, key: str, fmt: str = ".3f") -> str:
    """``0.42 [0.30, 0.55] n=64`` for a report table (the value alone where the entry carries no interval)."""
    value = entry.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–" if value is None else str(value)
    text = format(value, fmt)
    if str(entry.get("interval", "")).startswith("exact"):
        return text + " (exact)"
    if isinstance(entry.get("low"), (int, float)) and isinstance(entry.get("high"), (int, float)):
        text += f" [{format(entry['low'], fmt)}, {format(entry['high'], fmt)}]"
    if entry.get("n") is not None:
        text += f" n={entry['n']}"
    return text


def required_sample_size(p1: float, p2: float, power: float = 0.8, alpha: float = 0.05) -> int:
    """Images per set to tell rates ``p1`` and ``p2`` apart (two-sided test of two independent proportions at level
    ``alpha`` with ``power``), by the arcsine (Cohen's h) normal approximation: n = 2 ((z_{1-α/2} + z_power) / h)²."""
    from scipy.stats import norm

    for name, p in (("p1", p1), ("p2", p2)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be a rate in 0..1, got {p}.")
    h = abs(2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2)))
    if h == 0:
        raise ValueError("p1 equals p2: no sample size tells equal rates apart.")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return math.ceil(2 * (z / h) ** 2)


def detectable_difference(n: int, p: float = 0.5, power: float = 0.8, alpha: float = 0.05) -> float:
    """The smallest rate difference below ``p`` that ``n`` images per set resolve with ``power`` (the inverse of
    :func:`required_sample_size`, solved on the arcsine scale)."""
    from scipy.stats import norm

    if n <= 0:
        raise ValueError("n must be positive.")
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    h = z * math.sqrt(2 / n)
    phi = 2 * math.asin(math.sqrt(p)) - h
    if phi <= 0:
        return p
    return p - math.sin(phi / 2) ** 2
