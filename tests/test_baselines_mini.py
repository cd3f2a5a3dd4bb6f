"""Baselines I and II on the trained mini world, run as `igmu unlearn --method NAME` with their mini presets, judged by
EvalIGMU's MultClf heads (no method here uses MultClf): for a shape target ("circle") and a style target ("sketch")
the target's rate falls to at most half of the original's while every other value of its factor moves by at most 10
points.

Where the measured outcome of a method's best preset falls short, its shape case is a strict xfail carrying the
figures and the settings searched (README, "Baselines"; the style figures are there too), marked ``shortfall``:
``pytest -m shortfall`` re-measures them (about 16 minutes) and fails if a method starts passing, so the record stays
true; the default run leaves them out. The original model's rates are generated once per session (``original_multclf_rates``)."""

import json

import pytest

from igmu_hf.api import run_unlearn
from igmu_hf.evaluation import multclf_task_rates


IMAGES_PER_PROMPT = 3


def _shortfall(reason: str):
    """A measured shortfall: a strict xfail (it fails if the method starts passing), run by ``pytest -m shortfall``
    and left out of the default run (pyproject's addopts), where it would spend minutes proving a known figure."""
    return [pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason), pytest.mark.shortfall]


CASES = [
    pytest.param("uce", "circle"),
    pytest.param("uce", "sketch"),
    pytest.param("rece", "circle"),
    pytest.param("rece", "sketch"),
    pytest.param("mace", "circle"),
    pytest.param("mace", "sketch"),
    pytest.param("ca", "circle"),
    pytest.param("doco", "circle"),
    pytest.param("salun", "circle"),
    # measured shortfalls (README, "Baselines"): each preset is the best of the settings searched
    pytest.param("esd", "circle", marks=_shortfall(
        "ESD-x at its preset sits on the bar and moves with float rounding: 0.46 (moves 0.08) when first measured "
        "with torch 2.14.1 on 2 threads, 0.58 with earlier libraries, now 0.71-0.79 with star -0.67 to -0.79")),
    pytest.param("fmn", "circle", marks=_shortfall(
        "the paper's lr 2e-6 leaves circle at 0.96; every lr that forgets (3e-5 whole UNet: 0.46) drops the other "
        "shapes by 54-100 points")),
    pytest.param("conceptprune", "circle", marks=_shortfall(
        "pruning 2 % (the paper's) leaves circle at 1.00; 10 %: 0.88; 30 %: 0.75 with the other shapes -8 to -25")),
    pytest.param("sld", "circle", marks=_shortfall(
        "SLD-medium (the authors' default) leaves circle at 0.92 with house -0.50; weak 0.96; strong 0.88 with house "
        "-0.75; max 0.33 with square and house -0.88: guidance away from 'circle' steers every shape")),
    pytest.param("advunlearn", "circle", marks=_shortfall(
        "the preset (lr 1e-3) takes circle to 0.38 but house moves +0.13 (3 of 24 images); lr 1e-4: 0.92; lr 3e-3: "
        "0.29 with house -0.38; retain weight 1.0 instead of 0.3: unchanged")),
    pytest.param("spm", "circle", marks=_shortfall(
        "the rank-1 membrane moves other shapes before circle goes: the preset (lr 1e-2, 300 its, S 30) leaves "
        "circle at 1.00; with S 25: 0.92 and house -0.33; lr 3e-2: 0.71 with square and triangle -0.92; anchor "
        "strength 300 instead of 1000: 0.79 with triangle -0.38")),
    pytest.param("receler", "circle", marks=_shortfall(
        "the preset (150 its, lr 3e-3) takes circle to 0.67 with house -0.21; lr 1e-3 for 300 its: 0.92; lr 1e-2: "
        "0.00 with star -1.00; mask weight 1.0 for 300 its: 1.00")),
]


@pytest.mark.parametrize("method,target", CASES)
def test_baseline_forgets_the_target_and_keeps_its_neighbours(method, target, original_multclf_rates, mini_multclf,
                                                              tmp_path):
    orig = original_multclf_rates(target, IMAGES_PER_PROMPT)
    _, result = run_unlearn(method, [target], str(tmp_path / method))
    after = multclf_task_rates(result.pipeline, target, mini_multclf, images_per_prompt=IMAGES_PER_PROMPT)
    moves = {o: after["unrelated"][o]["own_rate"] - orig["unrelated"][o]["own_rate"] for o in orig["unrelated"]}
    print(json.dumps({"method": method, "target": target, "original": orig["forgetting_rate"],
                      "unlearned": after["forgetting_rate"], "moves": moves,
                      "runtime_s": round(result.runtime_seconds, 1)}))
    assert orig["forgetting_rate"] >= 0.6, "nothing to forget: the original rarely draws the target"
    assert after["forgetting_rate"] <= 0.5 * orig["forgetting_rate"]
    assert max(abs(m) for m in moves.values()) <= 0.10, moves
