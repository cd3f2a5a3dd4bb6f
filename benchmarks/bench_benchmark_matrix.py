#!/usr/bin/env python
"""Wall time of the whole `igmu benchmark` matrix on the mini world, and its split into unlearning, generation,
scoring and attacks, with 1 (or 2: torchrun on CPU, one thread each) processes, and its findings.

    python benchmarks/bench_benchmark_matrix.py                  # preset budget: every method x circle, sketch, striped
    python benchmarks/bench_benchmark_matrix.py --budget fast --processes 1 2 --extra="--methods uce,esd"

Defaults: `--budget preset --methods all --attack unlearndiffatk`, one process; writes
docs/results/benchmark_matrix_<budget>.md (and .json) unless --no_write. Each run writes into a fresh folder under --work (a folder
that already holds a finished run is resumed and would time nothing). Prints a Markdown table per run, the
unlearning seconds of each method summed over the tasks, and whether the 1- and 2-process reports agree.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(nproc: int, folder: Path, extra: list[str]) -> dict:
    args = ["benchmark", "--output_dir", str(folder), *extra]
    env = dict(os.environ)
    if nproc == 1:
        cmd = [sys.executable, "-m", "igmu_hf.cli", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
               "29547", "-m", "igmu_hf.cli", *args]
        env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // nproc)))
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    summary = json.loads((folder / "report.json").read_text())
    per_method, done, not_applicable = {}, 0, 0
    for cell in folder.glob("cells/*/*/**/cell.json"):
        rec = json.loads(cell.read_text())
        if rec["status"] == "done":
            done += 1
            per_method[rec["method"]] = per_method.get(rec["method"], 0.0) + rec["timing"]["unlearning_seconds"]
        else:
            not_applicable += 1
    cells_seconds = sum(summary["timing"][k] for k in ("unlearning_seconds", "generation_seconds",
                                                        "scoring_seconds", "attack_seconds"))
    return {"processes": nproc, "wall_seconds": wall, "cells_seconds": cells_seconds, **summary["timing"],
            "unlearning_by_method": per_method, "cells_done": done, "cells_not_applicable": not_applicable,
            "summary": summary}


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def write_results(results: list[dict], budget: str, work_note: str, meta: dict) -> None:
    """docs/results/benchmark_matrix_<budget>.md: wall time, its split, unlearning by method, and the benchmark's own
    findings and leaderboards (with their intervals), all from the runs just made."""
    from igmu_hf.benchmark import conclusions, leaderboard_markdown, sample_note

    from results import write_result

    lines = ["## Wall time and where it goes", "",
             "The matrix's time is the sum of its cells' times (unlearning, generation, scoring, attacks, each timed "
             "in its cell), so a run that was stopped and resumed is counted whole; the last invocation's own wall "
             "time is beside it.", "",
             "| processes | matrix (cells' time, summed) | last invocation's wall | unlearning s | generation s | "
             "scoring s | attacks s | cells |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['processes']} | {_minutes(r['cells_seconds'])} | {_minutes(r['wall_seconds'])} | "
                     f"{r['unlearning_seconds']:.0f} | {r['generation_seconds']:.0f} | {r['scoring_seconds']:.0f} | "
                     f"{r['attack_seconds']:.0f} | {r['cells_done']} done, {r['cells_not_applicable']} not applicable |")
    for r in results:
        total = sum(r[k] for k in ("unlearning_seconds", "generation_seconds", "scoring_seconds", "attack_seconds"))
        share = ", ".join(f"{k.split('_')[0]} {100 * r[k] / total:.0f} %" for k in
                          ("unlearning_seconds", "generation_seconds", "scoring_seconds", "attack_seconds")) if total else ""
        top = sorted(r["unlearning_by_method"].items(), key=lambda kv: -kv[1])
        lines += ["", f"{r['processes']} process(es): {share} of the cells' time. Unlearning by method (s, all tasks): "
                  + ", ".join(f"{m} {sec:.0f}" for m, sec in top) + "."]
    summary = results[0]["summary"]
    c = summary["config"]
    lines += ["", f"Budget `{c['budget']}`: {c['num_prompts']} prompts × {c['images_per_prompt']} image(s) per set, attack "
              f"{c['attack'] or 'none'}" + (f" on {c['attack_num_prompts']} prompts" if c.get("attack_num_prompts")
                                            else "") + f". {work_note}", "", "## Findings", ""]
    lines += [f"- {x.lstrip('- ')}" for x in conclusions(summary)]
    for task in summary["tasks"]:
        lines += ["", f"## {task}", "", sample_note(summary, task), "", leaderboard_markdown(summary, task)]
    data = {"runs": [{k: v for k, v in r.items() if k != "summary"} for r in results],
            "overall": summary["overall"], "tasks": {t: {k: v for k, v in d.items() if k != "original"}
                                                     for t, d in summary["tasks"].items()}}
    from igmu_hf.benchmark import DEFAULT_TASKS

    tasks = list(summary["config"]["tasks"])
    part = "" if tasks == list(DEFAULT_TASKS) else "_" + "_".join(tasks)  # a part of the matrix is named as such
    title = f"igmu benchmark, {budget} budget: the mini matrix" + (f" ({', '.join(tasks)} only)" if part else "")
    path = write_result(f"benchmark_matrix_{budget}{part}", title, "\n".join(lines), data, meta=meta)
    print(f"Written: {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[1])
    p.add_argument("--work", type=str, default=None)
    p.add_argument("--budget", type=str, default="preset", help="igmu benchmark --budget.")
    p.add_argument("--extra", type=str, default="--methods all --attack unlearndiffatk",
                   help="Further igmu benchmark arguments (quoted).")
    p.add_argument("--no_write", action="store_true", help="Print only; do not write docs/results.")
    p.add_argument("--note", type=str, default="", help="A remark written with the figures (e.g. what else ran on "
                                                        "the machine).")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-matrix-"))
    from results import provenance, this_command

    meta = provenance(this_command(("--work", "--note")))  # the commit and packages the run starts with
    results = []
    for nproc in args.processes:
        folder = work / f"p{nproc}"
        if (folder / "report.json").exists():
            sys.exit(f"{folder} holds a finished run; pass another --work (a stopped run in --work is resumed).")
        results.append(run(nproc, folder, ["--budget", args.budget, *shlex.split(args.extra)]))
        r = results[-1]
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}), flush=True)
    print("| processes | wall s | unlearning s | generation s | scoring s | attacks s |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['processes']} | {r['wall_seconds']:.0f} | {r['unlearning_seconds']:.0f} | "
              f"{r['generation_seconds']:.0f} | {r['scoring_seconds']:.0f} | {r['attack_seconds']:.0f} |")
    note = ""
    if len(results) == 2:
        a, b = (r["summary"]["tasks"] for r in results)
        rates = [(t, m, a[t]["rows"][m]["forgetting rate ↓"], b[t]["rows"].get(m, {}).get("forgetting rate ↓"))
                 for t in a for m in a[t]["rows"]]
        differ = [x for x in rates if x[2] != x[3]]
        note = (f"Forgetting rates equal across process counts in {len(rates) - len(differ)} of {len(rates)} cells"
                + (f"; differ: {differ}" if differ else "") + ".")
        print(note)
    if not args.no_write:
        write_results(results, args.budget, " ".join(x for x in (note, args.note) if x), meta)


if __name__ == "__main__":
    main()
