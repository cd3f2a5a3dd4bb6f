"""Baselines I on the trained mini world, run as `igmu unlearn --method NAME` with their mini presets, judged by
EvalIGMU's MultClf heads (no method here uses MultClf): for one shape target ("circle") and one style target
("sketch") the target's rate falls to at most half of the original's while every other value of its factor moves by
at most 10 points.

Where the measured outcome of a method's preset falls short, the case is a strict xfail carrying the figures and the
settings searched (README, "Baselines"): it fails the suite if the method starts passing, so the record stays
true. The original model's rates are generated once per session (``original_multclf_rates``)."""

import json

import pytest

from igmu_hf.api import run_unlearn
from igmu_hf.evaluation import multclf_task_rates


IMAGES_PER_PROMPT = 3


def _shortfall(reason: str):
    return pytest.mark.xfail(strict=True, raises=AssertionError, reason=reason)


CASES = [
    pytest.param("uce", "circle"),
    pytest.param("uce", "sketch"),
    pytest.param("rece", "circle"),
    pytest.param("rece", "sketch"),
    pytest.param("esd", "circle"),
    pytest.param("esd", "sketch"),
    pytest.param("fmn", "circle"),
    pytest.param("fmn", "sketch"),
    pytest.param("mace", "circle"),
    pytest.param("mace", "sketch"),
    pytest.param("conceptprune", "circle"),
    pytest.param("conceptprune", "sketch"),
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
