#!/usr/bin/env python
"""Proof of the suite's method checks (``igmu_hf.method_checks``): each check run under several generation seeds and,
for trained methods, two training seeds, with pass counts; writes docs/results/method_checks.md (and .json, the
record that ``tests/test_method_checks.py`` checks a method short of the bar against).

    python benchmarks/bench_method_checks.py                        # every check, 5 generation x 2 training seeds
    python benchmarks/bench_method_checks.py --methods uce esd --work /tmp/checks

Each run is the test's check with other seeds: train (training seed t), draw the check's images (generation seed g)
from the original and the unlearned model, judge both with MultClf. A check *meets the bar* when every run passes;
``P(pass)`` is the binomial probability that a fresh draw clears the bar if the true rate were the pooled unlearned
rate (and at its upper 95 % bound; and, for the original model, its pooled rate: the probability that the untouched model
would pass). Runs are cached as JSON under ``--work`` (resumable; delete it to re-measure).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from results import provenance, this_command, write_result


# A closed-form edit (UCE) and inference-time guidance (SLD) draw no random numbers: one training seed is enough.
TRAINING_FREE = ("uce", "sld")


def training_seeds(method: str, seeds: list[int]) -> list[int]:
    return seeds[:1] if method in TRAINING_FREE else seeds


def main() -> None:
    from igmu_hf import method_checks as mc
    from igmu_hf.atomic import write_text_atomic

    all_checks = mc.checks(styles=True)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=None, help="Only these methods (default: every check).")
    p.add_argument("--generation_seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--training_seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--work", default="bench_method_checks_work", help="Scratch folder (run cache, models).")
    p.add_argument("--set", action="append", default=[], metavar="METHOD:FIELD=JSON",
                   help="A setting over the check's (a probe: use its own --work and --name).")
    p.add_argument("--name", default="method_checks", help="docs/results/<name>.md; anything but the default is a "
                                                           "probe the suite does not read.")
    args = p.parse_args()
    overrides: dict[str, dict] = {}
    for item in args.set:
        method, _, assignment = item.partition(":")
        key, _, value = assignment.partition("=")
        overrides.setdefault(method, {})[key] = json.loads(value)
    if overrides and args.name == "method_checks":
        p.error("--set changes the checks' settings: give the probe its own --name (and --work).")
    meta = provenance(this_command())
    wanted = [c for c in all_checks if args.methods is None or c[0] in args.methods]
    work = Path(args.work)
    (work / "runs").mkdir(parents=True, exist_ok=True)

    from igmu_hf.detectors.multclf import load_multclf
    from igmu_hf.hub import load_pipeline
    from igmu_hf.mini import MULTCLF_PATH, PIPELINE_PATH

    multclf = load_multclf(MULTCLF_PATH)
    original_pipe = load_pipeline(PIPELINE_PATH)

    def original(target: str, g: int) -> dict:
        path = work / "runs" / f"original_{target}_g{g}.json"
        if not path.exists():
            write_text_atomic(path, json.dumps(mc.task_verdicts(original_pipe, target, multclf, g)))
        return json.loads(path.read_text())

    for method, target in wanted:
        for t in training_seeds(method, args.training_seeds):
            paths = {g: work / "runs" / f"{method}_{target}_t{t}_g{g}.json" for g in args.generation_seeds}
            if all(p.exists() for p in paths.values()):
                continue
            start = time.time()
            out = work / "models" / f"{method}_{target}_t{t}"
            first = mc.run_method_check(method, target, original(target, args.generation_seeds[0]), multclf, str(out),
                                        seed=t, generation_seed=args.generation_seeds[0],
                                        method_kwargs=overrides.get(method))
            pipe = first.pop("pipeline")
            for g in args.generation_seeds:
                outcome = first if g == args.generation_seeds[0] else mc.check_outcome(
                    original(target, g), mc.task_verdicts(pipe, target, multclf, g))
                outcome["runtime_s"] = first["runtime_s"]
                write_text_atomic(paths[g], json.dumps(outcome))
                print(json.dumps({"method": method, "target": target, "training_seed": t, "generation_seed": g,
                                  **mc.summary(outcome)}), flush=True)
            del pipe
            shutil.rmtree(out, ignore_errors=True)
            print(f"{method}/{target} seed {t}: {time.time() - start:.0f} s", flush=True)

    write(wanted if overrides else all_checks, args, work, meta, overrides)


def write(all_checks, args, work: Path, meta: dict, overrides: dict | None = None) -> None:
    """Aggregate every cached run (including checks of earlier invocations) into the record."""
    from igmu_hf import method_checks as mc
    from igmu_hf.metrics.intervals import wilson_interval

    record, rows = {}, []
    for method, target in all_checks:
        runs = []
        for t in training_seeds(method, args.training_seeds):
            for g in args.generation_seeds:
                path = work / "runs" / f"{method}_{target}_t{t}_g{g}.json"
                if path.exists():
                    runs.append((t, g, json.loads(path.read_text())))
        if not runs:
            continue
        unl = [r["target"]["unlearned"] for _, _, r in runs]
        orig = [r["target"]["original"] for _, _, r in runs]
        k = sum(round(u["rate"] * u["n"]) for u in unl)
        n_total = sum(u["n"] for u in unl)
        pooled = wilson_interval(k, n_total)
        ko = sum(round(o["rate"] * o["n"]) for o in orig)
        pooled_orig = wilson_interval(ko, sum(o["n"] for o in orig))
        n = unl[0]["n"]
        bar = min(r["target"]["bar"] for _, _, r in runs)
        others = list(runs[0][2]["moves"])
        entry = {
            "runs": len(runs), "passes": sum(r["passes"] for _, _, r in runs),
            "forgets": sum(r["target"]["forgets"] for _, _, r in runs),
            "keeps": sum(r["keeps"] for _, _, r in runs),
            "training_seeds": sorted({t for t, _, _ in runs}), "generation_seeds": sorted({g for _, g, _ in runs}),
            "target_range": [min(u["rate"] for u in unl), max(u["rate"] for u in unl)],
            "pooled_rate": k / n_total, "pooled_low": pooled["low"], "pooled_high": pooled["high"],
            "original_pooled_rate": ko / pooled_orig["n"], "images_per_set": n, "bar": bar,
            "move_ranges": {o: [min(r["moves"][o]["move"] for _, _, r in runs),
                                max(r["moves"][o]["move"] for _, _, r in runs)] for o in others},
            "pass_probability": mc.pass_probability(k / n_total, n, bar),
            "pass_probability_at_upper_bound": mc.pass_probability(pooled["high"], n, bar),
            "original_pass_probability": mc.pass_probability(ko / pooled_orig["n"], n, bar),
            "runtime_s": sorted(r["runtime_s"] for _, _, r in runs)[len(runs) // 2],
            "check_kwargs": {**mc.CHECK_KWARGS.get(method, {}), **(overrides or {}).get(method, {})},
        }
        entry["meets_bar"] = entry["passes"] == entry["runs"]
        record[f"{method}/{target}"] = entry
        worst = min(others, key=lambda o: min(r["moves"][o]["move"] for _, _, r in runs))
        rows.append(f"| {method} | {target} | {entry['passes']}/{entry['runs']} | {entry['forgets']}/{entry['runs']} | "
                    f"{entry['keeps']}/{entry['runs']} | {entry['pooled_rate']:.2f} [{pooled['low']:.2f}, "
                    f"{pooled['high']:.2f}] | {entry['target_range'][0]:.2f}–{entry['target_range'][1]:.2f} | "
                    f"{worst} {entry['move_ranges'][worst][0]:+.2f}…{entry['move_ranges'][worst][1]:+.2f} | "
                    f"{entry['pass_probability']:.3f} ({entry['pass_probability_at_upper_bound']:.3f}) | "
                    f"{entry['original_pass_probability']:.3f} | "
                    f"{'bar' if entry['meets_bar'] else 'record'} | {entry['runtime_s']:.0f} |")
    md = "\n".join([
        f"Each check ({mc.NUM_PROMPTS} prompts × {mc.TARGET_IMAGES_PER_PROMPT} images of the target, × "
        f"{mc.IMAGES_PER_PROMPT} of every other value of its factor, judged by MultClf) run under generation seeds {args.generation_seeds} and training "
        f"seeds {args.training_seeds}. Bar: the unlearned target rate's upper 95 % Wilson bound below "
        f"{mc.FORGET_BAR} × the original's lower bound; a neighbour is harmed when its paired move's 95 % bootstrap "
        f"interval lies wholly beyond ±{mc.MOVE_TOLERANCE}. A check that passes in every run is asserted against "
        f"the bar (`bar`); one that does not is asserted against this record (`record`: its rate and moves must "
        f"agree with the recorded ranges, so a change either way is caught).", "",
        "| method | target | passes | forgets | keeps | pooled target rate [95 %] | rate range | worst "
        "neighbour (move range) | P(pass) | P(original passes) | asserted on | training s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|", *rows, "",
        "P(pass): the probability that one check's draw clears the bar if the true rate were the pooled rate (in "
        "parentheses: were it the pooled rate's upper 95 % bound); "
        "P(original passes): the same for the untouched original model (its pooled rate). Moves are the unlearned "
        "minus the original rate of each other value on its own prompts (same prompts and seeds)."])
    if overrides:
        md = f"A probe, not the suite's record: settings over the checks' {json.dumps(overrides)}.\n\n" + md
    write_result(args.name, "Method checks: pass counts over seeds" + (" (probe)" if overrides else ""), md,
                 {"checks": record, "generation_seeds": args.generation_seeds,
                  "training_seeds": args.training_seeds, "overrides": overrides or {}}, meta=meta)


if __name__ == "__main__":
    main()
