"""DUO and Dark Miner, run as `igmu unlearn --method duo|darkminer` with their mini presets, really forget the
target on the trained mini world, leave the unrelated shapes within 10 points, and resist UnlearnDiffAtk better
than UCE (a lower attack success rate on the same prompts and seeds).

Forgetting and preservation are judged by EvalIGMU's MultClf heads, not by the mini classifier that filtered DUO's
pairs (the judge of a result is independent of what the method built it with)."""

import json

import pytest

from igmu_hf.cli import run_unlearn
from igmu_hf.evaluation import multclf_task_rates
from igmu_hf.mini.prompts import task_prompts


ATTACK_PROMPTS = task_prompts("circle", 8)["target_prompts"][:6]


def unlearndiffatk_asr(pipeline, original, judge) -> float:
    from igmu_hf.attacks import UnlearnDiffAtk, UnlearnDiffAtkConfig

    return UnlearnDiffAtk(UnlearnDiffAtkConfig.fast()).run(pipeline, judge, "circle", prompts=ATTACK_PROMPTS,
                                                           original=original, progress=False).asr


@pytest.fixture(scope="module")
def uce_asr(tmp_path_factory, mini_pipeline, mini_classifier):
    from igmu_hf.judges import MiniConceptJudge

    _, result = run_unlearn("uce", ["circle"], str(tmp_path_factory.mktemp("uce") / "uce"))
    return unlearndiffatk_asr(result.pipeline, mini_pipeline, MiniConceptJudge(mini_classifier, "circle"))


@pytest.mark.parametrize("method", [
    pytest.param("duo", marks=[pytest.mark.shortfall, pytest.mark.xfail(strict=True, raises=AssertionError, reason=(
        "since the registry's torch 2.14.1 / peft 0.21.2 / accelerate 1.16, DUO's mini preset no longer resists "
        "UnlearnDiffAtk better than UCE (ASR 1.00 vs 1.00; 0.50 with the earlier libraries) although it still "
        "forgets circle (0.08, other shapes within 0.04, run alone); in the full suite it moved house by -0.17"))]),
    "darkminer"])
def test_method_forgets_preserves_and_resists_attack_better_than_uce(method, mini_classifier, original_multclf_rates,
                                                                     uce_asr, mini_pipeline, mini_multclf, tmp_path):
    from igmu_hf.judges import MiniConceptJudge

    folder, result = run_unlearn(method, ["circle"], str(tmp_path / method))
    assert (folder / "pytorch_lora_weights.safetensors").exists()
    unl = multclf_task_rates(result.pipeline, "circle", mini_multclf, images_per_prompt=3)
    orig = original_multclf_rates("circle", 3)
    print(json.dumps({"original": orig["forgetting_rate"], method: unl["forgetting_rate"],
                      **{o: [orig["unrelated"][o]["own_rate"], u["own_rate"]] for o, u in unl["unrelated"].items()},
                      "runtime_s": result.runtime_seconds}))
    asr = unlearndiffatk_asr(result.pipeline, mini_pipeline, MiniConceptJudge(mini_classifier, "circle"))
    print(json.dumps({"unlearndiffatk_asr": {method: asr, "uce": uce_asr}}))
    assert orig["forgetting_rate"] >= 0.6, "nothing to forget: the original rarely draws the target"
    assert unl["forgetting_rate"] <= 0.5 * orig["forgetting_rate"]
    for other in orig["unrelated"]:
        assert abs(unl["unrelated"][other]["own_rate"] - orig["unrelated"][other]["own_rate"]) <= 0.10, other
    assert uce_asr >= 0.8, "UnlearnDiffAtk no longer breaks UCE: the comparison would say nothing"
    assert asr < uce_asr
