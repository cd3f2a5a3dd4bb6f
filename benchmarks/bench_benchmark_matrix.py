#!/usr/bin/env python
"""Wall time of the whole `igmu benchmark` matrix on the mini world, and its split into unlearning, generation,
scoring and attacks, with 1 and 2 processes (torchrun on CPU, one thread each for 2).

    python benchmarks/bench_benchmark_matrix.py                       # every method x circle, sketch, striped
    python benchmarks/bench_benchmark_matrix.py --processes 2 --work W --extra="--methods uce,esd"

Defaults: `--budget fast --attack unlearndiffatk`. Each run writes into a fresh folder under --work (a folder
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
    per_method = {}
    for task in summary["tasks"]:
        for m in summary["config"]["methods"]:
            cell = folder / "cells" / task / m / "cell.json"
            rec = json.loads(cell.read_text())
            if rec["status"] == "done":
                per_method[m] = per_method.get(m, 0.0) + rec["timing"]["unlearning_seconds"]
    return {"processes": nproc, "wall_seconds": wall, **summary["timing"], "unlearning_by_method": per_method,
            "summary": summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--work", type=str, default=None)
    p.add_argument("--extra", type=str, default="--methods all --budget fast --attack unlearndiffatk",
                   help="igmu benchmark arguments (quoted).")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-matrix-"))
    results = []
    for nproc in args.processes:
        folder = work / f"p{nproc}"
        if (folder / "report.json").exists():
            sys.exit(f"{folder} holds a finished run; pass another --work.")
        results.append(run(nproc, folder, shlex.split(args.extra)))
        r = results[-1]
        print(json.dumps({k: v for k, v in r.items() if k != "summary"}), flush=True)
    print("| processes | wall s | unlearning s | generation s | scoring s | attacks s |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['processes']} | {r['wall_seconds']:.0f} | {r['unlearning_seconds']:.0f} | "
              f"{r['generation_seconds']:.0f} | {r['scoring_seconds']:.0f} | {r['attack_seconds']:.0f} |")
    for r in results:
        top = sorted(r["unlearning_by_method"].items(), key=lambda kv: -kv[1])
        print(f"{r['processes']} process(es), unlearning by method (s, all tasks): "
              + ", ".join(f"{m} {s:.0f}" for m, s in top))
    if len(results) == 2:
        a, b = (r["summary"]["tasks"] for r in results)
        rates = [(t, m, a[t]["rows"][m]["forgetting rate ↓"], b[t]["rows"].get(m, {}).get("forgetting rate ↓"))
                 for t in a for m in a[t]["rows"]]
        differ = [x for x in rates if x[2] != x[3]]
        print(f"forgetting rates equal across process counts in {len(rates) - len(differ)} of {len(rates)} cells"
              + (f"; differ: {differ}" if differ else ""))


if __name__ == "__main__":
    main()
