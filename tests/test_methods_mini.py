"""DUO and Dark Miner, run as `igmu unlearn --method duo|darkminer` with their mini presets, really forget the
target on the trained mini world and leave the unrelated shapes within 10 points."""

import json

import pytest

from igmu_hf.cli import run_unlearn
from igmu_hf.evaluation import evaluate_forgetting
from igmu_hf.hub import load_pipeline
from igmu_hf.mini import PIPELINE_PATH


@pytest.fixture(scope="module")
def original_report(mini_classifier):
    report = evaluate_forgetting({"original": load_pipeline(PIPELINE_PATH)}, "circle", mini_classifier,
                                 images_per_prompt=3, progress=False)
    return report["models"]["original"]


@pytest.mark.parametrize("method", ["duo", "darkminer"])
def test_method_halves_the_circle_rate_and_preserves_other_shapes(method, mini_classifier, original_report,
                                                                  tmp_path):
    folder, result = run_unlearn(method, ["circle"], str(tmp_path / method))
    assert (folder / "pytorch_lora_weights.safetensors").exists()
    unl = evaluate_forgetting({method: result.pipeline}, "circle", mini_classifier, images_per_prompt=3,
                              progress=False)["models"][method]
    orig = original_report
    print(json.dumps({"original": orig["forgetting_rate"], method: unl["forgetting_rate"],
                      **{o: [orig["unrelated"][o]["own_rate"], u["own_rate"]] for o, u in unl["unrelated"].items()},
                      "runtime_s": result.runtime_seconds}))
    assert orig["forgetting_rate"] >= 0.6, "nothing to forget: the original rarely draws the target"
    assert unl["forgetting_rate"] <= 0.5 * orig["forgetting_rate"]
    for other in orig["unrelated"]:
        assert abs(unl["unrelated"][other]["own_rate"] - orig["unrelated"][other]["own_rate"]) <= 0.10, other
