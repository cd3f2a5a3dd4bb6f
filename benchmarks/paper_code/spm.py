"""SPM beside the authors' training step (``train_spm.py`` l.197-282 at 3dd762e): their ``predict_noise``
(``src/engine/train_util.py``), ``sample`` (``src/engine/sampling.py``) and ``PromptEmbedsPair._erase_with_la``
(``src/configs/prompt.py``), run from the snapshot on the tiny SD1 pipeline with a rank-1 membrane (peft LoRA on the
transformer blocks, up-projections set non-zero so ε_θ ≠ ε*); their ``with network:`` is our adapters on, outside it
off. Same z_t, t and anchors (theirs drawn by their ``sample``; ours given its four anchors)."""

import copy
import random
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from compare_paper_code import grads_of, interleaved_ratio, paper_function, rel_diff

REPOSITORY, COMMIT = "Con6924/SPM", "3dd762e"


def compare(repo: str) -> dict:
    from diffusers import SchedulerMixin, UNet2DConditionModel

    from igmu_hf.diffusion import adapters_disabled, add_lora, reference_forward
    from igmu_hf.families import FAMILIES, Conditioning
    from igmu_hf.methods.spm import anchoring_rows, spm_loss, transformer_block_modules
    from igmu_hf.text import encode_prompts
    from igmu_hf.tiny_pipelines import tiny_pipeline

    ns = {"UNet2DConditionModel": UNet2DConditionModel, "SchedulerMixin": SchedulerMixin, "random": random,
          "PromptEmbedsPair": object}
    util = "src/engine/train_util.py"
    predict_noise = paper_function(repo, COMMIT, util, "predict_noise", ns)
    concat_embeddings = paper_function(repo, COMMIT, util, "concat_embeddings", ns)
    sample = paper_function(repo, COMMIT, "src/engine/sampling.py", "sample", ns)
    erase = paper_function(repo, COMMIT, "src/configs/prompt.py", "PromptEmbedsPair._erase", ns)
    erase_with_la = paper_function(repo, COMMIT, "src/configs/prompt.py", "PromptEmbedsPair._erase_with_la", ns)

    pipe = tiny_pipeline("sd1")
    add_lora(pipe.unet, transformer_block_modules(pipe.unet), 1, 1, init_lora_weights=True, seed=0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pipe.unet.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    unet_theirs, unet_ours = pipe.unet, copy.deepcopy(pipe.unet)
    empty, c = (encode_prompts(pipe.tokenizer, pipe.text_encoder, [p]) for p in ("", "church"))
    # their config (configs/*/prompt.yaml): guidance_scale 1.0, la_strength 1000, sampling_batch_size 4, batch 1
    pair = SimpleNamespace(target=c, positive=c, neutral=empty, unconditional=empty, sampling_batch_size=4,
                           batch_size=1, loss_fn=F.mse_loss, guidance_scale=1.0, la_strength=1000.0)
    pair._erase = lambda **kw: erase(pair, **kw)
    random.seed(0)
    torch.manual_seed(0)
    anchors = sample(pair)  # [∅, a1, ∅, a2, ∅, a3, ∅, a4]
    sched = pipe.scheduler
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    t = torch.tensor(700)
    out = {}

    def theirs():
        unet = unet_theirs
        unet.zero_grad(set_to_none=True)
        with torch.no_grad(), adapters_disabled(unet):  # outside `with network:`
            positive = predict_noise(unet, sched, t, z, concat_embeddings(empty, c, 1), guidance_scale=1)
            neutral = predict_noise(unet, sched, t, z, concat_embeddings(empty, empty, 1), guidance_scale=1)
        target = predict_noise(unet, sched, t, z, concat_embeddings(empty, c, 1), guidance_scale=1)
        anchor = predict_noise(unet, sched, t, z.repeat(4, 1, 1, 1), anchors, guidance_scale=1)
        with torch.no_grad(), adapters_disabled(unet):
            anchor_ori = predict_noise(unet, sched, t, z.repeat(4, 1, 1, 1), anchors, guidance_scale=1)
        loss = erase_with_la(pair, target_latents=target, positive_latents=positive, neutral_latents=neutral,
                             anchor_latents=anchor, anchor_latents_ori=anchor_ori)["loss"]
        loss.backward()
        out["theirs"] = float(loss)

    fam = FAMILIES["sd1"]
    rows = anchoring_rows(anchors[1::2], Conditioning(c), Conditioning(empty), empty_rows=True)

    def ours():
        unet = unet_ours
        unet.zero_grad(set_to_none=True)
        loss = spm_loss(fam, unet, reference_forward(unet, fam), z, t[None], Conditioning(c), Conditioning(empty),
                        rows, 1.0, 1000.0)
        loss.backward()
        out["ours"] = float(loss)

    timing = interleaved_ratio(ours, theirs)
    trained = lambda u: {n: p for n, p in u.named_parameters() if p.requires_grad}  # noqa: E731
    return {"compared": "one SPM step with latent anchoring (tiny sd1 + rank-1 membrane; same z_t, t=700, 4 anchors)",
            "loss_theirs": out["theirs"], "loss_ours": out["ours"],
            "loss_rel_diff": abs(out["ours"] - out["theirs"]) / abs(out["theirs"]),
            "grad_rel_diff": rel_diff(grads_of(trained(unet_ours)), grads_of(trained(unet_theirs))),
            "differences": ["their UNet also runs the discarded first half of the anchoring batch [∅, a1, ∅, a2] "
                            "(zero gradient at guidance 1); ours runs only the kept rows: same loss, fewer passes"],
            **timing}
