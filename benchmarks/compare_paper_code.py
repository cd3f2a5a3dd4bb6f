"""igmu_hf beside the authors' paper-era code, on the same tiny pipeline and the same inputs (run outside the repo's
tests: the authors' code is read from a fetched snapshot and executed from it, never copied here).

    python benchmarks/compare_paper_code.py uce --paper_repo /path/to/unified-concept-editing   # git dir or work tree
    python benchmarks/compare_paper_code.py all --mirrors /work/.mirror    # every method; owner+name/repo folders

One module per method in ``benchmarks/paper_code/`` (``REPOSITORY``, ``COMMIT`` and ``compare(repo) -> dict``) runs
one training step (or the edit) of theirs and of ours on the same inputs and reports the loss's relative difference,
the gradients' (or the updated weights') relative difference, and our step time as a ratio of theirs (median of
interleaved runs, one torch thread). ``all`` writes ``docs/results/faithfulness.md`` with one row per method.
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
METHODS = ("esd", "fmn", "mace", "rece", "conceptprune", "uce", "advunlearn", "receler", "spm", "salun", "ca", "doco")


def git_dir(repo: str) -> str:
    p = Path(repo)
    return str(p / ".git") if (p / ".git").exists() else str(p)


def paper_source(repo: str, commit: str, path: str) -> str:
    """The text of ``path`` at ``commit`` in the fetched repository."""
    return subprocess.run(["git", "--git-dir", git_dir(repo), "show", f"{commit}:{path}"], check=True,
                          capture_output=True, text=True).stdout


def paper_function(repo: str, commit: str, path: str, name: str, namespace: dict | None = None, edit=None):
    """The function (or class) ``name`` of ``path`` at ``commit`` in the fetched repository, compiled alone (module top
    levels download models) with ``namespace`` as its globals; ``edit`` may rewrite the source first (a shim: device,
    tiny model), and every edit is visible in the comparing module. ``"Class.method"`` gives a method as a plain
    function (call it with the object, or a stand-in holding the attributes it reads, as its first argument)."""
    source = paper_source(repo, commit, path)
    tree = ast.parse(edit(source) if edit else source)
    body = tree.body
    *owners, name = name.split(".")
    for owner in owners:
        body = next(n for n in body if isinstance(n, ast.ClassDef) and n.name == owner).body
    node = next(n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name)
    node.decorator_list = [] if owners else node.decorator_list
    import torch

    namespace = {"torch": torch, "copy": copy, "ast": ast, **(namespace or {})}
    exec(compile(ast.Module([node], type_ignores=[]), f"{path}@{commit}", "exec"), namespace)
    return namespace[name]


def rel_diff(ours, theirs) -> float:
    """‖ours − theirs‖ / ‖theirs‖ over a tensor, a number, or a list/dict of tensors (float64)."""
    import torch

    if isinstance(theirs, dict):
        ours, theirs = [ours[k] for k in theirs], list(theirs.values())
    if not isinstance(theirs, (list, tuple)):
        ours, theirs = [ours], [theirs]
    num = den = 0.0
    for a, b in zip(ours, theirs, strict=True):
        a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
        num += float((a - b).pow(2).sum())
        den += float(b.pow(2).sum())
    return (num / den) ** 0.5 if den else float(num > 0)


def interleaved_ratio(ours: Callable[[], object], theirs: Callable[[], object], repeats: int = 5) -> dict:
    """Our time over theirs: each callable run ``repeats`` times, alternately (theirs first), medians compared."""
    t_ours, t_theirs = [], []
    for _ in range(repeats):
        for f, acc in ((theirs, t_theirs), (ours, t_ours)):
            t0 = time.perf_counter()
            f()
            acc.append(time.perf_counter() - t0)
    return {"seconds_ours": statistics.median(t_ours), "seconds_theirs": statistics.median(t_theirs),
            "step_time_ratio": statistics.median(t_ours) / statistics.median(t_theirs), "repeats": repeats}


def per_step_ratio(ours: Callable[[int], object], theirs: Callable[[int], object], k: int = 6,
                   repeats: int = 5) -> dict:
    """Our time per training step over theirs, fixed costs (model loading, setup, saving) cancelled: each side's
    ``run(n)`` (the whole program for ``n`` steps) timed at n = 1 and n = ``k``, alternately (theirs first), and
    (T(k) − T(1)) / (k − 1) compared by medians. For programs whose setup differs (ours: an accelerate run, a
    checkpointable state, a model card's metadata) while their step is the same."""
    per = {"ours": [], "theirs": []}
    for _ in range(repeats):
        times = {}
        for n in (1, k):
            for name, f in (("theirs", theirs), ("ours", ours)):
                t0 = time.perf_counter()
                f(n)
                times[name, n] = time.perf_counter() - t0
        for name in per:
            per[name].append((times[name, k] - times[name, 1]) / (k - 1))
    o, t = statistics.median(per["ours"]), statistics.median(per["theirs"])
    return {"seconds_per_step_ours": o, "seconds_per_step_theirs": t, "step_time_ratio": o / t,
            "per_step_from": f"(T({k}) - T(1)) / {k - 1}, median of {repeats}"}


def grads_of(params: dict) -> dict:
    """``{name: grad}`` (zeros where a parameter got none) of named parameters, detached copies."""
    import torch

    return {k: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for k, p in params.items()}


def compare(method: str, repo: str) -> dict:
    import torch

    torch.set_num_threads(1)  # the record's count; also keeps timings comparable
    module = importlib.import_module(f"paper_code.{method}")
    row = module.compare(repo)
    return {"method": method, "paper_code": f"{module.REPOSITORY}@{module.COMMIT}", **row}


def table(rows: list[dict]) -> str:
    def f(x):
        return "—" if x is None else (f"{x:.1e}" if isinstance(x, float) and x < 0.01 else
                                      (f"{x:.2f}" if isinstance(x, float) else str(x)))

    lines = ["| method | authors' code | compared | loss rel. diff | grad/weights rel. diff | step time ours/theirs |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['paper_code']} | {r.get('compared', '')} | {f(r.get('loss_rel_diff'))} | "
                     f"{f(r.get('grad_rel_diff'))} | {f(r.get('step_time_ratio'))} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", nargs="+", choices=[*METHODS, "all"])
    p.add_argument("--paper_repo", help="Fetched snapshot of the authors' repository (one method).")
    p.add_argument("--mirrors", help="Folder of fetched snapshots, one `owner+name/repo` per authors' repository.")
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    methods = METHODS if "all" in args.method else tuple(args.method)
    rows = []
    for m in methods:
        module = importlib.import_module(f"paper_code.{m}")
        repo = args.paper_repo or str(Path(args.mirrors) / module.REPOSITORY.replace("/", "+") / "repo")
        rows.append(compare(m, repo))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(table(rows))
    return rows


if __name__ == "__main__":
    from results import provenance, this_command, write_result

    write = "--no_write" not in sys.argv
    if not write:
        sys.argv.remove("--no_write")
    # the snapshots' folder is local: the published command names it as a placeholder
    command = this_command(private=("--work", "--mirrors", "--paper_repo"))
    command += " --mirrors DIR" if "--mirrors" in sys.argv else " --paper_repo DIR" if "--paper_repo" in sys.argv else ""
    meta = provenance(command)
    rows = main()
    if write:
        md = "\n".join(["One JSON line per method (every key the comparison measured), then the table.", "",
                        "```", *(json.dumps(r, default=str) for r in rows), "```", "", table(rows)])
        path = write_result("paper_code", "Our methods beside the authors' code", md, {"rows": rows}, meta=meta)
        print(f"Written: {path}")
