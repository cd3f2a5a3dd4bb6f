"""The benchmark's uncertainty: each cell's figures pooled over training seeds with their intervals, and the
confidence of its verdicts (Pareto fronts, "balanced", ranks) as the share of bootstrap resamples in which they hold.

A resample draws, per task, the images (or prompts, or pairs) of each metric with replacement, the same draw for
every method (the images are paired across methods by seed), and for each method its training seeds with
replacement; the aspect scores, fronts, balanced verdicts and ranks are recomputed on it
(:func:`igmu_hf.report.aspects_from_values`, :func:`igmu_hf.benchmark.pareto_front`). FID has no per-image values
and no aspect reads it; the edited-parameter share is exact per run and is drawn with the seeds.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .metrics.intervals import CONFIDENCE, hierarchical_interval
from .report import ASPECT_SOURCES, RADAR_HOW, aspects_from_values


ASPECTS = tuple(RADAR_HOW)
# the metrics the aspect scores read: metric key -> (aspect of the metric, value key)
ASPECT_METRICS = {key: (aspect, value) for sources in ASPECT_SOURCES.values() for aspect, key, value in sources}


def pooled_figure(entries: list[Any], value_key: str, seed: int = 0, has_interval: bool = True) -> dict | None:
    """One leaderboard figure over a cell's training seeds: ``{"value", "low", "high", "n", "interval"}`` (plus
    ``"seeds"``), ``{"skipped": why}``, or ``None`` when not measured. One seed: the report's own figure and interval.
    Several: the mean over every seed's items, with a two-level bootstrap interval (seeds, then items); figures
    without per-item values (FID, runtime) take the mean of the seeds and the envelope of their intervals."""
    entries = [e for e in entries if isinstance(e, dict)]
    if not entries:
        return None
    skipped = [e for e in entries if "skipped" in e]
    if skipped:
        return {"skipped": skipped[0]["skipped"]}
    values = [e.get(value_key) for e in entries]
    if any(not isinstance(v, (int, float)) or isinstance(v, bool) for v in values):
        return None
    if not has_interval:  # a secondary figure of the result (runtime next to the edited share): the seeds' range
        return {"value": float(np.mean(values)), "seeds": len(values), "low": float(min(values)),
                "high": float(max(values)), "n": len(values),
                "interval": "exact (one run)" if len(values) == 1 else "range over the seeds"}
    if len(entries) == 1:
        e = entries[0]
        return {"value": float(values[0]), **{k: e[k] for k in ("low", "high", "n", "interval") if k in e}}
    items = [e.get("per_item") for e in entries]
    first = entries[0]
    scale = 100.0 if value_key == "person_rate" else 1.0  # a rate in % has 0/1 items
    if all(isinstance(i, dict) and i for i in items) and first.get("interval", "").split(" ")[0] != "exact":
        groups = [np.array(list(i.values()), dtype=float) for i in items]
        iv = hierarchical_interval(groups, seed=seed)
        pooled = float(np.concatenate(groups).mean()) * scale
        return {"value": pooled, "low": iv["low"] * scale, "high": iv["high"] * scale, "n": iv["n"],
                "seeds": len(entries), "interval": iv["interval"]}
    lows = [e.get("low") for e in entries]
    highs = [e.get("high") for e in entries]
    out = {"value": float(np.mean(values)), "seeds": len(entries), "n": sum(int(e.get("n") or 0) for e in entries)}
    if all(isinstance(v, (int, float)) for v in lows + highs):
        out.update(low=float(min(lows)), high=float(max(highs)),
                   interval="envelope of the seeds' intervals (no per-item values to pool)")
    else:
        out.update(low=float(min(values)), high=float(max(values)), interval="range over the seeds")
    return out


def _item_matrix(per_items: list[dict], ids: list[str]) -> np.ndarray:
    """(seeds, items) values aligned on ``ids`` (NaN where a seed lacks an item, e.g. an undefined CSDR pair)."""
    return np.array([[p.get(i, np.nan) for i in ids] for p in per_items], dtype=float)


def _resampled_means(matrix: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(resamples, seeds) means of each seed's items under the (resamples, items) index draw."""
    taken = matrix[:, idx]  # (seeds, resamples, items)
    with np.errstate(invalid="ignore"):
        counts = np.sum(~np.isnan(taken), axis=-1)
        sums = np.nansum(taken, axis=-1)
        return (sums / np.where(counts == 0, np.nan, counts)).T


def task_resamples(task_items: dict[str, dict[str, list[dict]]], ref_items: dict[str, dict],
                   fixed: dict[str, dict[str, list[float]]], n_resamples: int,
                   rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each method's five aspect scores under ``n_resamples`` resamples of one task: ``{method: (B, 5) array}``
    (NaN where an aspect is not measured).

    ``task_items[method][metric]``: one ``per_item`` dict per training seed; ``ref_items[metric]``: the original's;
    ``fixed[method][metric]``: per-seed values of metrics without items (the edited share)."""
    methods = list(task_items)
    seeds = {m: max([len(v) for v in task_items[m].values()] + [len(v) for v in fixed.get(m, {}).values()] + [1])
             for m in methods}
    picks = {m: rng.integers(0, seeds[m], size=(n_resamples, seeds[m])) for m in methods}
    values: dict[str, dict[str, np.ndarray]] = {m: {} for m in methods}
    ref_cs = None
    for metric in ASPECT_METRICS:
        ids = sorted({i for m in methods for p in task_items[m].get(metric, []) for i in p}
                     | set(ref_items.get(metric, {})))
        if not ids:
            continue
        idx = rng.integers(0, len(ids), size=(n_resamples, len(ids)))
        for m in methods:
            per = task_items[m].get(metric)
            if not per:
                continue
            means = _resampled_means(_item_matrix(per, ids), idx)  # (B, seeds)
            chosen = np.take_along_axis(means, picks[m] % means.shape[1], axis=1)
            values[m][metric] = np.nanmean(chosen, axis=1)
        if metric == "clip_score_unrelated" and ref_items.get(metric):
            ref_cs = _resampled_means(_item_matrix([ref_items[metric]], ids), idx)[:, 0]
    for m in methods:
        for metric, per_seed in fixed.get(m, {}).items():
            arr = np.asarray(per_seed, dtype=float)
            values[m][metric] = arr[picks[m] % arr.size].mean(axis=1)
    out = {}
    for m in methods:
        scores = np.full((n_resamples, len(ASPECTS)), np.nan)
        for b in range(n_resamples):
            vals = {k: float(v[b]) for k, v in values[m].items() if np.isfinite(v[b])}
            a = aspects_from_values(vals, None if ref_cs is None else float(ref_cs[b]))
            scores[b] = [np.nan if a[x] is None else a[x] for x in ASPECTS]
        out[m] = scores
    return out


def _front(points: dict[str, np.ndarray], used: list[int]) -> set[str]:
    """The Pareto front of one resample on the aspects ``used`` (:func:`igmu_hf.benchmark.pareto_front`)."""
    from .benchmark import pareto_front

    objectives = tuple(ASPECTS[k] for k in used)
    return set(pareto_front({m: {a: float(p[k]) for a, k in zip(objectives, used)} for m, p in points.items()},
                            objectives)[0])


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    """Rank 1 = highest score; ties share the better rank."""
    return {m: 1 + sum(v > scores[m] for v in scores.values()) for m in scores}


def _share(counts: dict[str, int], n: int) -> dict[str, float]:
    return {m: c / n for m, c in counts.items()}


def _rank_summary(point: dict[str, int], draws: dict[str, list[int]]) -> dict[str, dict]:
    q = ((1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2)
    return {m: {"rank": point[m], "low": int(np.quantile(draws[m], q[0], method="lower")),
                "high": int(np.quantile(draws[m], q[1], method="higher"))} for m in point}


def verdict_confidence(resampled: dict[str, dict[str, np.ndarray]], point_scores: dict[str, dict[str, dict]],
                       objectives: tuple[str, ...], balanced_threshold: float) -> dict:
    """Shares of resamples in which each verdict holds, and percentile intervals of the aspect scores and ranks.

    ``resampled[task][method]``: (B, 5) aspect scores (:func:`task_resamples`); ``point_scores[task][method]``:
    the point aspect scores (the ranks' point values). A method's rank orders the mean of the aspects every method of
    the task was measured on (overall: of its mean aspect scores over the tasks)."""
    q = ((1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2)
    tasks_out: dict[str, Any] = {}
    n_res = next((len(a) for t in resampled.values() for a in t.values()), 0)
    for task, per in resampled.items():
        if not per:
            tasks_out[task] = {"front_share": {}, "rank": {}, "aspect_intervals": {}}
            continue
        measured = [k for k, a in enumerate(ASPECTS) if all(point_scores[task][m][a] is not None for m in per)]
        used = [k for k, a in enumerate(ASPECTS) if a in objectives and k in measured]
        front_counts = {m: 0 for m in per}
        rank_draws: dict[str, list[int]] = {m: [] for m in per}
        for b in range(n_res):
            points = {m: np.nan_to_num(per[m][b], nan=0.0) for m in per}
            for m in _front(points, used):
                front_counts[m] += 1
            for m, r in _ranks({m: float(points[m][measured].mean()) if measured else 0.0 for m in per}).items():
                rank_draws[m].append(r)
        point_rank = _ranks({m: float(np.mean([point_scores[task][m][ASPECTS[k]] for k in measured]))
                             if measured else 0.0 for m in per})
        tasks_out[task] = {
            "front_share": _share(front_counts, n_res), "rank": _rank_summary(point_rank, rank_draws),
            "rank_aspects": [ASPECTS[k] for k in measured],
            "aspect_intervals": {m: {a: (None if np.isnan(per[m][:, k]).all() else
                                         [float(x) for x in np.nanquantile(per[m][:, k], q)])
                                     for k, a in enumerate(ASPECTS)} for m in per}}
    complete = [m for m in next(iter(resampled.values()), {}) if all(m in resampled[t] for t in resampled)]
    overall: dict[str, Any] = {"front_share": {}, "balanced_share": {}, "rank": {}, "mean_aspect_intervals": {}}
    if complete and n_res:
        stacked = {m: np.stack([resampled[t][m] for t in resampled]) for m in complete}  # (tasks, B, 5)
        with warnings.catch_warnings():  # an aspect no task measured stays NaN, silently
            warnings.simplefilter("ignore", RuntimeWarning)
            means = {m: np.nanmean(stacked[m], axis=0) for m in complete}  # (B, 5), NaN where never measured
        measured = [k for k in range(len(ASPECTS)) if all(not np.isnan(means[m][:, k]).all() for m in complete)]
        used = [k for k in measured if ASPECTS[k] in objectives]
        front_counts = {m: 0 for m in complete}
        balanced_counts = {m: 0 for m in complete}
        rank_draws = {m: [] for m in complete}
        for b in range(n_res):
            points = {m: np.nan_to_num(means[m][b], nan=0.0) for m in complete}
            for m in _front(points, used):
                front_counts[m] += 1
            for m in complete:
                s = stacked[m][:, b, :]
                balanced_counts[m] += bool(np.all(s[~np.isnan(s)] >= balanced_threshold))
            for m, r in _ranks({m: float(points[m][measured].mean()) if measured else 0.0 for m in complete}).items():
                rank_draws[m].append(r)
        point_means = {m: [np.mean([point_scores[t][m][ASPECTS[k]] for t in resampled
                                    if point_scores[t][m][ASPECTS[k]] is not None]) for k in measured]
                       for m in complete}
        point_rank = _ranks({m: float(np.mean(point_means[m])) if measured else 0.0 for m in complete})
        overall = {"front_share": _share(front_counts, n_res), "balanced_share": _share(balanced_counts, n_res),
                   "rank": _rank_summary(point_rank, rank_draws), "rank_aspects": [ASPECTS[k] for k in measured],
                   "mean_aspect_intervals": {m: {a: (None if np.isnan(means[m][:, k]).all() else
                                                     [float(x) for x in np.nanquantile(means[m][:, k], q)])
                                                 for k, a in enumerate(ASPECTS)} for m in complete}}
    return {"resamples": n_res, "confidence": CONFIDENCE, "tasks": tasks_out, "overall": overall,
            "how": "bootstrap: per task, each metric's images (prompts for ASR) drawn with replacement, the same draw "
                   "for every method (paired seeds), and each method's training seeds drawn with replacement"}
