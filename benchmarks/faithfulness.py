#!/usr/bin/env python
"""One row per method with public code: how close igmu_hf is to its authors' code, and what it does on the mini world.

    python benchmarks/compare_paper_code.py all --mirrors /work/.mirror      # writes docs/results/paper_code.*
    python benchmarks/bench_method_checks.py                                  # writes docs/results/method_checks.*
    python benchmarks/faithfulness.py                                         # writes docs/results/faithfulness.*

Reads the two records above (each names its own commit) and the methods' declared ``deviations``; computes nothing
new, so every figure here traces to the run that measured it.
"""

from __future__ import annotations

import json

from results import RESULTS, provenance, this_command, write_result

# For methods whose step differs from the authors' by a declared difference, the comparison also runs with that
# difference aligned on their side; (key of the loss, key of the grads, what was aligned). UCE's and RECE's modules
# report the float64 run as grad_rel_diff and the float32 one separately.
AS_RUN = {"uce": (None, "grad_rel_diff_as_run_float32"), "rece": (None, "grad_rel_diff_as_run_float32")}
ALIGNED = {
    "uce": (None, "grad_rel_diff", "their edit_model in float64 (theirs solves in float32)"),
    "rece": (None, "grad_rel_diff", "their closed forms in float64 (theirs solve in float32)"),
}


def _fmt(x) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.1e}" if x != 0 and abs(x) < 0.01 else f"{x:.2f}"
    return str(x)


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def paper_rows(record: dict) -> dict[str, dict]:
    data = record["data"]
    if "rows" in data:
        rows = data["rows"]
    else:
        rows = [json.loads(line) for line in data["printed"].splitlines() if line.startswith('{"method"')]
    return {r["method"]: r for r in rows}


def main() -> None:
    from igmu_hf.methods import get_method

    paper, checks = load("paper_code"), load("method_checks")
    rows = paper_rows(paper)
    recorded = checks["data"]["checks"]
    lines = [
        f"Step comparisons: `docs/results/paper_code.md` (commit `{paper['commit']}`); mini-world checks: "
        f"`docs/results/method_checks.md` (commit `{checks['commit']}`). Targets: loss ≤ 1e-5, gradients "
        "(or edited weights) ≤ 1e-4 relative, step time ours/theirs ≤ 1.0.", "",
        "| method | authors' code | loss rel. diff (as run) | grad rel. diff (as run) | aligned: loss / grad | "
        "step time ours/theirs | deviations | mini world: circle rate [95 %], passes |",
        "|---|---|---|---|---|---|---|---|"]
    details = []
    for method in ("esd", "fmn", "mace", "rece", "conceptprune", "uce", "advunlearn", "receler", "spm", "salun",
                   "ca", "doco"):
        r = rows.get(method)
        cls = get_method(method)
        devs = list(cls.deviations)
        check = recorded.get(f"{method}/circle")
        mini = (f"{check['pooled_rate']:.2f} [{check['pooled_low']:.2f}, {check['pooled_high']:.2f}], "
                f"{check['passes']}/{check['runs']}" if check else "—")
        if r is None:
            lines.append(f"| {method} | not run | — | — | — | — | {len(devs)} | {mini} |")
            continue
        loss_key, grad_key = AS_RUN.get(method, ("loss_rel_diff", "grad_rel_diff"))
        aligned = ALIGNED.get(method)
        aligned_txt = (f"{_fmt(r.get(aligned[0]) if aligned[0] else None)} / {_fmt(r.get(aligned[1]))}"
                       if aligned else "—")
        lines.append(f"| {method} | {r['paper_code']} | {_fmt(r.get(loss_key) if loss_key else None)} | "
                     f"{_fmt(r.get(grad_key))} | {aligned_txt} | {_fmt(r.get('step_time_ratio'))} | {len(devs)} | "
                     f"{mini} |")
        details.append(f"### {method}\n\nCompared: {r.get('compared', '')}." +
                       (f" Aligned: {aligned[2]}." if aligned else "") + "\n\nDeviations (declared in "
                       f"`{cls.__module__}`):\n" + "\n".join(f"{i}. {d}" for i, d in enumerate(devs, 1)) + "\n")
        found = [d for d in r.get("differences", []) if isinstance(d, str)]
        if found:
            details.append("What the comparison found (as written by the run):\n" +
                           "\n".join(f"- {d}" for d in found) + "\n")
    md = "\n".join(lines) + "\n\n" + "\n".join(details)
    print(md)
    write_result("faithfulness", "igmu_hf beside its authors' code, method by method", md,
                 {"rows": {m: {k: v for k, v in r.items() if k != "differences"} for m, r in rows.items()}},
                 meta=provenance(this_command()))


if __name__ == "__main__":
    main()
