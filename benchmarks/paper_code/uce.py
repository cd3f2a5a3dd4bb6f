"""UCE beside ``train-scripts/train_erase.py``'s ``edit_model`` (technique 'replace', λ = 0.5, erase_scale 1, the
preserve set ``[''] + preserve`` and s_p = max(0.1, 1/|that set|), as its ``__main__`` does). A closed-form edit: no
loss; the edited projections are compared (‖ΔW_ours − ΔW_theirs‖ / ‖ΔW_theirs‖)."""

import copy

from compare_paper_code import interleaved_ratio, paper_function, rel_diff

REPOSITORY, COMMIT = "rohitgandikota/unified-concept-editing", "f7222e6"


def compare(repo: str, concept: str = "church", preserve=("a photo of a dog", "a red car")) -> dict:
    from igmu_hf.methods import UCEConfig, UCEUnlearner
    from igmu_hf.tiny_pipelines import tiny_pipeline

    edit_model = paper_function(repo, COMMIT, "train-scripts/train_erase.py", "edit_model")
    base = tiny_pipeline("sd1")
    retain = [""] + list(preserve)
    out = {}

    def theirs():
        out["theirs"] = copy.deepcopy(base)
        edit_model(out["theirs"], [concept], [" "], retain, lamb=0.5, erase_scale=1.0,
                   preserve_scale=max(0.1, 1 / len(retain)), technique="replace")

    def ours():
        out["ours"] = copy.deepcopy(base)
        UCEUnlearner(UCEConfig(concepts=[concept], preserve_concepts=list(preserve))).unlearn(out["ours"])

    timing = interleaved_ratio(ours, theirs)
    w0, w1, w2 = ({k: v.detach() for k, v in p.unet.named_parameters()} for p in (base, out["theirs"], out["ours"]))
    keys = [k for k in w0 if ("attn2.to_k" in k or "attn2.to_v" in k) and k.endswith("weight")]
    return {"compared": "the closed-form edit of every cross-attention to_k/to_v (tiny sd1)", "loss_rel_diff": None,
            "grad_rel_diff": rel_diff({k: w2[k] - w0[k] for k in keys}, {k: w1[k] - w0[k] for k in keys}),
            "edited_projections": len(keys),
            "ours_changed_elsewhere": max(float((w2[k] - w0[k]).abs().max()) for k in w0 if k not in keys),
            **timing}
