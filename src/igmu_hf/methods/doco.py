"""DoCo: Unlearning Concepts in Diffusion Model via Concept Domain Correction (Wu et al., AAAI 2025).

DoCo starts from Concept Ablation (:mod:`igmu_hf.methods.ca`: anchor images x, anchor captions c, target captions c*)
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

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import register_method
from .ca import CAConfig, CAUnlearner
from ..seeding import seeded


@dataclass
class DoCoConfig(CAConfig):
    parameter_group: str | None = field(default="crossattn", metadata={
        "help": "Trained weights (see CA); DoCo's: the cross-attention, 'crossattn'."})
    learning_rate: float | None = field(default=6e-6, metadata={"help": "Adam learning rate of the UNet."})
    max_train_steps: int | None = field(default=2000, metadata={"help": "Optimisation steps."})
    scale_lr: bool = field(default=False, metadata={"help": "Multiply the learning rates by the global batch size."})
    prior_loss_weight: float = field(default=1.0, metadata={"help": "w of the prior-preservation loss L_p."})
    adversarial_weight: float = field(default=1.0, metadata={"help": "λ_adv of the generator's adversarial term."})
    discriminator_lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the discriminator."})
    discriminator_channels: int = field(default=64, metadata={"help": "Width of the PatchGAN's first layer."})
    discriminator_layers: int = field(default=3, metadata={
        "help": "Stride-2 layers of the PatchGAN (pix2pix's n_layers; fewer for small latents)."})
    gradient_surgery: bool = field(default=True, metadata={
        "help": "Project the unlearning gradient off the preservation gradient where they conflict."})

    # measured on the mini world (README, "Baselines II"): 400 steps at lr 2e-5 (the paper's 6e-6: circle 0.92)
    mini_preset = {"num_images": 24, "train_batch_size": 4, "max_train_steps": 400, "learning_rate": 2e-5,
                   "discriminator_layers": 1}

    def __post_init__(self):
        super().__post_init__()
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
                  "The discriminator and the UNet are updated from the same step's gradients in one Adam step "
                  "(two parameter groups), not alternately.",
                  "Gradients are averaged over processes by hand (the surgery needs the whole gradient before the "
                  "step).",
                  # differences from the authors' code (yongliang-wu/DoCo ebf6ff4), by reading; issue 29 chooses
                  "Generator loss: CA's MSE towards the anchor prediction plus λ_adv × the adversarial term; the "
                  "authors' code uses the adversarial term only (plus 0.1 × w × prior without surgery).",
                  "The anchor prediction comes from the model being trained (stop-gradient); the authors' from a "
                  "frozen copy of the original UNet.",
                  "Gradient surgery: a global PCGrad projection, then a step on g_u' + w·g_p; the authors' code, per "
                  "tensor, subtracts λ·cos·(unit prior gradient) when cos < 0 and never adds the prior gradient.",
                  "Both networks train from step 1; the authors' discriminator trains alone for the first 1000 of "
                  "2000 steps (--warm_up).",
                  "Discriminator: pix2pix's layout (last 512-channel layer at stride 1, no bias), Adam with default "
                  "betas; the authors': four stride-2 blocks 64→512 then a 1-channel convolution, Adam betas "
                  "(0.5, 0.999).",
                  "Every cross-attention weight trains at lr 6e-6; the authors' code trains attn2 to_k/to_v only, "
                  "with the lr scaled by the batch size.")
    config_class = DoCoConfig
    technique = "concept ablation with adversarial domain correction and gradient surgery"
    wrap_model = False  # the surgery computes gradients with autograd.grad; they are synchronised by hand

    def initial_state(self) -> dict:
        return {"losses": [], "discriminator_losses": [], "conflicts": 0}

    def setup_training(self, pipeline, names):
        setup = super().setup_training(pipeline, names)
        cfg: DoCoConfig = self.config
        unet = setup["unet"]
        with seeded(cfg.seed):
            disc = PatchDiscriminator(unet.config.in_channels, cfg.discriminator_channels, cfg.discriminator_layers)
        disc.to(setup["run"].device).train()
        scale = cfg.train_batch_size if cfg.scale_lr else 1
        setup["discriminator"] = disc
        setup["disc_params"] = {f"discriminator.{n}": p for n, p in disc.named_parameters()}
        # one optimiser, two groups, so the scaffold's checkpoint holds both
        setup["opt"] = torch.optim.Adam([{"params": list(setup["trainable"].values()), "lr": cfg.learning_rate * scale},
                                         {"params": list(disc.parameters()), "lr": cfg.discriminator_lr * scale}])
        setup["checkpointed"] = {**setup["trainable"], **setup["disc_params"],  # batch-norm statistics too
                                 **{f"discriminator.{n}": b for n, b in disc.named_buffers()}}
        return setup

    def train_step(self, step: int, setup, state: dict) -> None:
        cfg: DoCoConfig = self.config
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
    def _assign(flat: torch.Tensor, params) -> None:
        offset = 0
        for p in params:
            p.grad = flat[offset:offset + p.numel()].view_as(p).clone()
            offset += p.numel()

    def stats_of(self, state, setup) -> dict:
        return {"discriminator_final_loss": state["discriminator_losses"][-1],
                "conflicting_steps": state["conflicts"]}


register_method("doco", DoCoUnlearner)
