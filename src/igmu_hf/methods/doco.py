"""DoCo: Unlearning Concepts in Diffusion Model via Concept Domain Correction (Wu et al., AAAI 2025).

Two formulations (``DoCoConfig.formulation``).

**'authors_code'** (default): the authors' ``train.py`` at ``yongliang-wu/DoCo`` ebf6ff4 as it runs with the README's
flags (``--with_prior_preservation --gradient_clip --lambda_ 1 --warm_up 1000 --scale_lr``, cross-attn K/V)::

    x̂₀(ε̂)   = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t                (their DDPM ``step_batch``'s pred_original_sample)
    fake    = x̂₀(ε_θ(x_t, c*)),  real = x̂₀(ε_orig(x_t, c))          (ε_orig: a frozen copy of the original UNet)
    D       their PatchGAN: 4 blocks conv 4×4 stride 2 (64→128→256→512, batch norm after the first), LeakyReLU
            0.2, then conv 4×4 → 1 logit per patch; Adam betas (0.5, 0.999); label 0 = real (the anchor domain)
    L_D     = BCE(D(real), 0) + BCE(D(sg fake), 1)                  every step
    after warm_up steps only (their ``global_step > warm_up``):
    L_adv   = BCE(D(fake), 0);   L_p = ‖ε_θ(x_t, c) − ε‖²  (prior preservation)
    g_p = clip(∇L_p), g_a = clip(∇L_adv)   (each clipped to global norm 1.0 over the trained weights)
    per weight tensor: cos = â·b̂ (unit vectors, +1e-8);  if cos < 0: g_a ← g_a − λ·cos·ĝ_p      (``gradient_clip.py``)
    θ ← AdamW(g_a)   (weight decay 1e-2; the prior gradient itself is never added)
    without surgery: θ ← AdamW(clip(∇(L_adv + 0.1·w·L_p)))

Their backward of L_adv also leaves its gradient in the discriminator, which their D step then adds to ∇L_D (their
``optimizer_D.zero_grad()`` runs only after D's step); that is kept.

**'paper_reading'**: igmu_hf's earlier reading of the paper (kept as an option; not the authors'). DoCo starts from Concept Ablation (:mod:`igmu_hf.methods.ca`: anchor images x, anchor captions c, target captions c*)
and adds, per step::

    x̂₀(c)  = the x₀ the model predicts from x_t under caption c (from its ε: (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t)
    D       a PatchGAN discriminator on latents: real = sg x̂₀(c) (the anchor domain), fake = x̂₀(c*) (the concept's)
    L_D     = BCE(D(real), 1) + BCE(D(sg fake), 0)
    L_u     = ‖ε_θ(x_t, c*) − sg ε_θ(x_t, c)‖²  +  λ_adv · BCE(D(fake), 1)       (unlearning: align the domains)
    L_p     = ‖ε_θ(x_t, c) − ε‖²                                               (prior preservation on the anchors)
    gradient surgery: g_u ← g_u − (g_u·g_p / ‖g_p‖²)·g_p  when g_u·g_p < 0, then θ ← Adam(g_u + w·g_p)

on the cross-attention weights (lr 6e-6, 2000 steps).

The discriminator here is pix2pix's PatchGAN (``NLayerDiscriminator``: 4×4 convolutions, stride 2 then 1, batch
norm, LeakyReLU 0.2, one logit per patch) on latent channels, written here as no maintained library ships it.
"""

import copy
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..families import family_of
from .base import register_method
from .ca import CAConfig, CAUnlearner
from ..seeding import seeded


@dataclass
class DoCoConfig(CAConfig):
    formulation: str = field(default="authors_code", metadata={
        "help": "'authors_code': yongliang-wu/DoCo ebf6ff4's train.py as it runs (adversarial loss against a frozen "
                "original's anchor domain, per-tensor surgery against the prior gradient, AdamW, discriminator "
                "warm-up; module docstring). 'paper_reading': igmu_hf's earlier reading of the paper (CA's MSE + "
                "λ_adv × adversarial, global PCGrad, a step on g_u' + w·g_p, Adam, no warm-up)."})
    parameter_group: str | None = field(default="crossattn_kv", metadata={
        "help": "Trained weights (see CA); the authors' --parameter_group cross-attn: attn2 to_k/to_v, "
                "'crossattn_kv'."})
    learning_rate: float | None = field(default=6e-6, metadata={"help": "Learning rate of the UNet (before "
                                                                       "scale_lr)."})
    max_train_steps: int | None = field(default=2000, metadata={"help": "Optimisation steps."})
    scale_lr: bool = field(default=True, metadata={"help": "Multiply the UNet's learning rate by the global batch "
                                                           "size (the README's --scale_lr; the discriminator's is "
                                                           "not scaled, as theirs)."})
    prior_loss_weight: float = field(default=1.0, metadata={"help": "w of the prior-preservation loss L_p."})
    adversarial_weight: float = field(default=1.0, metadata={
        "help": "λ_adv of the generator's adversarial term ('paper_reading' only)."})
    discriminator_lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the discriminator (the "
                                                                     "README's --dlr for objects and nudity)."})
    discriminator_channels: int = field(default=64, metadata={"help": "Width of the discriminator's first layer."})
    discriminator_layers: int = field(default=4, metadata={
        "help": "Stride-2 blocks of the discriminator ('authors_code': theirs has 4 for 64×64 latents; "
                "'paper_reading': pix2pix's n_layers); fewer for small latents."})
    gradient_surgery: bool = field(default=True, metadata={
        "help": "Correct the unlearning gradient against the preservation gradient where they conflict (the "
                "authors' --gradient_clip)."})
    surgery_strength: float = field(default=1.0, metadata={"help": "λ of the authors' surgery (--lambda_)."})
    warm_up: int = field(default=1000, metadata={
        "help": "Steps at the start where only the discriminator trains (the authors' --warm_up; 'authors_code')."})
    # max_grad_norm (1.0) and adam_weight_decay (1e-2) come from CAConfig: the authors' clip and AdamW, shared

    field_ranges: ClassVar[dict] = {"warm_up": (0, None, True), "surgery_strength": (0, None, True)}
    defaults_version = "2"  # 2: the authors' code (ebf6ff4) by default; 1 was 'paper_reading' with its defaults
    # measured on the mini world (docs/results/method_checks.md and probe_doco_longer.md): the authors' recipe at 400
    # steps (warm-up 200, lr 2e-5) leaves circle at 0.99; at 800 steps (warm-up 400: theirs is half the run) with
    # --scale_lr (2e-5 × batch 4) it forgets circle, 0.14 [0.10, 0.19] in 4 of 4 runs, without moving another shape;
    # one discriminator block for the 8×8 latents
    mini_preset = {"num_images": 24, "train_batch_size": 4, "max_train_steps": 800, "learning_rate": 2e-5,
                   "scale_lr": True, "warm_up": 400, "discriminator_layers": 1}

    def __post_init__(self):
        super().__post_init__()
        if self.formulation not in ("authors_code", "paper_reading"):
            raise ValueError(f"`formulation` must be 'authors_code' or 'paper_reading', got {self.formulation!r}.")
        if self.discriminator_layers < 1 or self.discriminator_channels < 1:
            raise ValueError("`discriminator_layers` and `discriminator_channels` must be ≥ 1, got "
                             f"{self.discriminator_layers} and {self.discriminator_channels}.")
        if self.prior_loss_weight <= 0 and self.gradient_surgery:
            raise ValueError("Gradient surgery projects against the prior-preservation gradient, so "
                             "`prior_loss_weight` must be > 0 (or pass gradient_surgery=False).")


class PatchDiscriminator(torch.nn.Sequential):
    """pix2pix's PatchGAN (``NLayerDiscriminator``) on ``in_channels`` latents: one logit per receptive patch."""

    def __init__(self, in_channels: int, channels: int = 64, layers: int = 3):
        mods: list[torch.nn.Module] = [torch.nn.Conv2d(in_channels, channels, 4, 2, 1), torch.nn.LeakyReLU(0.2)]
        width = channels
        for n in range(1, layers + 1):
            out = channels * min(2 ** n, 8)
            stride = 2 if n < layers else 1
            mods += [torch.nn.Conv2d(width, out, 4, stride, 1, bias=False), torch.nn.BatchNorm2d(out),
                     torch.nn.LeakyReLU(0.2)]
            width = out
        mods.append(torch.nn.Conv2d(width, 1, 4, 1, 1))
        super().__init__(*mods)


class AuthorsDiscriminator(torch.nn.Sequential):
    """The authors' PatchGAN (``DoCo/gan.py``, ebf6ff4): ``blocks`` conv 4×4 stride 2 (widths 64·2^i, at most 512;
    batch norm after all but the first), LeakyReLU 0.2, then a conv 4×4 (padding 1) to one logit per patch. Written
    here from its description (no library ships it)."""

    def __init__(self, in_channels: int, channels: int = 64, blocks: int = 4):
        mods: list[torch.nn.Module] = []
        width = in_channels
        for i in range(blocks):
            out = min(channels * 2 ** i, 512)
            mods.append(torch.nn.Conv2d(width, out, 4, stride=2, padding=1))
            if i > 0:
                mods.append(torch.nn.BatchNorm2d(out))
            mods.append(torch.nn.LeakyReLU(0.2))
            width = out
        mods.append(torch.nn.Conv2d(width, 1, 4, padding=1))
        super().__init__(*mods)


def clip_to_norm(flat: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``flat`` scaled as ``torch.nn.utils.clip_grad_norm_`` scales gradients (coefficient max/(norm+1e-6), ≤ 1)."""
    return flat * (max_norm / (flat.norm() + 1e-6)).clamp(max=1.0)


def authors_surgery(g_a: list[torch.Tensor], g_b: list[torch.Tensor], strength: float) -> tuple[list[torch.Tensor], int]:
    """The authors' ``adjust_gradient`` per weight tensor: with unit vectors â, b̂ (norm + 1e-8) and cos = â·b̂,
    ``g_a − strength·cos·b̂`` where cos < 0 (b̂ is the *unit* prior gradient: the step is not PCGrad's projection).
    Returns the corrected gradients and how many tensors conflicted."""
    out, conflicts = [], 0
    for a, b in zip(g_a, g_b):
        b_hat = b / (torch.linalg.norm(b) + 1e-8)
        cos = torch.dot((a / (torch.linalg.norm(a) + 1e-8)).flatten(), b_hat.flatten())
        if cos < 0:
            a, conflicts = a - strength * cos * b_hat, conflicts + 1
        out.append(a)
    return out, conflicts


def predicted_x0(family, scheduler, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x̂₀ = (x_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t from the denoiser's output (ε or v)."""
    eps = family.to_epsilon(scheduler, pred, x_t, t)
    a = family._alphas(scheduler, t, x_t)
    return (x_t - (1 - a).sqrt() * eps) / a.sqrt()


def project_conflicting(g_u: torch.Tensor, g_p: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """PCGrad's surgery: ``g_u`` minus its component along ``g_p`` when the two conflict (negative inner product)."""
    dot = torch.dot(g_u, g_p)
    if dot < 0:
        return g_u - dot / g_p.dot(g_p).clamp_min(1e-30) * g_p, True
    return g_u, False


class DoCoUnlearner(CAUnlearner):
    """CA + adversarial concept-domain correction + gradient surgery (see module docstring)."""

    display_name = "DoCo"
    reference_code = ("yongliang-wu/DoCo@ebf6ff4: train.py, DoCo/gan.py, DoCo/gradient_clip.py (the authors' code, "
                      "public since 97b2df0; this implementation follows the paper and differs from it as its "
                      "deviations list), on nupurkmr9/concept-ablation@595ecb7 for the CA base")
    deviations = (*CAUnlearner.deviations,
                  "The discriminator and the UNet step in one optimiser (AdamW groups; the discriminator's with "
                  "weight decay 0, i.e. Adam, betas (0.5, 0.999)); theirs are two optimisers stepped one after the "
                  "other on the same step's gradients, which gives the same update.",
                  "Gradients are averaged over processes by hand (the surgery needs the whole gradient before the "
                  "step).",
                  "The prior-preservation term runs on the same noisy anchor latents and captions as the "
                  "adversarial term (the authors: separate class-image rows, with their own noise and t).",
                  "formulation='paper_reading' (igmu_hf's earlier reading) differs from the authors' code: CA's MSE "
                  "plus λ_adv × the adversarial term, the anchor from the model being trained, a global PCGrad "
                  "projection then a step on g_u' + w·g_p, Adam, no warm-up, pix2pix's discriminator.")
    config_class = DoCoConfig
    technique = "concept ablation with adversarial domain correction and gradient surgery"
    wrap_model = False  # the surgery computes gradients with autograd.grad; they are synchronised by hand

    def initial_state(self) -> dict:
        return {"losses": [], "discriminator_losses": [], "conflicts": 0}

    def check_discriminator_depth(self, size: int) -> None:
        cfg: DoCoConfig = self.config
        if cfg.formulation == "authors_code" and size // 2 ** cfg.discriminator_layers < 2:
            most = max(1, (size // 2).bit_length() - 1)
            raise ValueError(f"The discriminator's {cfg.discriminator_layers} stride-2 blocks shrink the {size}×{size} "
                             f"latents below 2×2; pass discriminator_layers ≤ {most} for these latents.")

    def setup_training(self, pipeline, names):
        cfg: DoCoConfig = self.config
        if self.images is None:  # the images will be generated at the pipeline's default size: refuse before that
            self.check_discriminator_depth(family_of(pipeline).denoiser(pipeline).config.sample_size)
        setup = super().setup_training(pipeline, names)
        self.check_discriminator_depth(int(setup["latents"].shape[-1]))
        cfg: DoCoConfig = self.config
        unet = setup["unet"]
        authors = cfg.formulation == "authors_code"
        with seeded(cfg.seed):
            disc = (AuthorsDiscriminator if authors else PatchDiscriminator)(
                unet.config.in_channels, cfg.discriminator_channels, cfg.discriminator_layers)
        disc.to(setup["run"].device).train()
        scale = cfg.train_batch_size if cfg.scale_lr else 1
        setup["discriminator"] = disc
        setup["disc_params"] = {f"discriminator.{n}": p for n, p in disc.named_parameters()}
        g_params = list(setup["trainable"].values())
        # one optimiser, two groups, so the scaffold's checkpoint holds both
        if authors:
            # AdamW for the UNet (their optimizer_class) and, with weight decay 0 (= Adam), betas (0.5, 0.999) for
            # the discriminator (their init_discriminator); a group without gradients is skipped by the step
            setup["opt"] = torch.optim.AdamW([
                {"params": g_params, "lr": cfg.learning_rate * scale, "weight_decay": cfg.adam_weight_decay},
                {"params": list(disc.parameters()), "lr": cfg.discriminator_lr, "betas": (0.5, 0.999),
                 "weight_decay": 0.0}])
            with seeded(cfg.seed):
                setup["shadow"] = copy.deepcopy(unet).requires_grad_(False).eval()  # their frozen shadow_unet
        else:
            setup["opt"] = torch.optim.Adam([{"params": g_params, "lr": cfg.learning_rate * scale},
                                             {"params": list(disc.parameters()), "lr": cfg.discriminator_lr * scale}])
        setup["checkpointed"] = {**setup["trainable"], **setup["disc_params"],  # batch-norm statistics too
                                 **{f"discriminator.{n}": b for n, b in disc.named_buffers()}}
        return setup

    def authors_losses(self, step: int, d: dict, setup) -> dict:
        """The authors' step's losses on a drawn batch (module docstring): ``adv`` and ``prior`` (None before the
        warm-up ends) and ``disc`` (L_D), with ``fake``/``real`` the x̂₀ the discriminator sees."""
        cfg: DoCoConfig = self.config
        family, sched, unet, disc = setup["family"], setup["scheduler"], setup["unet"], setup["discriminator"]
        dev = setup["run"].device
        c_target = setup["conds"][setup["target_rows"][d["idx"]]].to(dev)
        c_anchor = setup["conds"][setup["anchor_rows"][d["idx"]]].to(dev)
        fake = predicted_x0(family, sched, family.predict(unet, d["x_t"], d["t"], c_target), d["x_t"], d["t"])
        with torch.no_grad():
            real = predicted_x0(family, sched, family.predict(setup["shadow"], d["x_t"], d["t"], c_anchor),
                                d["x_t"], d["t"])
        out = {"fake": fake, "real": real, "adv": None, "prior": None}
        if step > cfg.warm_up:
            logits = disc(fake)
            out["adv"] = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))
            if cfg.prior_loss_weight > 0:
                out["prior"] = F.mse_loss(family.predict(unet, d["x_t"], d["t"], c_anchor),
                                          family.target(sched, d["x0"], d["noise"], d["t"]))
        d_real, d_fake = disc(real), disc(fake.detach())
        out["disc"] = (F.binary_cross_entropy_with_logits(d_fake, torch.ones_like(d_fake))
                       + F.binary_cross_entropy_with_logits(d_real, torch.zeros_like(d_real)))
        return out

    def authors_step(self, step: int, setup, state: dict) -> None:
        cfg: DoCoConfig = self.config
        acc = setup["run"].accelerator
        g_params = list(setup["trainable"].values())
        d_params = list(setup["disc_params"].values())
        losses = self.authors_losses(step, self.draw(step, setup), setup)
        d_extra, conflicts, total = None, 0, 0.0
        if losses["adv"] is not None:
            if cfg.gradient_surgery:
                g_b = self._split(clip_to_norm(self._flat(torch.autograd.grad(losses["prior"], g_params,
                                                                              retain_graph=True, allow_unused=True),
                                                          g_params, acc), cfg.max_grad_norm), g_params)
                generator_loss = losses["adv"]
            else:
                generator_loss = losses["adv"] + 0.1 * cfg.prior_loss_weight * (losses["prior"] if
                                                                                  losses["prior"] is not None else 0)
            grads = torch.autograd.grad(generator_loss, g_params + d_params, retain_graph=True, allow_unused=True)
            g_a = self._split(clip_to_norm(self._flat(grads[:len(g_params)], g_params, acc), cfg.max_grad_norm),
                              g_params)
            d_extra = self._flat(grads[len(g_params):], d_params, acc)  # left in D by their backward
            if cfg.gradient_surgery:
                g_a, conflicts = authors_surgery(g_a, g_b, cfg.surgery_strength)
            self._assign(torch.cat([g.flatten() for g in g_a]), g_params)
            total = float(generator_loss.detach())
        g_d = self._flat(torch.autograd.grad(losses["disc"], d_params), d_params, acc)
        self._assign(g_d if d_extra is None else g_d + d_extra, d_params)
        setup["opt"].step()  # the UNet group only after the warm-up (before it, it has no gradients)
        setup["opt"].zero_grad(set_to_none=True)
        state["losses"].append(total)
        state["discriminator_losses"].append(float(losses["disc"].detach()))
        state["conflicts"] += int(conflicts > 0)
        acc.log({"loss": total, "discriminator_loss": state["discriminator_losses"][-1]}, step=step + 1)

    def train_step(self, step: int, setup, state: dict) -> None:
        cfg: DoCoConfig = self.config
        if cfg.formulation == "authors_code":
            return self.authors_step(step, setup, state)
        acc, family, sched = setup["run"].accelerator, setup["family"], setup["scheduler"]
        g_params = list(setup["trainable"].values())
        disc, d_params = setup["discriminator"], list(setup["disc_params"].values())
        d = self.draw(step, setup)
        loss_ca, prior, pred_target, pred_anchor = self.ca_terms(d, setup)  # prior_loss_weight > 0: L_p
        fake = predicted_x0(family, sched, pred_target, d["x_t"], d["t"])
        real = predicted_x0(family, sched, pred_anchor.detach(), d["x_t"], d["t"])
        logits = disc(fake)
        adv = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
        g_u = torch.autograd.grad(loss_ca + cfg.adversarial_weight * adv, g_params, retain_graph=True,
                                  allow_unused=True)
        g_p = torch.autograd.grad(prior, g_params, allow_unused=True) if prior.requires_grad else [None] * len(g_params)
        flat_u = self._flat(g_u, g_params, acc)
        flat_p = self._flat(g_p, g_params, acc)
        conflict = False
        if cfg.gradient_surgery:
            flat_u, conflict = project_conflicting(flat_u, flat_p)
        self._assign(flat_u + cfg.prior_loss_weight * flat_p, g_params)
        d_real, d_fake = disc(real), disc(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
        self._assign(self._flat(torch.autograd.grad(loss_d, d_params), d_params, acc), d_params)
        setup["opt"].step()
        setup["opt"].zero_grad(set_to_none=True)
        total = float((loss_ca + cfg.adversarial_weight * adv + cfg.prior_loss_weight * prior).detach())
        state["losses"].append(total)
        state["discriminator_losses"].append(float(loss_d.detach()))
        state["conflicts"] += int(conflict)
        acc.log({"loss": total, "discriminator_loss": state["discriminator_losses"][-1]}, step=step + 1)

    @staticmethod
    def _flat(grads, params, acc) -> torch.Tensor:
        """The gradients as one vector (zeros for unused weights), averaged over the processes."""
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, params)])
        return acc.reduce(flat, reduction="mean") if acc.num_processes > 1 else flat

    @staticmethod
    def _split(flat: torch.Tensor, params) -> list[torch.Tensor]:
        out, offset = [], 0
        for p in params:
            out.append(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        return out

    @classmethod
    def _assign(cls, flat: torch.Tensor, params) -> None:
        for p, g in zip(params, cls._split(flat, params)):
            p.grad = g.clone()

    def stats_of(self, state, setup) -> dict:
        return {"discriminator_final_loss": state["discriminator_losses"][-1],
                "conflicting_steps": state["conflicts"]}


register_method("doco", DoCoUnlearner)
