"""A method's forgetting and preservation on the mini world, judged by EvalIGMU's MultClf (the figures the method
tests assert and the presets were chosen with).

    python benchmarks/bench_mini_forgetting.py esd circle                      # the method's mini preset
    python benchmarks/bench_mini_forgetting.py esd sketch --set iterations=400 --set lr=3e-4

Prints one JSON line: the original's and the unlearned model's target rate, each unrelated value's own rate before
and after, the largest unrelated move, the runtime.
"""

import sys
import argparse
import json
import tempfile


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method")
    p.add_argument("target")
    p.add_argument("--set", action="append", default=[], help="FIELD=VALUE (JSON value) over the mini preset.")
    p.add_argument("--images_per_prompt", type=int, default=3)
    args = p.parse_args()
    from igmu_hf.api import run_unlearn
    from igmu_hf.evaluation import multclf_task_rates
    from igmu_hf.hub import load_pipeline

    overrides = {}
    for item in args.set:
        k, _, v = item.partition("=")
        try:
            overrides[k] = json.loads(v)
        except json.JSONDecodeError:
            overrides[k] = v
    original = multclf_task_rates(load_pipeline(), args.target, images_per_prompt=args.images_per_prompt)
    with tempfile.TemporaryDirectory() as tmp:
        _, result = run_unlearn(args.method, [args.target], f"{tmp}/out", method_kwargs=overrides)
        after = multclf_task_rates(result.pipeline, args.target, images_per_prompt=args.images_per_prompt)
    moves = {o: round(after["unrelated"][o]["own_rate"] - original["unrelated"][o]["own_rate"], 3)
             for o in original["unrelated"]}
    print(json.dumps({"method": args.method, "target": args.target, "overrides": overrides,
                      "original": original["forgetting_rate"], "unlearned": after["forgetting_rate"],
                      "unrelated_moves": moves, "max_unrelated_move": max(abs(v) for v in moves.values()),
                      "runtime_s": round(result.runtime_seconds, 1)}))


if __name__ == "__main__":
    from results import record

    args = [a for a in sys.argv[1:] if not a.startswith("-")][:2]
    record("mini_forgetting_" + "_".join(args), f"Mini-world forgetting of {' on '.join(args)}", main)
