"""DoCo beside ``train.py`` of yongliang-wu/DoCo@ebf6ff4: one training step after the discriminator warm-up on the tiny
sd1 pipeline (README flags ``--with_prior_preservation --gradient_clip --lambda_ 1 --parameter_group cross-attn
--scale_lr``, ``--dlr 1e-4``), same anchor latents, captions, t and noise.

Their code run from the snapshot:
- ``create_custom_diffusion`` (train.py) with ``CustomDiffusionAttnProcessor`` (DoCo/model_pipeline.py) on the UNet;
- ``init_discriminator`` + ``PatchGANDiscriminator`` (DoCo/gan.py, 4 blocks, unchanged: the latents here are 32x32,
  from 128-px images through the tiny VAE (factor 4), so their fixed 4 stride-2 blocks fit); its weights are
  overwritten with OUR discriminator's initial weights (same module layout, ``model.<i>`` = our ``<i>``);
- ``DDPMScheduler.step_batch`` and ``DDPMScheduler._get_variance`` (DoCo/scheduling_ddpm.py, a patched copy of
  diffusers 0.14's file that their setup drops into diffusers) attached to a subclass of diffusers' DDPMScheduler;
- ``adjust_gradient`` (DoCo/gradient_clip.py);
- ``collate_fn`` (DoCo/utils.py) on examples built here (their dataset's fields: instance/anchor/class prompt ids
  tokenized as their dataset does, pixel values = the image processor's [-1, 1] tensors that our encode uses);
- the statements of ``main()`` from ``if args.scale_lr:`` to ``optimizer = optimizer_class(...)`` (scale_lr, AdamW over
  attn2 to_k/to_v) and ``discriminator, criterion, optimizer_D = init_discriminator(...)``, the two ``get_scheduler``
  calls, and the ``with accelerator.accumulate(unet):`` block of the training loop (VAE encode, noise, t, UNet + shadow
  UNet predictions, step_batch x̂0s, generator loss after warm-up, adjust_gradient (prior backward + clip, adversarial
  backward + clip, per-tensor surgery, AdamW step), L_D backward, discriminator Adam step).

Same batch: their --with_prior_preservation appends SEPARATE class-image rows (own noise/t, the class prompt); ours
puts the prior term on the same x_t rows with the anchor caption. Here their prior half IS the instance half (same
pixels -> latents, same noise, same t; class prompt = the anchor caption), so the inputs coincide.

Warm-up: ``warm_up = 0`` on both sides; theirs runs with ``global_step = 1`` (``1 > 0``), ours ``train_step(1, ...)``
(``step > warm_up``), both from fresh optimisers (first Adam step).

Our code run: ``DoCoUnlearner.setup_training`` + ``DoCoUnlearner.train_step`` (formulation 'authors_code', the
default); their t/noise draws are fed ours (``DoCoUnlearner.draw(1)``, duplicated for their prior half) through a
``torch`` proxy.

Shims (all visible below): ``.latent_dist.sample()`` -> ``.latent_dist.mode()`` (our declared posterior means);
``attn.cross_attention_norm`` -> ``attn.norm_cross`` (diffusers >= 0.20 rename); ``CrossAttention`` = diffusers'
``Attention``; the tiny pipeline's scheduler config for ``DDPMScheduler.from_pretrained``; ``shadow_unet`` = a deepcopy
of the tiny (original) UNet for ``from_pretrained``; an optimiser wrapper recording the gradients each ``step`` uses.
"""

from __future__ import annotations

import ast
import copy
import itertools
import types
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from paper_code.ca import _Images, _TorchWithOurDraws, _is_assign_to, _main_statements, _training_with_block
from compare_paper_code import grads_of, interleaved_ratio, paper_function, paper_source, rel_diff

REPOSITORY, COMMIT = "yongliang-wu/DoCo", "ebf6ff4"

ANCHORS = ["a photo of an airplane in the sky", "an airplane on the runway", "a red airplane over the sea",
           "a small airplane next to a hangar", "an old airplane in the snow", "a toy airplane on a table"]
TARGETS = [a.replace("airplane", "parachute") for a in ANCHORS]  # their object captions: anchor.replace(anchor, target)
BATCH, BASE_LR, DLR = 4, 6e-6, 1e-4  # README --train_batch_size (8 -> 4 here) --learning_rate 6e-6 --scale_lr --dlr 1e-4
PRE_BN_BIASES = ("discriminator.2.bias", "discriminator.5.bias", "discriminator.8.bias")  # convs 2-4 (BN after)
IMAGE_PX = 128  # tiny VAE factor 4 -> 32x32 latents: their 4-block PatchGAN (32->16->8->4->2 -> 1x1 logits) fits


# ---------------------------------------------------------------------------------------------------- their code
def _record_step(opt, params: dict, record: dict, key: str):
    """Wrap ``opt.step`` to record the gradients it steps with (both sides zero them right after)."""
    step = opt.step

    def wrapped(*a, **kw):
        record[key] = grads_of(params)
        return step(*a, **kw)

    opt.step = wrapped


def _their_pieces(repo: str):
    from collections.abc import Callable

    import torch.nn as nn
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.models.attention_processor import Attention
    from diffusers.optimization import get_scheduler
    from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput
    from diffusers.utils.torch_utils import randn_tensor
    from torch.autograd import Variable

    mp_ns = {"CrossAttention": Attention, "Optional": Optional, "Callable": Callable,
             "is_xformers_available": lambda: False}
    port = lambda s: s.replace("attn.cross_attention_norm", "attn.norm_cross")  # diffusers >= 0.20 name
    processor = paper_function(repo, COMMIT, "DoCo/model_pipeline.py", "CustomDiffusionAttnProcessor", mp_ns,
                               edit=port)
    xformers_switch = paper_function(repo, COMMIT, "DoCo/model_pipeline.py",
                                     "set_use_memory_efficient_attention_xformers", mp_ns)
    create_custom_diffusion = paper_function(
        repo, COMMIT, "train.py", "create_custom_diffusion",
        {"CrossAttention": Attention, "CustomDiffusionAttnProcessor": processor,
         "set_use_memory_efficient_attention_xformers": xformers_switch})
    gan_ns = {"nn": nn, "torch": torch}
    gan_ns["PatchGANDiscriminator"] = paper_function(repo, COMMIT, "DoCo/gan.py", "PatchGANDiscriminator", gan_ns)
    init_discriminator = paper_function(repo, COMMIT, "DoCo/gan.py", "init_discriminator", gan_ns)
    adjust_gradient = paper_function(repo, COMMIT, "DoCo/gradient_clip.py", "adjust_gradient")
    collate_fn = paper_function(repo, COMMIT, "DoCo/utils.py", "collate_fn")
    sch_ns = {"Union": Union, "Tuple": Tuple, "List": List, "Optional": Optional,
              "DDPMSchedulerOutput": DDPMSchedulerOutput, "randn_tensor": randn_tensor}
    step_batch = paper_function(repo, COMMIT, "DoCo/scheduling_ddpm.py", "DDPMScheduler.step_batch", sch_ns)
    get_variance = paper_function(repo, COMMIT, "DoCo/scheduling_ddpm.py", "DDPMScheduler._get_variance", sch_ns)
    their_scheduler = type("TheirDDPMScheduler", (DDPMScheduler,), {"step_batch": step_batch,
                                                                    "_get_variance": get_variance})
    src = paper_source(repo, COMMIT, "train.py").replace(".latent_dist.sample()", ".latent_dist.mode()")
    setup_code = compile(_main_statements(src, lambda n: isinstance(n, ast.If) and ast.unparse(n.test) ==
                                          "args.scale_lr", _is_assign_to("discriminator")), "train.py", "exec")
    sched_code = compile(_main_statements(src, _is_assign_to("lr_scheduler"), _is_assign_to("lr_scheduler_D")),
                         "train.py", "exec")
    step_code = compile(_training_with_block(src), "train.py", "exec")
    return types.SimpleNamespace(Accelerator=Accelerator, get_scheduler=get_scheduler, Variable=Variable,
                                 create_custom_diffusion=create_custom_diffusion, init_discriminator=init_discriminator,
                                 adjust_gradient=adjust_gradient, collate_fn=collate_fn, scheduler_cls=their_scheduler,
                                 setup_code=setup_code, sched_code=sched_code, step_code=step_code)


def _their_args(**over):
    args = dict(scale_lr=True, learning_rate=BASE_LR, gradient_accumulation_steps=1, train_batch_size=BATCH,
                with_prior_preservation=True, adam_beta1=0.9, adam_beta2=0.999, adam_weight_decay=1e-2,
                adam_epsilon=1e-8, parameter_group="cross-attn", concept_type="object", dlr=DLR,
                loss_type_reverse="model-based", prior_loss_weight=1.0, max_grad_norm=1.0, lr_scheduler="constant",
                lr_warmup_steps=500, max_train_steps=100, warm_up=0, gradient_clip=True, lambda_=1.0)
    args.update(over)
    return types.SimpleNamespace(**args)


def _their_setup(T, base, accelerator, args, disc_state, default_processor=False):
    from diffusers.models.attention_processor import AttnProcessor

    pipe = copy.deepcopy(base)
    shadow_unet = copy.deepcopy(base.unet)  # their shadow_unet = from_pretrained(original)
    for param in shadow_unet.parameters():
        param.requires_grad = False
    unet = T.create_custom_diffusion(pipe.unet, args.parameter_group)
    if default_processor:  # isolation run only: diffusers' processor instead of theirs
        unet.set_attn_processor(AttnProcessor())
    ns = {"args": args, "accelerator": accelerator, "unet": unet, "text_encoder": pipe.text_encoder,
          "torch": torch, "itertools": itertools, "get_scheduler": T.get_scheduler,
          "init_discriminator": T.init_discriminator}
    exec(T.setup_code, ns)
    ns["discriminator"].model.load_state_dict(disc_state)  # our initial D weights (same layout)
    exec(T.sched_code, ns)
    unet, optimizer, lr_scheduler, lr_scheduler_D, discriminator, shadow_unet = accelerator.prepare(
        unet, ns["optimizer"], ns["lr_scheduler"], ns["lr_scheduler_D"], ns["discriminator"], shadow_unet)
    unet.train()
    return {"pipe": pipe, "unet": unet, "optimizer": optimizer, "lr_scheduler": lr_scheduler,
            "optimizer_D": ns["optimizer_D"], "lr_scheduler_D": lr_scheduler_D, "discriminator": discriminator,
            "criterion": ns["criterion"], "shadow_unet": shadow_unet, "lr": args.learning_rate}


def _their_step_namespace(T, st, batch, accelerator, args, noise, t):
    pipe = st["pipe"]
    return {"accelerator": accelerator, "args": args, "unet": st["unet"], "text_encoder": pipe.text_encoder,
            "vae": pipe.vae, "batch": batch, "weight_dtype": torch.float32, "shadow_unet": st["shadow_unet"],
            "noise_scheduler": T.scheduler_cls.from_config(pipe.scheduler.config),  # the tiny model's schedule
            "torch": _TorchWithOurDraws(noise, t), "F": F, "itertools": itertools, "Variable": T.Variable,
            "discriminator": st["discriminator"], "criterion": st["criterion"], "optimizer": st["optimizer"],
            "optimizer_D": st["optimizer_D"], "lr_scheduler": st["lr_scheduler"],
            "lr_scheduler_D": st["lr_scheduler_D"], "adjust_gradient": T.adjust_gradient,
            "global_step": 1, "tokenizer": pipe.tokenizer, "modifier_token_id": []}


# ---------------------------------------------------------------------------------------------------- our code
def _our_setup(base, images):
    from igmu_hf.families import family_of
    from igmu_hf.methods.ca import ca_parameter_names
    from igmu_hf.methods.doco import DoCoConfig, DoCoUnlearner

    pipe = copy.deepcopy(base)
    cfg = DoCoConfig(concepts=["parachute"], formulation="authors_code", parameter_group="crossattn_kv",
                     learning_rate=BASE_LR, max_train_steps=2, train_batch_size=BATCH, scale_lr=True,
                     prior_loss_weight=1.0, discriminator_lr=DLR, discriminator_channels=64, discriminator_layers=4,
                     gradient_surgery=True, surgery_strength=1.0, warm_up=0, max_grad_norm=1.0,
                     adam_weight_decay=1e-2, seed=0)
    u = DoCoUnlearner(cfg, images=images, progress=False)
    family = family_of(pipe)
    setup = u.setup_training(pipe, ca_parameter_names(family.denoiser(pipe), family, cfg.parameter_group))
    setup["unet"].train()  # as CAUnlearner._unlearn
    return u, setup


# ---------------------------------------------------------------------------------------------------- compare
def compare(repo: str) -> dict:
    from igmu_hf.tiny_pipelines import tiny_pipeline
    from PIL import Image

    torch.manual_seed(0)
    base = tiny_pipeline("sd1")
    T = _their_pieces(repo)
    g = torch.Generator().manual_seed(1)
    pils = [Image.fromarray(torch.randint(0, 256, (IMAGE_PX, IMAGE_PX, 3), generator=g, dtype=torch.uint8).numpy())
            for _ in ANCHORS]
    images = _Images(pils, list(ANCHORS), list(TARGETS))

    u, setup = _our_setup(base, images)
    disc_state0 = copy.deepcopy(setup["discriminator"].state_dict())
    STEP = 1  # first step after warm_up = 0
    d = u.draw(STEP, setup)
    rows = d["idx"].tolist()

    # their batch: instance rows (target caption, anchor ids) + prior rows = the same images with the anchor caption
    tok = lambda s: base.tokenizer(s, truncation=True, padding="max_length", max_length=base.tokenizer.model_max_length,
                                   return_tensors="pt").input_ids
    px = base.image_processor.preprocess([pils[r].convert("RGB") for r in rows])
    size = IMAGE_PX // base.vae_scale_factor
    examples = [{"instance_prompt_ids": tok(TARGETS[r]), "instance_anchor_prompt_ids": tok(ANCHORS[r]),
                 "instance_images": px[i], "mask": torch.ones(size, size), "class_prompt_ids": tok(ANCHORS[r]),
                 "class_images": px[i], "class_mask": torch.ones(size, size)} for i, r in enumerate(rows)]
    batch = T.collate_fn(examples, True)
    noise2, t2 = torch.cat([d["noise"], d["noise"]]), torch.cat([d["t"], d["t"]])

    # ---- ours: one real train_step after the warm-up
    rec_ours: dict = {}
    g_params, d_params = setup["trainable"], setup["disc_params"]
    w0 = {k: p.detach().clone() for k, p in g_params.items()}
    _record_step(setup["opt"], {**g_params, **d_params}, rec_ours, "grads")
    state = u.initial_state()
    u.train_step(STEP, setup, state)
    w_ours = {k: p.detach().clone() for k, p in g_params.items()}
    dw_ours = {k: p.detach().clone() for k, p in d_params.items()}
    bn_ours = {k: b.clone() for k, b in setup["discriminator"].named_buffers()}
    g_ours = {k: rec_ours["grads"][k] for k in g_params}
    gd_ours = {k: rec_ours["grads"][k] for k in d_params}

    # ours: the losses of the same draw on a fresh setup (the prior term train_step does not expose)
    u2, setup2 = _our_setup(base, images)
    with torch.no_grad():
        parts = u2.authors_losses(STEP, u2.draw(STEP, setup2), setup2)

    accelerator = T.Accelerator(cpu=True)
    dname = lambda k: "discriminator." + k  # ours: discriminator.<i>.weight; theirs: model.<i>.weight

    def their_run(default_processor=False, keep=False):
        args = _their_args()
        st = _their_setup(T, base, accelerator, args, disc_state0, default_processor)
        unet, disc = st["unet"], st["discriminator"]
        params = {k: p for k, p in unet.named_parameters() if k in w0}
        dparams = {dname(k[len("model."):]): p for k, p in disc.named_parameters()}
        rec: dict = {}
        _record_step(st["optimizer"], params, rec, "grads")
        _record_step(st["optimizer_D"], dparams, rec, "d_grads")
        ns = _their_step_namespace(T, st, batch, accelerator, args, noise2, t2)
        exec(T.step_code, ns)
        out = {"loss": float(ns["loss"].detach()), "loss_D": float(ns["loss_D"].detach()),
               "prior": float(ns["prior_loss"].detach()), "grads": rec["grads"], "d_grads": rec["d_grads"],
               "weights": {k: p.detach().clone() for k, p in params.items()},
               "d_weights": {k: p.detach().clone() for k, p in dparams.items()},
               "bn": {k[len("model."):]: b.clone() for k, b in disc.named_buffers()}, "lr": st["lr"]}
        if keep:
            out.update(st=st, ns=ns)
        return out

    th = their_run(keep=True)
    th_plain = their_run(default_processor=True)
    delta = lambda w, w_0: {k: w[k] - w_0[k] for k in w_0}
    d0 = {dname(k): v for k, v in disc_state0.items() if k in {n for n, _ in setup["discriminator"].named_parameters()}}

    # ---- timing: one whole step each, same inputs (ours: draw + UNet/shadow/D passes + 3 autograd.grad + surgery +
    # AdamW; theirs: the with-block, which also VAE-encodes and text-encodes the batch every step, and runs the UNet on
    # 2x the rows because of the separate prior half)
    ns_time = th["ns"]
    for opt in (setup["opt"], th["st"]["optimizer"], th["st"]["optimizer_D"]):
        del opt.step  # the recording wrappers off (instance attribute over the class's step)
    steps = itertools.count(STEP + 1)
    timing = interleaved_ratio(lambda: u.train_step(next(steps), setup, state),
                               lambda: exec(T.step_code, ns_time))

    loss_ours, loss_d_ours = state["losses"][0], state["discriminator_losses"][0]
    return {
        "compared": "one DoCo step after warm-up (warm_up 0; --with_prior_preservation --gradient_clip --lambda_ 1, "
                    "cross-attn K/V, batch 4, lr 6e-6 x4 scale_lr, dlr 1e-4) on tiny sd1 with 32x32 latents (128-px "
                    "images), same latents/captions/t/noise, their prior half = the instance half; same initial "
                    "PatchGAN weights (their 4-block PatchGANDiscriminator, ours AuthorsDiscriminator(blocks=4)); "
                    "theirs = train.py@ebf6ff4 with-block incl. adjust_gradient + AdamW + D Adam; ours = "
                    "DoCoUnlearner.train_step(1) (formulation='authors_code')",
        "loss_ours": loss_ours, "loss_theirs": th["loss"],
        "loss_rel_diff": abs(loss_ours - th["loss"]) / abs(th["loss"]),
        "loss_D_ours": loss_d_ours, "loss_D_theirs": th["loss_D"],
        "loss_D_rel_diff": abs(loss_d_ours - th["loss_D"]) / abs(th["loss_D"]),
        "prior_loss_ours": float(parts["prior"]), "prior_loss_theirs": th["prior"],
        "prior_loss_rel_diff": abs(float(parts["prior"]) - th["prior"]) / abs(th["prior"]),
        "grad_rel_diff": rel_diff(g_ours, th["grads"]),  # UNet K/V gradient after clip + surgery, before AdamW
        "grad_rel_diff_vs_their_step_with_default_attn_processor": rel_diff(g_ours, th_plain["grads"]),
        "grad_rel_diff_their_bos_detach_alone": rel_diff(th_plain["grads"], th["grads"]),
        "disc_grad_rel_diff": rel_diff(gd_ours, th["d_grads"]),
        "disc_grad_rel_diff_vs_default_attn_processor": rel_diff(gd_ours, th_plain["d_grads"]),
        "weights_rel_diff_after_step": rel_diff(w_ours, th["weights"]),
        "update_rel_diff_after_step": rel_diff(delta(w_ours, w0), delta(th["weights"], w0)),
        "update_rel_diff_after_step_vs_default_attn_processor": rel_diff(delta(w_ours, w0),
                                                                         delta(th_plain["weights"], w0)),
        "disc_weights_rel_diff_after_step": rel_diff(dw_ours, th["d_weights"]),
        "disc_update_rel_diff_after_step": rel_diff(delta(dw_ours, d0), delta(th["d_weights"], d0)),
        # the conv biases right before a BatchNorm have a mathematically zero gradient (BN removes the mean): both
        # sides get ~1e-7 float noise there, which Adam's first step (g/(|g|+eps)) turns into sign-arbitrary updates
        "disc_update_rel_diff_excluding_pre_batchnorm_biases": rel_diff(
            {k: dw_ours[k] - d0[k] for k in d0 if k not in PRE_BN_BIASES},
            {k: th["d_weights"][k] - d0[k] for k in d0 if k not in PRE_BN_BIASES}),
        "disc_update_rel_diff_per_tensor_over_1e-3": {
            k: round(v, 4) for k in d0 if (v := rel_diff(dw_ours[k] - d0[k], th["d_weights"][k] - d0[k])) > 1e-3},
        "disc_grad_norm_of_those_tensors": {
            k: float(th["d_grads"][k].norm()) for k in d0
            if rel_diff(dw_ours[k] - d0[k], th["d_weights"][k] - d0[k]) > 1e-3},
        "disc_batchnorm_buffers_rel_diff": rel_diff({k: v.float() for k, v in bn_ours.items()},
                                                    {k: v.float() for k, v in th["bn"].items()}),
        "lr_ours": setup["opt"].param_groups[0]["lr"], "lr_theirs": th["lr"],
        **timing,
        "differences": DIFFERENCES,
    }


DIFFERENCES = [
    "fixed: their UNet runs CustomDiffusionAttnProcessor (train.py:96; DoCo/model_pipeline.py:92-95 "
    "`detach[:, :1, :] = 0`): K/V of token 0 are detached in attn2. Ours now does the same (CAConfig."
    "detach_first_token, hooks installed by setup_training); grad_rel_diff_their_bos_detach_alone is what it was.",
    "declared: prior rows. Theirs --with_prior_preservation: SEPARATE class images (utils.py collate_fn:103-106, "
    "class_prompt captions, e.g. 'airplane') with their own noise and t (train.py:1140-1150 draw over 2n rows), "
    "target_prior = chunk(noise)[1] (train.py:1183), one UNet pass over 2n rows (train.py:1166); ours (doco.py "
    "authors_losses) the prior on the same x_t rows and the per-row anchor caption. Neutralised here (their prior half "
    "= the instance half, class prompt = anchor caption).",
    "declared: two optimisers (theirs: AdamW train.py:998-1006 for to_k/to_v, Adam betas (0.5, 0.999) gan.py:42 for D) "
    "vs one AdamW with two groups (doco.py setup_training; D group weight_decay 0 = Adam). Same update "
    "(disc_update_rel_diff_after_step).",
    "declared: latents = VAE posterior mean (ours) vs latent_dist.sample() (train.py:1136-1138); shimmed to mode().",
    "declared: t/noise from a (seed, step) generator (ours) vs the global RNG (train.py:1141-1150).",
    "declared (CA base): hflip / their random-resize augmentation (README object/nudity commands omit --noaug) are not "
    "applied by ours; anchor/target captions from our image set vs their ChatGPT captions + caption_target templates.",
    "same on both sides (not a difference): the conv biases before BatchNorm (gan.py:21-23, blocks 2-4) get a "
    "zero-in-exact-arithmetic gradient; Adam's first step normalises its float noise, so those 3 tensors' updates "
    "differ run to run (disc_update_rel_diff_per_tensor_over_1e-3); excluding them the D update matches.",
    "step time: theirs re-encodes the batch with the VAE and the text encoder every step (train.py:1135-1163) and runs "
    "the trained UNet on 2n rows (separate prior half) plus the shadow on n; ours uses precomputed latents and "
    "conditionings and 2 UNet passes of n rows + the shadow; the surgery's autograd.grad calls equal their two "
    "backward passes. Hence ours ~0.27x of theirs here.",
    "not compared (setup): their lr schedulers are stepped only for D in the --gradient_clip path "
    "(train.py:1251 adjust_gradient has no lr_scheduler.step(); train.py:1294 lr_scheduler_D.step()); with "
    "--lr_scheduler constant (default) this changes nothing. Their shadow_unet is not put in eval() (no dropout in "
    "SD's UNet: no effect).",
    "same: fake = step_batch(ε_θ(x_t, c*)).pred_original_sample, real = step_batch(ε_shadow(x_t, c)) of the frozen "
    "original (train.py:1171-1215 / doco.py authors_losses + predicted_x0); L_adv = BCE(D(fake), 0) after "
    "global_step > warm_up (train.py:1239-1241); L_D = BCE(D(sg real),0) + BCE(D(sg fake),1) every step "
    "(train.py:1259-1265); adjust_gradient (gradient_clip.py:3-38): prior grad clipped to norm 1 (norm_grad, "
    "train.py:1225-1236), adversarial grad clipped, per-tensor unit-vector correction g_a - λ·cos·b̂ where cos < 0, "
    "AdamW step on g_a only (doco.py authors_step + authors_surgery + clip_to_norm); D step on ∇L_D + the "
    "adversarial term's D gradient left by their backward (doco.py d_extra); BN running stats updated in the same "
    "order (gen, real, fake).",
]
