#!/usr/bin/env python
"""Copy the README's headline figures from docs/results/*.json (never typed by hand).

    python benchmarks/update_readme.py           # rewrite the blocks between <!-- results:NAME --> and <!-- /results -->
    python benchmarks/update_readme.py --check   # exit 1 if the README differs from what docs/results says

Each block is rendered from docs/results/NAME.json by the function registered for NAME below; a result not measured
yet renders as the command that measures it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.S)
COMMANDS = {"sample_size": "python benchmarks/sample_size.py",
            "benchmark_matrix_preset": "python benchmarks/bench_benchmark_matrix.py",
            "method_checks": "python benchmarks/bench_method_checks.py"}


def _source(result: dict, name: str) -> str:
    return (f"(from [`docs/results/{name}.md`](docs/results/{name}.md): `{result['command']}`, {result['date']}, "
            f"commit `{result['commit']}`)")


def render_sample_size(result: dict) -> str:
    preset = result["data"]["budgets"]["preset"]
    fast = result["data"]["budgets"]["fast"]
    return (f"The `preset` budget draws {preset['images_per_set']} images per prompt set, enough to tell a forgetting "
            f"rate of 0.50 from {0.5 - preset['near_0.5']:.2f} and 0.10 from {0.1 - preset['near_0.1']:.2f} with "
            f"power 0.8; the `fast` budget's {fast['images_per_set']} tell 0.50 only from "
            f"{0.5 - fast['near_0.5']:.2f} {_source(result, 'sample_size')}.")


def render_benchmark_matrix_preset(result: dict) -> str:
    run = result["data"]["runs"][0]
    overall = result["data"]["overall"]
    keys = ("unlearning_seconds", "generation_seconds", "scoring_seconds", "attack_seconds")
    total = sum(run[k] for k in keys) or 1.0
    split = ", ".join(f"{k.split('_')[0]} {100 * run[k] / total:.0f} %" for k in keys)
    minutes = run.get("cells_seconds", run["wall_seconds"]) / 60
    front = ", ".join(f"{m} ({100 * overall['front_share'].get(m, 0):.0f} %)" for m in overall["pareto_front"])
    balanced = overall["balanced"]
    bal = (f"balanced (every measured aspect ≥ {overall['balanced_threshold']} on every task): "
           + (", ".join(f"{m} ({100 * overall['balanced_share'][m]:.0f} % of resamples)" for m in balanced)
              if balanced else "none"))
    maybe = [m for m, s in overall.get("balanced_share", {}).items() if m not in balanced and s >= 0.05]
    if maybe:
        bal += "; balanced in ≥ 5 % of resamples: " + ", ".join(
            f"{m} ({100 * overall['balanced_share'][m]:.0f} %)" for m in maybe)
    return (f"The `preset` matrix ({run['cells_done']} cells ran, {run['cells_not_applicable']} not applicable) took "
            f"{minutes:.0f} minutes on {result['cpu_count']} cores ({split} of the cells' time). Over the tasks' mean "
            f"aspect scores the Pareto front holds {front or 'no method'} (share of resamples on it); {bal} "
            f"{_source(result, 'benchmark_matrix_preset')}.")


def render_method_checks(result: dict) -> str:
    from igmu_hf.method_checks import checks as suite_checks

    checks = result["data"]["checks"]
    in_suite = {f"{m}/{t}" for m, t in suite_checks()}
    bar = [k for k, c in checks.items() if c["meets_bar"] and k in in_suite]
    short = [k for k, c in checks.items() if not c["meets_bar"] and k in in_suite]
    extra = [f"{k} ({'meets the bar' if c['meets_bar'] else 'short of it'})" for k, c in checks.items()
             if k not in in_suite]
    runs = {c["runs"] for c in checks.values()}
    return (f"{len(checks)} method checks, each run {min(runs)}–{max(runs)} times (generation seeds "
            f"{result['data']['generation_seeds']}, training seeds {result['data']['training_seeds']}): meeting the "
            f"bar in every run, and asserted on it: {', '.join(bar) or 'none'}; short of it in some run, and asserted "
            f"on their record: {', '.join(short) or 'none'}"
            + (f"; recorded only, not run by `pytest -q`: {', '.join(extra)}" if extra else "")
            + f" {_source(result, 'method_checks')}.")


RENDERERS = {"sample_size": render_sample_size, "benchmark_matrix_preset": render_benchmark_matrix_preset,
             "method_checks": render_method_checks}


def render(name: str) -> str:
    path = RESULTS / f"{name}.json"
    if name not in RENDERERS:
        raise SystemExit(f"README names results block {name!r}, which update_readme.py cannot render; add a renderer.")
    if not path.exists():
        return f"Not measured yet: run `{COMMANDS.get(name, name)}`."
    return RENDERERS[name](json.loads(path.read_text()))


def updated(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + render(m.group("name")) + "\n" + m.group(4), text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args()
    text = README.read_text()
    new = updated(text)
    if args.check:
        if new != text:
            sys.exit("README's results blocks differ from docs/results; run python benchmarks/update_readme.py.")
        print("README's figures match docs/results.")
        return
    if new != text:
        README.write_text(new)
    print(f"{len(BLOCK.findall(new))} results block(s) written.")


if __name__ == "__main__":
    main()
