"""igmu_hf beside the authors' paper-era code, on the same tiny pipeline and the same inputs (run outside the repo's
tests: the authors' code is read from a fetched snapshot, never copied here).

    python benchmarks/compare_paper_code.py uce --paper_repo /path/to/unified-concept-editing   # git dir or work tree

Prints one JSON line: the relative Frobenius difference of the two edits ‖ΔW_ours − ΔW_paper‖ / ‖ΔW_paper‖ over
every edited projection, and our edit time as a ratio of theirs.

- ``uce``: ``train-scripts/train_erase.py`` at f7222e6, its ``edit_model`` (technique 'replace', λ = 0.5,
  erase_scale 1, the preserve set ``[''] + preserve`` and s_p = max(0.1, 1/|that set|), as its ``__main__`` does).
"""

import argparse
import ast
import copy
import json
import subprocess
import time
from pathlib import Path


def paper_function(repo: str, commit: str, path: str, name: str):
    """The function ``name`` of ``path`` at ``commit`` in the fetched repository, compiled alone (the module's
    top level downloads models)."""
    source = subprocess.run(["git", "--git-dir", _git_dir(repo), "show", f"{commit}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    tree = ast.parse(source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    import torch

    namespace = {"torch": torch, "copy": copy, "ast": ast}
    exec(compile(ast.Module([node], type_ignores=[]), f"{path}@{commit}", "exec"), namespace)
    return namespace[name]


def _git_dir(repo: str) -> str:
    p = Path(repo)
    return str(p / ".git") if (p / ".git").exists() else str(p)


def compare_uce(repo: str, concept: str = "church", preserve=("a photo of a dog", "a red car")) -> dict:

    from igmu_hf.methods import UCEConfig, UCEUnlearner
    from igmu_hf.tiny_pipelines import tiny_pipeline

    edit_model = paper_function(repo, "f7222e6", "train-scripts/train_erase.py", "edit_model")
    base = tiny_pipeline("sd1")
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    retain = [""] + list(preserve)
    t0 = time.perf_counter()
    edit_model(theirs, [concept], [" "], retain, lamb=0.5, erase_scale=1.0,
               preserve_scale=max(0.1, 1 / len(retain)), technique="replace")
    t_theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    UCEUnlearner(UCEConfig(concepts=[concept], preserve_concepts=list(preserve))).unlearn(ours)
    t_ours = time.perf_counter() - t0
    w0, w1, w2 = ({k: v.detach() for k, v in p.unet.named_parameters()} for p in (base, theirs, ours))
    keys = [k for k in w0 if ("attn2.to_k" in k or "attn2.to_v" in k) and k.endswith("weight")]
    num = sum(float((w2[k].double() - w1[k].double()).pow(2).sum()) for k in keys) ** 0.5
    den = sum(float((w1[k].double() - w0[k].double()).pow(2).sum()) for k in keys) ** 0.5
    other = max(float((w2[k] - w0[k]).abs().max()) for k in w0 if k not in keys)
    return {"method": "uce", "paper_code": "rohitgandikota/unified-concept-editing@f7222e6 edit_model",
            "pipeline": "tiny sd1", "edited_projections": len(keys),
            "relative_frobenius_difference": num / den, "edit_norm": den, "ours_changed_elsewhere": other,
            "time_ratio_ours_over_theirs": t_ours / t_theirs}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", choices=["uce"])
    p.add_argument("--paper_repo", required=True, help="Fetched snapshot of the authors' repository.")
    args = p.parse_args()
    print(json.dumps({"uce": compare_uce}[args.method](args.paper_repo)))


if __name__ == "__main__":
    main()
