"""Forgetting and UnlearnDiffAtk robustness of several methods on the mini world, on the same prompts and seeds as
the method comparison of ``tests/test_methods_mini.py`` (6 circle prompts, fast preset), plus each run's cost.

    python benchmarks/bench_robustness_mini.py      # uce, duo, darkminer and every Baselines II method
    python benchmarks/bench_robustness_mini.py --methods sld,advunlearn --set advunlearn:iterations=300

One JSON line per method: MultClf forgetting rate of circle (3 images per prompt), the largest move of another
shape, UnlearnDiffAtk's ASR and pre-attack ASR, the unlearning runtime and, for adversarially trained methods, the
share of it spent in the inner attack (their cost in IGMU Table 8).
"""

import argparse
import json
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="uce,duo,darkminer,sld,advunlearn,receler,spm,doco,salun,ca")
    parser.add_argument("--target", default="circle")
    parser.add_argument("--set", action="append", default=[], help="METHOD:FIELD=JSON over the mini preset.")
    args = parser.parse_args()

    import torch

    from igmu_hf.api import run_unlearn
    from igmu_hf.attacks import UnlearnDiffAtk, UnlearnDiffAtkConfig
    from igmu_hf.evaluation import multclf_task_rates
    from igmu_hf.hub import load_pipeline
    from igmu_hf.judges import MiniConceptJudge
    from igmu_hf.mini.prompts import task_prompts

    torch.set_num_threads(2)
    overrides: dict[str, dict] = {}
    for item in args.set:
        method, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        overrides.setdefault(method, {})[key] = json.loads(value)
    prompts = task_prompts(args.target, 8)["target_prompts"][:6]
    original = load_pipeline()
    judge = MiniConceptJudge.from_pretrained(args.target)
    before = multclf_task_rates(original, args.target, images_per_prompt=3)
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            _, result = run_unlearn(method, [args.target], f"{tmp}/{method}", method_kwargs=overrides.get(method))
            unlearn_seconds = time.perf_counter() - start
            after = multclf_task_rates(result.pipeline, args.target, images_per_prompt=3)
            start = time.perf_counter()
            attack = UnlearnDiffAtk(UnlearnDiffAtkConfig.fast()).run(result.pipeline, judge, args.target,
                                                                      prompts=prompts, original=original,
                                                                      progress=False)
            training = result.extra.get("training", {})
            inner = training.get("inner_attack_seconds")
            print(json.dumps({
                "method": method, "overrides": overrides.get(method, {}), "original_rate": before["forgetting_rate"],
                "rate": after["forgetting_rate"],
                "largest_unrelated_move": max(abs(after["unrelated"][o]["own_rate"] - before["unrelated"][o]["own_rate"])
                                              for o in before["unrelated"]),
                "unlearndiffatk_asr": attack.asr, "pre_attack_asr": attack.pre_attack_asr,
                "runtime_seconds": round(result.runtime_seconds, 1), "wall_seconds": round(unlearn_seconds, 1),
                "inner_attack_share": None if inner is None else round(inner / max(result.runtime_seconds, 1e-9), 3),
                "attack_seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    from results import record

    record("robustness_mini", "Robustness of the methods on the mini world", main)
