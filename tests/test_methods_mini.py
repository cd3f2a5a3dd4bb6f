"""Dark Miner, the seed method built for robustness, resists UnlearnDiffAtk better than UCE on the mini world: a lower
attack success rate on the same prompts and seeds. Both models are the ones their method checks trained
(``method_check``, ``tests/test_method_checks.py``); the attack's judge is the mini classifier, not MultClf.

(DUO's robustness against UCE is measured by the preset matrix, docs/results/benchmark_matrix_preset.md, on 8
attacked prompts; on this test's 6 prompts both sit at 1.00 since torch 2.14.1 / peft 0.21.2, so a comparison here
could not tell them apart.)"""

import json

import pytest

from igmu_hf.mini.prompts import task_prompts


ATTACK_PROMPTS = task_prompts("circle", 8)["target_prompts"][:6]


def unlearndiffatk_asr(pipeline, original, judge) -> float:
    from igmu_hf.attacks import UnlearnDiffAtk, UnlearnDiffAtkConfig

    return UnlearnDiffAtk(UnlearnDiffAtkConfig.fast()).run(pipeline, judge, "circle", prompts=ATTACK_PROMPTS,
                                                           original=original, progress=False).asr


@pytest.mark.xdist_group("uce_darkminer")  # the models test_method_checks.py trained, in the same worker
def test_darkminer_resists_unlearndiffatk_better_than_uce(method_check, mini_pipeline, mini_classifier):
    from igmu_hf.judges import MiniConceptJudge

    judge = MiniConceptJudge(mini_classifier, "circle")
    uce = unlearndiffatk_asr(method_check("uce", "circle")["pipeline"], mini_pipeline, judge)
    dm = unlearndiffatk_asr(method_check("darkminer", "circle")["pipeline"], mini_pipeline, judge)
    print(json.dumps({"unlearndiffatk_asr": {"darkminer": dm, "uce": uce}}))
    assert uce >= 0.8, "UnlearnDiffAtk no longer breaks UCE: the comparison would say nothing"
    assert dm < uce
