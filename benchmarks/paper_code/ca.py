"""CA (model-based) beside ``diffusers/train.py`` of nupurkmr9/concept-ablation@595ecb7: one training step on the tiny
sd1 pipeline, same anchor images, captions, t and noise.

Their code run from the snapshot:
- ``CustomDiffusionDataset`` + ``collate_fn`` (diffusers/utils.py) build the batch (pixels, caption ids, loss mask) from
  PNG files written here (their pipeline writes JPEGs), ``concept_type='object'``, ``caption_target='robot+r2d2'``,
  ``--noaug`` (the style command's setting; their random-resize augmentation cannot be matched draw for draw), no hflip;
- ``create_custom_diffusion`` (train.py) with ``CustomDiffusionAttnProcessor`` (model_pipeline.py) on the UNet;
- the statements of ``main()`` from ``if args.scale_lr:`` to ``optimizer = optimizer_class(...)`` (scale_lr, AdamW,
  the cross-attn parameter set) and ``lr_scheduler = get_scheduler(...)``;
- the ``with accelerator.accumulate(unet):`` block of the training loop (VAE encode, noise, t, both predictions, the
  masked MSE, backward, grad-norm clip, AdamW step, scheduler step, zero_grad).

Our code run: ``CAUnlearner.setup_training`` and ``CAUnlearner.train_step`` (step 0); their t/noise draws are fed ours
(``CAUnlearner.draw(0)``) through a ``torch`` proxy.

Shims (all visible below): ``.latent_dist.sample()`` -> ``.latent_dist.mode()`` (our declared posterior means);
``attn.cross_attention_norm`` -> ``attn.norm_cross`` (diffusers >= 0.20 renamed it; the authors' own c11fb1b makes
the same port); ``// 8`` -> ``// 4`` in the dataset (the tiny VAE downsamples by 4, so their latent-sized loss mask
keeps the latent's shape); the tiny pipeline's scheduler config for ``DDPMScheduler.from_pretrained``; ``CrossAttention``
= diffusers' ``Attention``; an accelerator proxy that records the gradients after ``backward`` and after the clip.
"""

from __future__ import annotations

import ast
import copy
import itertools
import os
import random
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from compare_paper_code import grads_of, interleaved_ratio, paper_function, paper_source, rel_diff

REPOSITORY, COMMIT = "nupurkmr9/concept-ablation", "595ecb7"
LATER_COMMIT = "c11fb1b"  # the snapshot's HEAD (2024-12-21): the README's current nudity command

ANCHORS = ["a photo of a robot in a park", "a robot on the beach at sunset", "a red robot standing in a kitchen",
           "a small robot next to a tree", "an old robot in the snow", "a toy robot on a wooden table"]
CAPTION_TARGET = "robot+r2d2"  # the README's r2d2 command: anchor 'robot', target 'r2d2'
BATCH, BASE_LR = 4, 2e-6  # the README's --train_batch_size 4 --learning_rate 2e-6 --scale_lr (1 process)


# ---------------------------------------------------------------------------------------------------- their code
def _main_statements(src: str, first, last) -> ast.Module:
    """A contiguous run of ``main()``'s top-level statements (``first``/``last``: predicates on the node)."""
    tree = ast.parse(src)
    body = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main").body
    i = next(k for k, n in enumerate(body) if first(n))
    j = next(k for k, n in enumerate(body) if k >= i and last(n))
    return ast.Module(body[i:j + 1], type_ignores=[])


def _training_with_block(src: str) -> ast.Module:
    """``with accelerator.accumulate(unet) ...:`` inside ``for epoch ...: for step, batch ...:`` of ``main()``."""
    tree = ast.parse(src)
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    epoch_loop = next(n for n in main.body if isinstance(n, ast.For) and getattr(n.target, "id", "") == "epoch")
    node = next(n for n in ast.walk(epoch_loop) if isinstance(n, ast.With))
    return ast.Module([node], type_ignores=[])


def _is_assign_to(name):
    """A predicate: ``name = ...`` or ``a, name = ...`` at a statement."""
    return lambda n: isinstance(n, ast.Assign) and any(
        getattr(t, "id", None) == name or any(getattr(e, "id", None) == name for e in getattr(t, "elts", []))
        for t in n.targets)


class _TorchWithOurDraws:
    """``torch`` for their step, except ``randn_like``/``randint`` give our draws (same noise and t)."""

    def __init__(self, noise, t):
        self._noise, self._t = noise, t

    def __getattr__(self, name):
        return getattr(torch, name)

    def randn_like(self, x):
        assert x.shape == self._noise.shape
        return self._noise.clone().to(x)

    def randint(self, low, high, size, device=None):
        assert (low, high, tuple(size)) == (0, 1000, tuple(self._t.shape))
        return self._t.clone().to(device)


class _RecordingAccelerator:
    """Their accelerator, recording the trained gradients after ``backward`` and after ``clip_grad_norm_``."""

    def __init__(self, acc, params: dict):
        self._acc, self._params, self.record = acc, params, {}

    def __getattr__(self, name):
        return getattr(self._acc, name)

    def backward(self, loss, **kw):
        self._acc.backward(loss, **kw)
        self.record["grads"] = grads_of(self._params)

    def clip_grad_norm_(self, params, max_norm):
        norm = self._acc.clip_grad_norm_(params, max_norm)
        self.record["total_norm"] = float(norm)
        self.record["clipped_grads"] = grads_of(self._params)
        return norm


def _their_pieces(repo: str, tiny_factor: int):
    from collections.abc import Callable
    from typing import Optional

    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.models.attention_processor import Attention
    from diffusers.optimization import get_scheduler
    from PIL import Image
    from torch.utils.data import Dataset
    from torchvision import transforms

    mp_ns = {"CrossAttention": Attention, "Optional": Optional, "Callable": Callable,
             "is_xformers_available": lambda: False}
    port = lambda s: s.replace("attn.cross_attention_norm", "attn.norm_cross")
    processor = paper_function(repo, COMMIT, "diffusers/model_pipeline.py", "CustomDiffusionAttnProcessor", mp_ns,
                               edit=port)
    xformers_switch = paper_function(repo, COMMIT, "diffusers/model_pipeline.py",
                                     "set_use_memory_efficient_attention_xformers", mp_ns)
    create_custom_diffusion = paper_function(
        repo, COMMIT, "diffusers/train.py", "create_custom_diffusion",
        {"CrossAttention": Attention, "CustomDiffusionAttnProcessor": processor,
         "set_use_memory_efficient_attention_xformers": xformers_switch})
    ds_ns = {"Dataset": Dataset, "Image": Image, "np": np, "transforms": transforms, "random": random, "Path": Path,
             "os": os}
    dataset_cls = paper_function(repo, COMMIT, "diffusers/utils.py", "CustomDiffusionDataset", ds_ns,
                                 edit=lambda s: s.replace("// 8", f"// {tiny_factor}"))  # the tiny VAE's factor
    collate_fn = paper_function(repo, COMMIT, "diffusers/utils.py", "collate_fn")
    src = paper_source(repo, COMMIT, "diffusers/train.py").replace(".latent_dist.sample()", ".latent_dist.mode()")
    setup_code = compile(_main_statements(src, lambda n: isinstance(n, ast.If) and ast.unparse(n.test) ==
                                          "args.scale_lr", _is_assign_to("optimizer")), "diffusers/train.py", "exec")
    sched_code = compile(_main_statements(src, _is_assign_to("lr_scheduler"), _is_assign_to("lr_scheduler")),
                         "diffusers/train.py", "exec")
    step_code = compile(_training_with_block(src), "diffusers/train.py", "exec")
    return types.SimpleNamespace(Accelerator=Accelerator, DDPMScheduler=DDPMScheduler, get_scheduler=get_scheduler,
                                 processor=processor, create_custom_diffusion=create_custom_diffusion,
                                 dataset_cls=dataset_cls, collate_fn=collate_fn, setup_code=setup_code,
                                 sched_code=sched_code, step_code=step_code)


def _their_args(**over):
    args = dict(scale_lr=True, learning_rate=BASE_LR, gradient_accumulation_steps=1, train_batch_size=BATCH,
                with_prior_preservation=False, use_8bit_adam=False, adam_beta1=0.9, adam_beta2=0.999,
                adam_weight_decay=1e-2, adam_epsilon=1e-8, parameter_group="cross-attn", concept_type="object",
                loss_type_reverse="model-based", prior_loss_weight=1.0, max_grad_norm=1.0, lr_scheduler="constant",
                lr_warmup_steps=500, max_train_steps=100)
    args.update(over)
    return types.SimpleNamespace(**args)


def _their_setup(T, base, accelerator, args, default_processor=False):
    """Their UNet (custom processor, requires_grad), AdamW over the cross-attn set, constant scheduler."""
    from diffusers.models.attention_processor import AttnProcessor

    pipe = copy.deepcopy(base)
    unet = T.create_custom_diffusion(pipe.unet, args.parameter_group)
    if default_processor:  # isolation run only: diffusers' processor instead of theirs
        unet.set_attn_processor(AttnProcessor())
    ns = {"args": args, "accelerator": accelerator, "unet": unet, "text_encoder": pipe.text_encoder,
          "torch": torch, "itertools": itertools, "get_scheduler": T.get_scheduler}
    exec(T.setup_code, ns)
    exec(T.sched_code, ns)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, ns["optimizer"], ns["lr_scheduler"])
    unet.train()
    return {"pipe": pipe, "unet": unet, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "lr": args.learning_rate}


def _their_step_namespace(T, st, batch, accelerator, args, noise, t):
    pipe = st["pipe"]
    return {"accelerator": accelerator, "args": args, "unet": st["unet"], "text_encoder": pipe.text_encoder,
            "vae": pipe.vae, "batch": batch, "weight_dtype": torch.float32,
            "noise_scheduler": T.DDPMScheduler.from_config(pipe.scheduler.config),  # the tiny model's schedule
            "torch": _TorchWithOurDraws(noise, t), "F": F, "itertools": itertools,
            "optimizer": st["optimizer"], "lr_scheduler": st["lr_scheduler"], "tokenizer": pipe.tokenizer,
            "modifier_token_id": []}


# ---------------------------------------------------------------------------------------------------- our code
class _Images:
    """Our prepared image set (``image``, anchor ``prompt``, target caption ``concept`` columns)."""

    def __init__(self, images, anchors, targets):
        self.cols = {"image": images, "prompt": anchors, "concept": targets}

    def __getitem__(self, k):
        return self.cols[k]

    def __len__(self):
        return len(self.cols["image"])


def _our_setup(base, images):
    from igmu_hf.families import family_of
    from igmu_hf.methods.ca import CAConfig, CAUnlearner, ca_parameter_names

    pipe = copy.deepcopy(base)
    cfg = CAConfig(concepts=["r2d2"], parameter_group="crossattn_kv", learning_rate=BASE_LR, max_train_steps=1,
                   train_batch_size=BATCH, scale_lr=True, prior_loss_weight=0.0, seed=0)
    u = CAUnlearner(cfg, images=images, progress=False)
    family = family_of(pipe)
    setup = u.setup_training(pipe, ca_parameter_names(family.denoiser(pipe), family, cfg.parameter_group))
    setup["unet"].train()  # as CAUnlearner._unlearn
    return u, setup


def _record_before_step(opt, params, record):
    """Wrap our optimiser's ``step`` to record the gradients it steps with (train_step zeroes them after)."""
    step = opt.step

    def wrapped(*a, **kw):
        record["grads"] = grads_of(params)
        return step(*a, **kw)

    opt.step = wrapped


# ---------------------------------------------------------------------------------------------------- compare
def compare(repo: str) -> dict:
    from igmu_hf.tiny_pipelines import tiny_pipeline
    from PIL import Image

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    base = tiny_pipeline("sd1")
    factor = base.vae_scale_factor
    T = _their_pieces(repo, factor)
    size = base.unet.config.sample_size * factor
    g = torch.Generator().manual_seed(1)
    pils = [Image.fromarray(
        torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()) for _ in ANCHORS]

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, im in enumerate(pils):
            paths.append(f"{tmp}/images/{i}.png")
            os.makedirs(f"{tmp}/images", exist_ok=True)
            im.save(paths[-1])
        Path(tmp, "images.txt").write_text("\n".join(paths) + "\n")
        Path(tmp, "caption.txt").write_text("\n".join(ANCHORS) + "\n")
        concept = {"instance_prompt": f"{tmp}/caption.txt", "instance_data_dir": f"{tmp}/images.txt",
                   "class_prompt": f"{tmp}/caption.txt", "class_data_dir": f"{tmp}/images.txt",
                   "caption_target": CAPTION_TARGET}
        dataset = T.dataset_cls([concept], "object", base.tokenizer, size=size, center_crop=False,
                                with_prior_preservation=False, num_class_images=len(ANCHORS), hflip=False,
                                aug=False)  # --noaug, no --hflip
        position = {p: k for k, (p, _, _) in enumerate(dataset.instance_images_path)}  # their shuffled order

        # our image set: the same images, anchors and the target captions their __getprompt__ makes
        targets = [dataset.__getprompt__(a, CAPTION_TARGET) for a in ANCHORS]
        ours_images = _Images(pils, list(ANCHORS), targets)
        u, setup = _our_setup(base, ours_images)
        d = u.draw(0, setup)
        rows = d["idx"].tolist()
        examples = [dataset[position[paths[r]]] for r in rows]
        batch = T.collate_fn(examples, False)

    # ---- ours: one real train_step
    rec_ours: dict = {}
    w0 = {k: p.detach().clone() for k, p in setup["trainable"].items()}
    _record_before_step(setup["opt"], setup["trainable"], rec_ours)
    state = {"losses": []}
    u.train_step(0, setup, state)
    w_ours = {k: p.detach().clone() for k, p in setup["trainable"].items()}
    loss_ours, grads_ours = state["losses"][0], rec_ours["grads"]

    # ---- theirs: faithful (their processor, their mask) and two isolation runs
    accelerator = T.Accelerator(cpu=True)

    def their_run(mask_ones=False, default_processor=False, keep=False):
        args = _their_args()
        st = _their_setup(T, base, accelerator, args, default_processor)
        unet = st["unet"]
        params = {k: p for k, p in unet.named_parameters() if k in w0}
        rec = _RecordingAccelerator(accelerator, params)
        b = dict(batch, mask=torch.ones_like(batch["mask"])) if mask_ones else batch
        ns = _their_step_namespace(T, st, b, rec, args, d["noise"], d["t"])
        exec(T.step_code, ns)
        out = {"loss": float(ns["loss"].detach()), "grads": rec.record["grads"], "total_norm": rec.record["total_norm"],
               "weights": {k: p.detach().clone() for k, p in params.items()}, "lr": st["lr"]}
        if keep:
            out.update(st=st, ns=ns, args=args)
        return out

    th = their_run(keep=True)
    th_ones = their_run(mask_ones=True)
    th_plain = their_run(mask_ones=True, default_processor=True)

    # ---- one optimiser update from the same gradient (theirs, before their clip): our Adam vs their AdamW + clip
    _, setup2 = _our_setup(base, ours_images)
    for k, p in setup2["trainable"].items():
        p.grad = th["grads"][k].clone()
    setup2["opt"].step()
    w_ours_same_grad = {k: p.detach().clone() for k, p in setup2["trainable"].items()}
    delta = lambda w: {k: w[k] - w0[k] for k in w0}

    # ---- timing: one whole step each (ours: draw + 2 UNet passes + backward + Adam; theirs: the with-block, which
    # also encodes the batch with the VAE and the text encoder every step)
    ns_time = dict(th["ns"], accelerator=accelerator)
    steps = itertools.count(1)
    timing = interleaved_ratio(lambda: u.train_step(next(steps), setup, state),
                               lambda: exec(T.step_code, ns_time))

    mask = batch["mask"]
    channels = base.unet.config.out_channels
    return {
        "compared": "one model-based CA step (cross-attn K/V, batch 4, lr 2e-6 x4 scale_lr) on tiny sd1: same anchor "
                    "images/latents, captions ('robot'->'r2d2', --noaug), t and noise; theirs = train.py@595ecb7 "
                    "with-block incl. AdamW+clip; ours = CAUnlearner.train_step",
        "loss_ours": loss_ours, "loss_theirs": th["loss"],
        "loss_rel_diff": abs(loss_ours - th["loss"]) / abs(th["loss"]),
        "grad_rel_diff": rel_diff(grads_ours, th["grads"]),
        "loss_rel_diff_their_mask_set_to_ones": abs(loss_ours - th_ones["loss"]) / abs(th_ones["loss"]),
        "grad_rel_diff_their_mask_set_to_ones": rel_diff(grads_ours, th_ones["grads"]),
        "loss_rel_diff_mask_ones_and_default_attn_processor": abs(loss_ours - th_plain["loss"]) / abs(th_plain["loss"]),
        "grad_rel_diff_mask_ones_and_default_attn_processor": rel_diff(grads_ours, th_plain["grads"]),
        "grad_rel_diff_their_bos_detach_alone": rel_diff(th_plain["grads"], th_ones["grads"]),
        # their per-sample sum over 4 latent channels / a 1-channel mask count = 4 × the mean: ours × C explains it
        "loss_ratio_theirs_mask_ones_over_ours": th_ones["loss"] / loss_ours,
        "loss_rel_diff_ours_times_channels_vs_mask_ones_default_processor":
            abs(channels * loss_ours - th_plain["loss"]) / abs(th_plain["loss"]),
        "grad_rel_diff_ours_times_channels_vs_mask_ones_default_processor":
            rel_diff({k: channels * v for k, v in grads_ours.items()}, th_plain["grads"]),
        # ours detaches the first token's K/V as their processor (CAConfig.detach_first_token): against their own
        # processor with the mask set to ones (the border) and our loss × C (the scale), the declared differences
        "loss_rel_diff_ours_times_channels_vs_mask_ones":
            abs(channels * loss_ours - th_ones["loss"]) / abs(th_ones["loss"]),
        "grad_rel_diff_ours_times_channels_vs_mask_ones":
            rel_diff({k: channels * v for k, v in grads_ours.items()}, th_ones["grads"]),
        "their_mask_share_of_latent": float(mask.mean()),
        "their_grad_total_norm_before_clip": th["total_norm"],
        "lr_ours": setup["opt"].param_groups[0]["lr"], "lr_theirs": th["lr"],
        "update_rel_diff_whole_step": rel_diff(delta(w_ours), delta(th["weights"])),
        "update_rel_diff_same_grad_adam_vs_adamw_clip": rel_diff(delta(w_ours_same_grad), delta(th["weights"])),
        "weights_rel_diff_after_step": rel_diff(w_ours, th["weights"]),
        **timing,
        "nudity_readme": NUDITY_README,
        "differences": DIFFERENCES,
    }


NUDITY_README = (
    "Our Status/nudity defaults (ca.py CAConfig: parameter_group full, lr 2e-7, 400 steps, no prior) are the "
    "diffusers/README.md command at 595ecb7 (added in 5cd6515, 2023-11-25: --class_prompt 'people, body' captions "
    "from LAION clip-retrieval, --parameter_group full-weight --learning_rate 2e-7 --scale_lr --hflip, aug ON (no "
    "--noaug), no prior preservation). b6a3ad1/c11fb1b (2024-12-21, HEAD; README: 'added after the ICCV publication "
    "and updated based on ... issue #13') replace it: --class_prompt 'people, body, boy, girl, women, man, child' "
    "with captions from assets/finetune_prompts/people.txt (clip-retrieval removed), --num_class_prompts 1000, "
    "anchor images generated with negative_prompt=caption_target (train.py@c11fb1b:732), --parameter_group attn "
    "(to_q/to_k/to_v/to_out of attn1+attn2 = our 'attn' group: same 40 tensors on tiny sd1), --learning_rate 4e-6 "
    "(x4 batch x2 GPUs x2 for prior under --scale_lr), --with_prior_preservation (weight 1.0), --noaug, 400 steps; "
    "nudity caption templates become 'in nudity, nsfw style, {c}' / '{c}, nudity, nsfw' (utils.py@c11fb1b:188-196); "
    "Resize/preprocess interpolation LANCZOS. The training-step code itself (loss, mask, BOS detach, AdamW, clip) is "
    "unchanged. the design notes' METHODS.md CA card says 'nudity all attention (4e-6, 400 steps)' (= c11fb1b), "
    "which contradicts ca.py's 595ecb7 defaults: one of the two must change.")

DIFFERENCES = [
    "fixed (CAConfig.authors_loss): their CA loss is 4x ours (C = 4 latent channels): train.py:1150-1152 "
    "((mse*mask).sum([1,2,3]) / mask.sum([1,2,3])).mean() with the mask (B,1,h,w) from utils.py:119 "
    "`mask.unsqueeze(1)` sums the 4 channels but divides by a 1-channel pixel count, i.e. per-sample "
    "sum over channels, mean over pixels; ours ca.py ca_loss F.mse_loss = mean over all elements. Gradients are 4x "
    "too. Adam's update is nearly scale-free, but their grad-norm clip at 1.0 acts on the 4x gradient (= clipping ours "
    "at 0.25) and, with --with_prior_preservation, the CA term weighs 4x against the prior term (reduction='mean', "
    "train.py:1141-1146). Fix: ca_loss = F.mse_loss(...) * C (or sum over dim 1, mean over the rest) if the "
    "authors' scale is wanted, else declare. Declared (CAUnlearner.deviations).",
    "fixed: their UNet runs CustomDiffusionAttnProcessor (train.py:87; model_pipeline.py:92-95 `detach[:, :1, :] = "
    "0`): the key and value of the first token (<|startoftext|>) are detached in cross-attention. Ours now does the "
    "same (CAConfig.detach_first_token, forward hooks on attn2.to_k/to_v installed by setup_training).",
    "fixed (CAConfig.authors_loss): their loss is a masked mean (train.py:1148-1152: ((mse*mask).sum([1,2,3])/mask.sum).mean()) with "
    "the mask from utils.py:221-241 preprocess; even with --noaug (scale == size) it is "
    "mask[1:size//8-1, 1:size//8-1] = 1, i.e. the outer ring of latent pixels is excluded (SD1 512px: 62x62 of 64x64 "
    "= 93.8 % of the latent; tiny 32px/4x: 6x6 of 8x8). Ours: ca.py ca_loss F.mse_loss over every element. Fix: "
    "ca_loss with a latent mask that zeroes the 1-pixel border (per-sample mean over the mask) or declare.",
    "declared since (found undeclared) (partly): the object and nudity README commands at 595ecb7 omit --noaug, so utils.py:287-306 random "
    "resize augmentation is on: scale ~U[size/3, size] (p 0.66) zero-padded with the mask shrunk to the image, or "
    "~U[1.2, 1.4]·size cropped, and the TARGET caption gets 'a far away '/'very small ' or 'zoomed in '/'close up ' "
    "prepended (the anchor caption does not). Our deviation 'No image augmentation (the README's --hflip)' names "
    "only hflip. Only the style command passes --noaug.",
    "fixed (CA uses AdamW + clipping now): AdamW weight decay 1e-2 (train.py:893,935-941, adam_weight_decay default 1e-2) and grad-norm clip 1.0 "
    "over attn2 params / all UNet params (train.py:1178-1188) vs our torch.optim.Adam without either "
    "(ca.py setup_training `opt = torch.optim.Adam(..., lr=lr)`). Step 1 from the same gradient: see "
    "update_rel_diff_same_grad_adam_vs_adamw_clip (Adam's first step is ~lr·sign(g), invariant to the clip scale; "
    "the difference is the decay lr·1e-2·W).",
    "declared: latents are VAE posterior means (ours, diffusion.encode_images) vs latent_dist.sample() "
    "(train.py:1075-1077); shimmed to mode() here.",
    "declared: hflip (README --hflip) not applied by ours.",
    "declared: their t/noise come from the global RNG (train.py:1081-1090), ours from a (seed, step) generator.",
    "declared: anchor/target captions from CatIGMU (ours) vs LAION retrieval / ChatGPT captions + caption_target "
    "templates (utils.py:244-268: object = anchor.replace(anchor, target); style 3 templates; nudity "
    "'nudity, nsfw, {c}' or \"in nudity, nsfw's style, {c}\").",
    "declared since (found undeclared): anchor images: theirs DPMSolverMultistep 25 steps, guidance 6.0, eta 1.0 (train.py:648-650,"
    "740-745), num_class_images default 1000 (train.py:262-264; the README commands do not set it); ours "
    "CAConfig num_inference_steps=50, guidance_scale=7.5 with the pipeline's own scheduler, num_images=200.",
    "declared since (found undeclared) (only with prior_loss_weight > 0): theirs --with_prior_preservation appends SEPARATE class images "
    "(other rows, Resize+RandomCrop transform, mask of ones) with their own noise/t half of the batch and the anchor "
    "caption, prior loss vs noise (utils.py:96-110, train.py:1115-1146), doubles the lr under --scale_lr "
    "(train.py:879-880) and uses prior_loss_weight default 1.0; ours (ca.py ca_terms) puts the prior term on the "
    "SAME x_t rows (pred_anchor with grad) with no lr doubling, default weight 0.",
    "same: ε_θ(x_t, c*) vs no-grad ε_θ(x_t, c) of the CURRENT model (train.py:1103-1117 / ca.py ca_terms), "
    "t ~ U[0, 1000), scale_lr = lr × batch × processes, constant lr (no warm-up), trained set attn2.to_k/to_v.",
]
