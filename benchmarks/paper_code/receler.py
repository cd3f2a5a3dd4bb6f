"""Receler's concept mask beside ``receler/concept_reg.py``'s ``get_mask``, on the cross-attention maps the mini UNet
records for a concept prompt (SD1.4's 16×16 rule made the mini UNet's 4×4 for both): the share of mask entries that
differ, per layer."""

import torch

from compare_paper_code import interleaved_ratio, paper_function

REPOSITORY, COMMIT = "jasper0314-huang/Receler", "3ccedc9"


def compare_mask(repo: str, concept: str = "circle") -> dict:
    import numpy as np
    import torch.nn.functional as F
    from einops import rearrange

    from igmu_hf.families import family_of
    from igmu_hf.hub import load_pipeline
    from igmu_hf.methods.fmn import AttentionProbabilities, concept_positions
    from igmu_hf.methods.receler import concept_masks, mask_size

    pipe = load_pipeline()
    unet, size = pipe.unet, mask_size(pipe.unet)
    get_mask = paper_function(
        repo, COMMIT, "receler/concept_reg.py", "get_mask",
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
    names = [f"layer{i}" for i in range(len(rec.probs))]
    heads = rec.probs[0].shape[0]
    maps = {n: p.view(1, heads, *p.shape[1:]) for n, p in zip(names, rec.probs)}
    word = torch.nonzero(pos[0]).flatten()
    out = {}
    timing = interleaved_ratio(lambda: out.__setitem__("ours", concept_masks(rec.probs, pos, 0.1, size)),
                               lambda: out.__setitem__("theirs", get_mask(maps, word, 0.1)), repeats=11)
    differ = [float((o[0] != out["theirs"][n].flatten()).float().mean()) for o, n in zip(out["ours"], names)]
    return {"layers": len(names), "mask_size": size, "max_share_of_mask_entries_that_differ": max(differ),
            "mask_coverage": float(torch.cat([o.flatten() for o in out["ours"]]).mean()), **timing}


def compare(repo: str) -> dict:
    return {"compared": "the concept mask (mini world)", **compare_mask(repo)}
