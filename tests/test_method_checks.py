"""Every registered method's mini-world check (``igmu_hf.method_checks``), run as ``igmu unlearn --method NAME``
with its mini preset and judged by EvalIGMU's MultClf heads (no method builds with MultClf).

A check recorded as meeting the bar in every run of ``benchmarks/bench_method_checks.py`` (generation and training
seeds; ``docs/results/method_checks.md``) must meet it here: the target rate's upper 95 % bound below half the
original's lower bound, and no other value of the factor moved beyond ±0.10 with 95 % confidence. A check recorded
short of the bar must agree with its record (rate and moves within the recorded ranges at 99 %), so a method that
starts forgetting, stops changing anything or moves a neighbour differently turns red either way. The original's
images are drawn once per session (``check_original``); each method trains once per session (``method_check``)."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binom

from igmu_hf import method_checks as mc


RECORD = Path(__file__).resolve().parents[1] / "docs" / "results" / "method_checks.json"


@pytest.fixture(scope="module")
def record():
    return mc.load_record(RECORD)


# the attack comparison (test_methods_mini.py) reuses the UCE and Dark Miner models: one worker trains them
SHARED = {("uce", "circle"), ("darkminer", "circle")}
CHECKS = [pytest.param(m, t, marks=pytest.mark.xdist_group("uce_darkminer")) if (m, t) in SHARED else (m, t)
          for m, t in mc.checks()]


@pytest.mark.parametrize("method,target", CHECKS)
def test_method_check(method, target, method_check, record):
    key = f"{method}/{target}"
    assert key in record, (f"{key} has no record; run `python benchmarks/bench_method_checks.py --methods {method}` "
                           "and commit docs/results/method_checks.*")
    outcome = method_check(method, target)
    print(json.dumps({"check": key, **mc.summary(outcome), "runtime_s": outcome["runtime_s"]}))
    assert outcome["target"]["original"]["low"] >= 0.6, "nothing to forget: the original rarely draws the target"
    rec = record[key]
    if rec["meets_bar"]:
        t = outcome["target"]
        assert t["forgets"], f"{key}: unlearned {t['unlearned']} does not clear the bar {t['bar']:.3f}"
        harmed = {o: m for o, m in outcome["moves"].items() if m["harmed"]}
        assert not harmed, f"{key}: neighbours moved beyond ±{mc.MOVE_TOLERANCE}: {harmed}"
    else:
        problems = mc.agrees_with_record(outcome, rec)
        assert not problems, f"{key} no longer agrees with its record (short of the bar): {problems}"


def test_every_registered_method_has_a_check_and_a_record(record):
    from igmu_hf.methods import list_methods

    assert {m for m, _ in mc.checks()} == set(list_methods())
    assert {f"{m}/{t}" for m, t in mc.checks()} <= set(record), "checks without a record"


def test_the_untouched_original_fails_its_check(check_original):
    orig = check_original("circle")
    outcome = mc.check_outcome(orig, orig)
    assert not outcome["target"]["forgets"] and not outcome["passes"]
    assert all(m["move"] == 0 and not m["harmed"] for m in outcome["moves"].values())
    # and with probability (binomial model at its own rate): a redraw of the original clears the bar almost never
    assert mc.pass_probability(orig["forgetting_rate"], orig["n"], outcome["target"]["bar"]) < 0.01


def test_check_verdicts_against_direct_computation():
    rng = np.random.default_rng(0)
    before = rng.integers(0, 2, 32).tolist()
    after = [b if rng.random() < 0.7 else 0 for b in before]
    m = mc.paired_move(before, after)
    assert m["move"] == pytest.approx((sum(after) - sum(before)) / 32)
    assert m["low"] <= m["move"] <= m["high"] and m["high"] - m["low"] > 0
    # P(pass) is the binomial mass of the counts whose Wilson upper bound clears the bar
    from igmu_hf.metrics.intervals import wilson_interval

    kmax = max(k for k in range(33) if wilson_interval(k, 32)["high"] < 0.45)
    assert mc.pass_probability(0.1, 32, 0.45) == pytest.approx(binom.cdf(kmax, 32, 0.1))
    assert wilson_interval(kmax + 1, 32)["high"] >= 0.45
    with pytest.raises(ValueError, match="same, non-zero length"):
        mc.paired_move([1, 0], [1])


def test_a_change_either_way_disagrees_with_a_record():
    def verdicts(rate_flags, neighbour_flags):
        return {"forgetting_rate": float(np.mean(rate_flags)), "flags": rate_flags, "n": len(rate_flags),
                **{k: v for k, v in zip(("low", "high"), _wilson(rate_flags))},
                "unrelated": {"square": {"own_rate": float(np.mean(neighbour_flags)), "flags": neighbour_flags}}}

    def _wilson(flags):
        from igmu_hf.metrics.intervals import rate_interval

        iv = rate_interval(flags)
        return iv["low"], iv["high"]

    original = verdicts([1] * 32, [1] * 32)
    rec = {"target_range": [0.5, 0.6], "move_ranges": {"square": [-0.1, 0.0]}}
    same = mc.check_outcome(original, verdicts([1] * 18 + [0] * 14, [1] * 30 + [0] * 2))
    assert mc.agrees_with_record(same, rec) == []
    forgets_now = mc.check_outcome(original, verdicts([1] * 2 + [0] * 30, [1] * 30 + [0] * 2))
    assert "target rate" in mc.agrees_with_record(forgets_now, rec)[0]
    nothing = mc.check_outcome(original, verdicts([1] * 32, [1] * 32))
    assert "target rate" in mc.agrees_with_record(nothing, rec)[0]
    harms = mc.check_outcome(original, verdicts([1] * 18 + [0] * 14, [1] * 8 + [0] * 24))
    assert "square moved" in mc.agrees_with_record(harms, rec)[0]
