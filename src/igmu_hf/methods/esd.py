"""ESD: Erasing Concepts from Diffusion Models (Gandikota et al., ICCV 2023), fine-tuning the UNet's own weights.

Each iteration (the paper-era code, ``rohitgandikota/erasing`` 4100f4e, ``train-scripts/train-esd.py``)::

    t_enc ~ U{0..ddim_steps−1};  t ~ U[round(1000·t_enc/ddim_steps), round(1000·(t_enc+1)/ddim_steps))
    z     = DDIM (η=0) from z_T ~ N(0, I) with the *trainable* model, guidance start_guidance on c, stopped where the
            paper's sampler stops for ``till_T = t_enc`` (all ddim_steps steps for t_enc ≤ 1, else ddim_steps−t_enc+1)
    L     = ‖ε_θ(z, t, c) − [ε*(z, t, ∅) − η(ε*(z, t, c) − ε*(z, t, ∅))]‖²   (mean over elements; batch 1)

with ε* the frozen original UNet, Adam (lr 1e-5), 1000 iterations, one concept drawn per iteration when several are
given (the paper's ``--seperator``). ``train_method`` picks the trained weights:

- ``xattn`` (ESD-x): the cross-attention ``attn2`` weights: styles, concepts tied to the prompt;
- ``noxattn`` (ESD-u): every UNet weight except ``attn2``, the time embedding and the output head (the paper code's
  ``out.``/``time_embed`` exclusion; diffusers' ``conv_norm_out``/``conv_out``, ``time_embedding``, and SDXL's
  ``add_embedding`` beside it): nudity, objects;
- ``selfattn``, ``full``: the paper code's other options.

The default (None) follows the paper and the IGMU re-evaluation: ESD-x for CatIGMU Style targets, ESD-u otherwise.
On v-prediction UNets (SD2.x) the same combination is applied to v, which is affine in ε at fixed z with weights
summing to 1, so it is the same target up to a per-timestep scale.
"""

import copy
from dataclasses import dataclass, field

import torch

from ..families import Conditioning, family_of
from .base import MethodConfig, TrainedUnlearner, register_method


TRAIN_METHODS = ("xattn", "noxattn", "selfattn", "full")


@dataclass
class ESDConfig(MethodConfig):
    train_method: str | None = field(default=None, metadata={
        "help": "Trained weights: 'xattn' (ESD-x, cross-attention), 'noxattn' (ESD-u, all but cross-attention, time "
                "embedding and output head), 'selfattn', 'full'. Default: ESD-x for CatIGMU Style targets, ESD-u "
                "otherwise (the paper's choice)."})
    negative_guidance: float = field(default=1.0, metadata={"help": "η, the strength of the negative guidance."})
    start_guidance: float = field(default=3.0, metadata={
        "help": "Classifier-free guidance of the DDIM trajectory that makes z (the paper code's start_guidance)."})
    iterations: int = field(default=1000, metadata={"help": "Optimisation steps (batch 1 each)."})
    lr: float = field(default=1e-5, metadata={"help": "Adam learning rate."})
    ddim_steps: int = field(default=50, metadata={"help": "DDIM steps of the trajectory t_enc is drawn from."})
    train_batch_size: int = field(default=1, metadata={
        "help": "Trajectories per step over all processes (the paper's: 1); a multiple of the process count."})
    resolution: int | None = field(default=None, metadata={
        "help": "Image size of z (default: the pipeline's own, 512 on SD1.4 as the paper)."})

    # the best of the settings measured on the mini world (README, "Baselines"): ESD-x, 400 iterations, lr 1e-3
    mini_preset = {"train_method": "xattn", "iterations": 400, "lr": 1e-3, "ddim_steps": 25}

    def __post_init__(self):
        super().__post_init__()
        if self.train_method is None:
            from ..taxonomy import is_style

            styles = [is_style(c, unknown=None) for c in self.concepts]
            if None in styles:
                unknown = self.concepts[styles.index(None)]
                raise ValueError(f"{unknown!r} is unknown to CatIGMU, so ESD's variant cannot follow it; pass "
                                 f"--train_method xattn (ESD-x, styles) or noxattn (ESD-u, objects, nudity).")
            self.train_method = "xattn" if all(styles) else "noxattn"
        if self.train_method not in TRAIN_METHODS:
            raise ValueError(f"`train_method` must be one of {TRAIN_METHODS} ('xattn' = ESD-x, 'noxattn' = ESD-u), got "
                             f"{self.train_method!r}.")
        if not self.negative_guidance > 0:
            raise ValueError(f"`negative_guidance` (η) must be > 0, got {self.negative_guidance}.")
        if not self.lr > 0 or self.iterations < 1 or self.ddim_steps < 1 or self.train_batch_size < 1:
            raise ValueError("`lr` must be > 0 and `iterations`, `ddim_steps`, `train_batch_size` ≥ 1; got "
                             f"{self.lr}, {self.iterations}, {self.ddim_steps}, {self.train_batch_size}.")


def esd_parameter_names(denoiser, train_method: str) -> list[str]:
    """Names of the denoiser weights ``train_method`` trains (the paper code's selection, in diffusers' names)."""
    names = []
    for name, _ in denoiser.named_parameters():
        if train_method == "noxattn":
            keep = not (name.startswith(("conv_out.", "conv_norm_out.", "time_embedding.", "add_embedding."))
                        or "attn2" in name)
        elif train_method == "xattn":
            keep = "attn2" in name
        elif train_method == "selfattn":
            keep = "attn1" in name
        else:
            keep = True
        if keep:
            names.append(name)
    if not names:
        raise ValueError(f"The denoiser has no weights for train_method {train_method!r}.")
    return names


def esd_target(e_0: torch.Tensor, e_p: torch.Tensor, negative_guidance: float) -> torch.Tensor:
    """ε*(z, t, ∅) − η(ε*(z, t, c) − ε*(z, t, ∅))."""
    return e_0 - negative_guidance * (e_p - e_0)


def esd_timesteps(t_enc: int, ddim_steps: int, num_train_timesteps: int, generator: torch.Generator) -> int:
    """The training timestep of DDIM index ``t_enc``: uniform in [round(T·t_enc/S), round(T·(t_enc+1)/S))."""
    lo = round(t_enc / ddim_steps * num_train_timesteps)
    hi = round((t_enc + 1) / ddim_steps * num_train_timesteps)
    return int(torch.randint(lo, max(hi, lo + 1), (1,), generator=generator))


def steps_until(t_enc: int, ddim_steps: int) -> int:
    """DDIM steps the paper code's ldm sampler runs for ``till_T = t_enc``: ``sample(t_start=-1)`` drops the grid's
    highest timestep (``ddim.py``: ``timesteps[:t_start]``), leaving S − 1 steps, and it breaks after the step of
    index t_enc − 1 (all S − 1 for t_enc 0 and 1)."""
    return ddim_steps - 1 if t_enc <= 1 else ddim_steps - t_enc


def paper_trajectory(family, denoiser, sampler, start: torch.Tensor, cond, uncond, guidance_scale: float, t_enc: int,
                     ddim_steps: int) -> torch.Tensor:
    """z of DDIM index ``t_enc`` as the paper code makes it (rohitgandikota/erasing ``sample_model``, reused by
    AdvUnlearn and Receler): z_T enters at the grid's *second* timestep (the highest is dropped by ``t_start=-1``)
    and :func:`steps_until` steps run from there, so z ends at the noise level of DDIM index t_enc − 1."""
    from ..diffusion import ddim_sample_steps

    return ddim_sample_steps(family, denoiser, sampler, start, cond, uncond, guidance_scale,
                             steps_until(t_enc, ddim_steps), first=1)


def esd_draws(config: ESDConfig, step: int, shape: tuple[int, ...], num_train_timesteps: int
              ) -> list[tuple[int, int, int, torch.Tensor]]:
    """The global batch of step ``step``: ``(concept index, t_enc, t, z_T)`` per row, seeded by the step (the same on
    every process, so N processes compute the 1-process step and a resumed run the uninterrupted one)."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    draws = []
    for _ in range(config.train_batch_size):
        word = int(torch.randint(len(config.concepts), (1,), generator=g))
        t_enc = int(torch.randint(config.ddim_steps, (1,), generator=g))
        t = esd_timesteps(t_enc, config.ddim_steps, num_train_timesteps, g)
        draws.append((word, t_enc, t, torch.randn((1, *shape), generator=g)))
    return draws


class ESDUnlearner(TrainedUnlearner):
    """Fine-tune the UNet with the ESD loss (see module docstring); the result is a fused pipeline folder."""

    requires = ("ddpm_unet",)
    display_name = "ESD"

    reference_code = "rohitgandikota/erasing@4100f4e: train-scripts/train-esd.py (train_esd)"
    deviations = ("diffusers names for the paper code's CompVis parameter filters (out. → conv_norm_out/conv_out, "
                  "time_embed → time_embedding; SDXL's add_embedding excluded with it by ESD-u).",
                  "The frozen ε* is a copy on the same device (the paper code loads it on a second device).",
                  "v-prediction UNets (SD2.x): the guidance combination is applied to v (affine in ε at fixed z).",
                  "z_T has the pipeline's latent size (or `resolution`'s); the paper code always draws (1, 4, 64, 64), "
                  "the same at SD1.4's 512 px.",
                  "The DDIM grid comes from the pipeline's scheduler config (diffusers DDIMScheduler); the paper code "
                  "uses ldm's uniform grid, identical for SD1.4's config (leading spacing, steps_offset 1).")

    config_class = ESDConfig
    technique = "fine-tuning with negative guidance (ESD)"
    artifact_kind = "fused weights"
    multi_concept = True  # the paper code erases several words in one run (--seperator)

    def _unlearn(self, pipeline) -> list[str]:
        from ..training import TrainingRun

        cfg: ESDConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline)
        unet = family.denoiser(pipeline)
        run = TrainingRun({**cfg.to_dict(), "family": family.name}, self.accelerator, progress=self.progress,
                          resumable_changes=("iterations",), **self.train_kwargs)
        run.check_divisible("train_batch_size", cfg.train_batch_size)
        names = esd_parameter_names(unet, cfg.train_method)
        original = copy.deepcopy(unet).requires_grad_(False).eval()  # ε*, the paper's model_orig
        unet.requires_grad_(False)
        params = dict(unet.named_parameters())
        trainable = {n: params[n] for n in names}
        for p in trainable.values():
            p.requires_grad_(True)
        opt = torch.optim.Adam(list(trainable.values()), lr=cfg.lr)
        acc = run.accelerator
        model, opt = acc.prepare(unet, opt)
        dev = run.device
        original.to(dev)
        conds = family.encode(pipeline, [""] + list(cfg.concepts)).to(dev)
        empty = conds[:1]
        sampler = _ddim_scheduler(pipeline)
        sampler.set_timesteps(cfg.ddim_steps)
        num_train = family.num_train_timesteps(sampler)
        size = (cfg.resolution or unet.config.sample_size * pipeline.vae_scale_factor) // pipeline.vae_scale_factor
        shape = (unet.config.in_channels, size, size)
        losses, first = run.resume_training(trainable, opt, "losses", [])
        unet.train()
        share = run.share(cfg.train_batch_size)
        for step in run.steps(first, cfg.iterations, "ESD"):
            # the global batch is drawn identically on every process; each process keeps its rows
            opt.zero_grad(set_to_none=True)
            mine = esd_draws(cfg, step, shape, num_train)[share]
            loss_sum = 0.0
            for word, t_enc, t, start in mine:
                c = conds[1 + word:2 + word]
                z = paper_trajectory(family, unet, sampler, start.to(dev), c, empty, cfg.start_guidance, t_enc,
                                     cfg.ddim_steps)
                tt = torch.tensor([t], device=dev)
                with torch.no_grad():
                    e_0, e_p = family.predict(original, torch.cat([z, z]), tt.expand(2),
                                              Conditioning.cat([empty, c])).chunk(2)
                e_n = family.predict(model, z, tt, c)
                loss = torch.nn.functional.mse_loss(e_n, esd_target(e_0, e_p, cfg.negative_guidance))
                acc.backward(loss / len(mine))  # the mean over the global batch (DDP averages the processes)
                loss_sum += float(loss.detach())
            opt.step()
            losses.append(loss_sum / len(mine))
            acc.log({"loss": losses[-1]}, step=step + 1)
            run.checkpoint(step + 1, {"losses": losses}, trainable, opt.state_dict())
            run.after_step(step + 1)
        unet.eval()
        unet.requires_grad_(False)
        del original
        self.stats = {"first_loss": losses[0], "final_loss": losses[-1], "iterations": cfg.iterations,
                      "train_method": cfg.train_method, "esd_variant": {"xattn": "ESD-x", "noxattn": "ESD-u"}.get(
                          cfg.train_method, cfg.train_method)}
        return names


def _ddim_scheduler(pipeline):
    """The paper's DDIM sampler (η = 0) over the pipeline's own noise schedule and prediction type."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(pipeline.scheduler.config)


register_method("esd", ESDUnlearner)
