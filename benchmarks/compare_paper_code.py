"""igmu_hf beside the authors' paper-era code, on the same tiny pipeline and the same inputs (run outside the repo's
tests: the authors' code is read from a fetched snapshot, never copied here).

    python benchmarks/compare_paper_code.py uce --paper_repo /path/to/unified-concept-editing   # git dir or work tree

Prints one JSON line: the relative Frobenius difference of the two edits ‖ΔW_ours − ΔW_paper‖ / ‖ΔW_paper‖ over
every edited projection, and our edit time as a ratio of theirs.

- ``uce``: ``train-scripts/train_erase.py`` at f7222e6, its ``edit_model`` (technique 'replace', λ = 0.5,
  erase_scale 1, the preserve set ``[''] + preserve`` and s_p = max(0.1, 1/|that set|), as its ``__main__`` does).
- ``receler``: ``receler/concept_reg.py`` at 3ccedc9, its ``get_mask``, on the cross-attention maps the mini UNet
  records for a concept prompt (SD1.4's 16×16 rule made the mini UNet's 4×4 for both): the share of mask entries
  that differ, per layer.
"""

import argparse
import ast
import copy
import json
import subprocess
import time
from pathlib import Path


def paper_function(repo: str, commit: str, path: str, name: str, namespace: dict | None = None, edit=None):
    """The function ``name`` of ``path`` at ``commit`` in the fetched repository, compiled alone (the module's
    top level downloads models) with ``namespace`` as its globals; ``edit`` may rewrite the source first."""
    source = subprocess.run(["git", "--git-dir", _git_dir(repo), "show", f"{commit}:{path}"], check=True,
                            capture_output=True, text=True).stdout
    tree = ast.parse(edit(source) if edit else source)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    import torch

    namespace = {"torch": torch, "copy": copy, "ast": ast, **(namespace or {})}
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


def compare_receler(repo: str, concept: str = "circle") -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from einops import rearrange

    from igmu_hf.families import family_of
    from igmu_hf.hub import load_pipeline
    from igmu_hf.methods.fmn import AttentionProbabilities, concept_positions
    from igmu_hf.methods.receler import concept_masks, mask_size

    pipe = load_pipeline()
    unet, size = pipe.unet, mask_size(pipe.unet)
    get_mask = paper_function(
        repo, "3ccedc9", "receler/concept_reg.py", "get_mask",
        {"np": np, "F": F, "rearrange": rearrange,
         "ldm_module_prefix_name": lambda name: name},  # one mask per layer name (theirs: per block, the same maps)
        edit=lambda src: src.replace("if res != 16:", f"if res != {size}:"))  # the mini UNet's quarter-size maps
    family = family_of(pipe)
    rec = AttentionProbabilities(unet)
    g = torch.Generator().manual_seed(0)
    z = torch.randn((1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size), generator=g)
    with torch.no_grad():
        family.predict(unet, z, torch.tensor([500]), family.encode(pipe, [concept]))
    rec.restore()
    pos = concept_positions(pipe.tokenizer, concept, concept, use_pooler=False)[None]
    t0 = time.perf_counter()
    ours = concept_masks(rec.probs, pos, 0.1, size)
    t_ours = time.perf_counter() - t0
    names = [f"layer{i}" for i in range(len(rec.probs))]
    heads = rec.probs[0].shape[0]
    maps = {n: p.view(1, heads, *p.shape[1:]) for n, p in zip(names, rec.probs)}
    word = torch.nonzero(pos[0]).flatten()
    t0 = time.perf_counter()
    theirs = get_mask(maps, word, 0.1)
    t_theirs = time.perf_counter() - t0
    differ = [float((o[0] != theirs[n].flatten()).float().mean()) for o, n in zip(ours, names)]
    return {"method": "receler", "paper_code": "jasper0314-huang/Receler@3ccedc9 receler/concept_reg.py get_mask",
            "pipeline": "mini", "layers": len(names), "mask_size": size,
            "max_share_of_mask_entries_that_differ": max(differ),
            "mask_coverage": float(torch.cat([o.flatten() for o in ours]).mean()),
            "time_ratio_ours_over_theirs": t_ours / t_theirs}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("method", choices=["uce", "receler"])
    p.add_argument("--paper_repo", required=True, help="Fetched snapshot of the authors' repository.")
    args = p.parse_args()
    print(json.dumps({"uce": compare_uce, "receler": compare_receler}[args.method](args.paper_repo)))


if __name__ == "__main__":
    from results import record

    record("paper_code", "Our methods beside the authors' code", main)
