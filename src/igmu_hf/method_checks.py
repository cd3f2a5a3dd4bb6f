"""The mini-world method check: does a method forget its target beyond doubt and leave the other values of the
target's factor in place? One definition, run by the test suite (``tests/test_method_checks.py``) and by its proof
(``benchmarks/bench_method_checks.py``, which runs every check under several generation and training seeds and
records each method's outcome in ``docs/results/method_checks.json``).

A check trains ``method`` on the embedded mini world with the world's preset (``igmu unlearn --method NAME``), draws
:data:`TARGET_IMAGES_PER_PROMPT` images for each of :data:`NUM_PROMPTS` prompts of the target and
:data:`IMAGES_PER_PROMPT` for each prompt of every other value of its factor, with the same prompts and seeds as
the original model, and has EvalIGMU's MultClf heads judge them (no method builds with MultClf, so the judge is
independent of the method). Two verdicts:

* **forgets**: the upper 95 % Wilson bound of the unlearned target rate lies below :data:`FORGET_BAR` × the lower
  95 % bound of the original's (the rate at least halves, beyond sampling doubt);
* **keeps**: for every other value, the paired move of its rate (image ``i`` of both models comes from the same
  prompt and seed) has a seeded 95 % bootstrap interval over the image pairs; the value is harmed when that interval
  lies wholly beyond ±:data:`MOVE_TOLERANCE` (a move larger than 10 points beyond sampling doubt).

A method whose outcome falls short of the bar in the recorded runs is checked against its record instead: its
target rate and every move must agree with the recorded range, so a change in either direction is caught
(:func:`agrees_with_record`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .metrics.intervals import bootstrap_interval, wilson_interval


NUM_PROMPTS = 8
# 64 target images: an original at 64/64 has a lower bound of 0.94, so the bar (0.47) is cleared up to 22/64 (0.34)
TARGET_IMAGES_PER_PROMPT = 8
IMAGES_PER_PROMPT = 4
FORGET_BAR = 0.5
MOVE_TOLERANCE = 0.10
RECORD_CONFIDENCE = 0.99
# generation seed g draws image i with seed g * GENERATION_SEED_STRIDE + i (disjoint seeds for g = 0..9)
GENERATION_SEED_STRIDE = 10_000


def task_verdicts(pipe, target: str, multclf, generation_seed: int = 0) -> dict:
    """MultClf's per-image verdicts of ``pipe`` on the check's images (``evaluation.multclf_task_rates``)."""
    from .evaluation import multclf_task_rates

    return multclf_task_rates(pipe, target, multclf, images_per_prompt=TARGET_IMAGES_PER_PROMPT,
                              unrelated_images_per_prompt=IMAGES_PER_PROMPT, n_prompts=NUM_PROMPTS,
                              seed=generation_seed * GENERATION_SEED_STRIDE)


def _rate(entry: dict, key: str) -> dict:
    return {"rate": entry[key], "low": entry["low"], "high": entry["high"], "n": entry["n"]}


def paired_move(before: list[int], after: list[int], confidence: float = 0.95) -> dict:
    """The move of a rate between two models judged on the same images' prompts and seeds: the mean of
    ``after[i] - before[i]`` with a seeded bootstrap interval over the pairs."""
    if len(before) != len(after) or not before:
        raise ValueError(f"paired verdicts must have the same, non-zero length; got {len(before)} and {len(after)}.")
    d = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    iv = bootstrap_interval(d, confidence=confidence)
    return {"move": float(d.mean()), "low": iv["low"], "high": iv["high"], "n": iv["n"]}


def check_outcome(original: dict, unlearned: dict) -> dict:
    """The check's verdicts from two :func:`task_verdicts` results of the same target and generation seed."""
    orig, after = _rate(original, "forgetting_rate"), _rate(unlearned, "forgetting_rate")
    bar = FORGET_BAR * orig["low"]
    moves = {}
    for other, entry in original["unrelated"].items():
        m = paired_move(entry["flags"], unlearned["unrelated"][other]["flags"])
        m["harmed"] = bool(m["high"] < -MOVE_TOLERANCE or m["low"] > MOVE_TOLERANCE)
        m["original_rate"] = entry["own_rate"]
        moves[other] = m
    forgets = bool(after["high"] < bar)
    keeps = not any(m["harmed"] for m in moves.values())
    return {"target": {"original": orig, "unlearned": after, "bar": bar, "forgets": forgets}, "moves": moves,
            "keeps": keeps, "passes": forgets and keeps}


def run_method_check(method: str, target: str, original: dict, multclf, output_dir: str, seed: int = 0,
                     generation_seed: int = 0, method_kwargs: dict | None = None) -> dict:
    """Train ``method`` on ``target`` (training seed ``seed``) into ``output_dir`` and check it against the
    original model's :func:`task_verdicts` (same ``generation_seed``), with :data:`CHECK_KWARGS` over the preset.
    Returns :func:`check_outcome` plus the training runtime; the unlearned pipeline is under ``"pipeline"``."""
    from .api import run_unlearn

    kwargs = {**CHECK_KWARGS.get(method, {}), **(method_kwargs or {})}
    _, result = run_unlearn(method, [target], output_dir, seed=seed, method_kwargs=kwargs or None)
    outcome = check_outcome(original, task_verdicts(result.pipeline, target, multclf, generation_seed))
    return {**outcome, "runtime_s": round(result.runtime_seconds, 1), "pipeline": result.pipeline}


def summary(outcome: dict) -> dict:
    """An outcome without its pipeline, rounded for printing and recording."""
    t = outcome["target"]
    return {"original": [round(t["original"][k], 3) for k in ("rate", "low", "high")],
            "unlearned": [round(t["unlearned"][k], 3) for k in ("rate", "low", "high")], "n": t["unlearned"]["n"],
            "bar": round(t["bar"], 3), "forgets": t["forgets"],
            "moves": {o: [round(m[k], 3) for k in ("move", "low", "high")] for o, m in outcome["moves"].items()},
            "keeps": outcome["keeps"], "passes": outcome["passes"]}


def load_record(path: str | Path) -> dict:
    """``docs/results/method_checks.json``'s per-check record: ``{"method/target": {...}}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No method-check record at {path}; run `python benchmarks/bench_method_checks.py`.")
    return json.loads(path.read_text())["data"]["checks"]


def agrees_with_record(outcome: dict, record: dict, confidence: float = RECORD_CONFIDENCE) -> list[str]:
    """The disagreements of ``outcome`` with a recorded check that falls short of the bar (empty: it agrees).

    The target rate's Wilson interval at ``confidence`` must overlap the range of the recorded runs' rates, and so
    must every move's bootstrap interval the range of its recorded moves: a method that starts forgetting, stops
    changing anything, or moves a neighbour differently than recorded disagrees."""
    problems = []
    t = outcome["target"]["unlearned"]
    k = round(t["rate"] * t["n"])
    iv = wilson_interval(k, t["n"], confidence)
    lo, hi = record["target_range"]
    if iv["high"] < lo or iv["low"] > hi:
        problems.append(f"target rate {t['rate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}] outside the recorded "
                        f"range [{lo:.3f}, {hi:.3f}]")
    for other, m in outcome["moves"].items():
        lo, hi = record["move_ranges"][other]
        # the recorded range holds the runs' point moves; the new move's interval must reach it
        if m["high"] < lo or m["low"] > hi:
            problems.append(f"{other} moved {m['move']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}], recorded "
                            f"[{lo:+.3f}, {hi:+.3f}]")
    return problems


def pass_probability(rate: float, n: int, bar: float) -> float:
    """Probability that a check drawing ``n`` images from a model whose true target rate is ``rate`` clears ``bar``
    (its Wilson upper bound below ``bar``): the binomial mass of the counts that pass."""
    from scipy.stats import binom

    passing = [k for k in range(n + 1) if wilson_interval(k, n)["high"] < bar]
    return float(binom.cdf(max(passing), n, rate)) if passing else 0.0


def checks(styles: bool = False) -> list[tuple[str, str]]:
    """Every ``(method, target)`` the suite checks: each registered method on a shape ("circle"). With ``styles``,
    also the closed-form editors (UCE, RECE, MACE) on a style ("sketch"), which the record
    (``benchmarks/bench_method_checks.py``) measures but the suite leaves out: two minutes of its time for a second
    factor of methods it already checks on the first."""
    from .methods import list_methods

    return [(m, "circle") for m in list_methods()] + ([(m, "sketch") for m in STYLE_CHECKED] if styles else [])


STYLE_CHECKED = ("uce", "rece", "mace")


# Where a check trains for less than the mini preset, so the suite keeps to its time on 2 cores (the record is
# measured with the same settings): the methods whose preset trains longest on the mini world (AdvUnlearn 374 s,
# SPM 255 s, ESD 154 s, Receler 93 s on circle, docs/results/benchmark_matrix_preset.md) train a sixth to half as
# long.
CHECK_KWARGS: dict[str, dict] = {"advunlearn": {"iterations": 50, "warmup_iterations": 10},
                                 "spm": {"iterations": 50}, "receler": {"iterations": 75}, "esd": {"iterations": 200}}
