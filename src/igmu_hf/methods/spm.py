"""SPM: One-dimensional Adapter to Rule Them All (Lyu et al., CVPR 2024), a rank-1 "membrane" with latent anchoring.

Facts from the authors' code (``Con6924/SPM`` 3dd762e, ``train_spm.py``, ``src/models/spm.py``,
``src/engine/sampling.py``, ``src/configs/prompt.py``, ``configs/*/config.yaml``):

- The membrane: a rank-1 adapter (dim 1, alpha 1: up·down, up zero-initialised) on every Linear and 1×1 Conv inside
  the UNet's transformer blocks (``Transformer2DModel``: proj_in/out, attention projections, feed-forward).
- Each iteration (batch 1, Adam lr 1e-4, 3000 iterations)::

      k ~ U{1..S−1} (S = 30);  z = DDIM (η=0) from z_T with the membrane on, guidance 3 on the target c, k steps
      t = the training timestep k·1000/S steps below the top (the point the trajectory stopped at)
      L = ‖ε_θ(z, t, c) − [ε*(z, t, ∅) − η(ε*(z, t, c) − ε*(z, t, ∅))]‖²                (η = 1, the ESD form)
          + λ · mean over the anchoring rows r of ‖ε_θ(z, t, r) − ε*(z, t, r)‖²     (latent anchoring, λ = 1000)

  with ε* the same UNet with the membrane off. An anchor a is a random text-state tensor: Gaussian noise shaped
  like c's states, normalised, kept with probability 1 − cos(c, noise), scaled to ‖c‖ times U[0.8, 1.2]
  (``sampling.py``); on SDXL the anchors keep the concept's pooled embedding and time ids. The anchoring rows, as
  the authors' code runs: ``sample`` returns [∅, a1, ∅, a2, ∅, a3, ∅, a4] and ``predict_noise`` (guidance 1) keeps
  the second half of the batch, so r ∈ [∅, a3, ∅, a4] — λ·(½ d(∅) + ¼ d(a3) + ¼ d(a4)): half of the anchoring holds
  the unconditional prediction, which every prompt's classifier-free guidance shares, in place. Their UNet also runs the discarded
  first half (its gradient is exactly zero at guidance 1); ours runs only the n rows kept: the same loss, half the
  anchoring passes.
- The membrane is applied at inference with a prompt-dependent strength ("facilitated transport").

The membrane is saved as a diffusers LoRA (``pytorch_lora_weights.safetensors``: rank 1, alpha 1), so
``pipe.load_lora_weights(folder)`` on the original pipeline gives the unlearned model, beside the fused folder.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..families import Conditioning, family_of
from .base import MethodConfig, TrainedUnlearner, register_method
from .esd import _ddim_scheduler, esd_target


@dataclass
class SPMConfig(MethodConfig):
    iterations: int = field(default=3000, metadata={"help": "Optimisation steps (batch 1)."})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate of the membrane."})
    rank: int = field(default=1, metadata={"help": "Adapter rank (the paper's one-dimensional membrane: 1)."})
    alpha: float = field(default=1.0, metadata={"help": "Adapter alpha (scale alpha/rank)."})
    negative_guidance: float = field(default=1.0, metadata={"help": "η of the erasing target."})
    start_guidance: float = field(default=3.0, metadata={"help": "Guidance of the trajectory that makes z."})
    ddim_steps: int = field(default=30, metadata={"help": "S, the DDIM steps k is drawn from (the authors' "
                                                           "max_denoising_steps in their configs: 30)."})
    anchor_strength: float = field(default=1000.0, metadata={"help": "λ of the latent-anchoring term (0: none)."})
    anchor_batch_size: int = field(default=4, metadata={"help": "Anchors per iteration (sampling_batch_size)."})
    anchor_empty_rows: bool = field(default=True, metadata={
        "help": "Anchor as the authors' code runs (src/engine/sampling.py + train_util.predict_noise): the n anchors "
                "interleaved with the empty prompt, [∅, a1, …, ∅, an], of which the second half is kept (n = 4: "
                "[∅, a3, ∅, a4]), so half the anchoring holds the unconditional prediction. False: the n random "
                "anchors only (the paper's text; igmu_hf before defaults_version 2)."})

    field_ranges: ClassVar[dict] = {"anchor_strength": (0, None, True)}
    defaults_version = "2"  # 2: anchor_empty_rows (the authors' ∅ anchoring rows) on by default
    # measured on the mini world (README, "Baselines II"); every setting tried moves other shapes before circle goes.
    # The latent anchoring is what holds circle: at the check's 50 iterations it stays at 0.99 with the authors'
    # λ = 1000, and goes to 0.23 [0.18, 0.29] (4 of 4 runs pass) with anchor_strength=0
    # (docs/results/probe_spm_no_anchor.md)
    mini_preset = {"iterations": 300, "lr": 1e-2}

    def __post_init__(self):
        super().__post_init__()
        if self.ddim_steps < 2:
            raise ValueError(f"`ddim_steps` must be ≥ 2 (k is drawn from 1..S−1), got {self.ddim_steps}.")
        if not self.lr > 0 or self.iterations < 1 or self.rank < 1 or not self.alpha > 0:
            raise ValueError("`lr` and `alpha` must be > 0 and `iterations`, `rank` ≥ 1; got "
                             f"{self.lr}, {self.alpha}, {self.iterations}, {self.rank}.")


def transformer_block_modules(denoiser) -> list[str]:
    """Every Linear and Conv2d inside the denoiser's transformer blocks (diffusers' ``Transformer2DModel``), the
    modules SPM's membrane wraps."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    out = []
    for name, block in denoiser.named_modules():
        if isinstance(block, Transformer2DModel):
            out += [f"{name}.{n}" for n, m in block.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    if not out:
        raise ValueError(f"The {type(denoiser).__name__} has no transformer blocks for SPM's membrane.")
    return out


def spm_timestep(k: int, ddim_steps: int, num_train_timesteps: int) -> int:
    """The training timestep where a k-step trajectory of an S-step schedule stopped (the authors'
    ``timesteps[int(k·1000/S)]`` of a 1000-step descending schedule)."""
    return num_train_timesteps - 1 - int(k * num_train_timesteps / ddim_steps)


def sample_anchors(target: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` latent-anchoring states shaped like ``target`` ``(1, L, hidden)``: normalised Gaussian noise, accepted
    with probability 1 − cos(target, noise), scaled to ‖target‖ times U[0.8, 1.2] (the authors' ``sample``)."""
    flat = target.reshape(-1).float().cpu()
    out = []
    while len(out) < n:
        while True:
            noise = torch.randn(flat.shape, generator=generator)
            noise = noise / noise.norm()
            if float(torch.rand((), generator=generator)) < 1 - float(torch.cosine_similarity(flat, noise, dim=0)):
                break
        scale = float(torch.rand((), generator=generator)) * 0.4 + 0.8
        out.append((scale * noise * flat.norm()).view_as(target[0]))
    return torch.stack(out).to(target)


def anchoring_rows(anchors: torch.Tensor, c: Conditioning, empty: Conditioning, empty_rows: bool = True
                   ) -> Conditioning:
    """The conditioning rows the anchoring loss runs on, from ``n`` anchor states ``(n, L, hidden)``.

    ``empty_rows`` (the authors' code as it runs): their batch interleaves ∅ with every anchor, [∅, a1, ∅, a2, …,
    ∅, an], and ``predict_noise`` at guidance 1 keeps its second half, rows n..2n−1 (n = 4: [∅, a3, ∅, a4]).
    Otherwise the ``n`` anchors. Anchor rows keep ``c``'s pooled embedding and time ids (SDXL); ∅ rows are ``empty``.
    """
    n = anchors.shape[0]
    rows = c.expand(n)
    anchored = Conditioning(anchors, rows.pooled, rows.time_ids)
    if not empty_rows:
        return anchored
    interleaved = [row for i in range(n) for row in (empty, anchored[i:i + 1])]
    return Conditioning.cat(interleaved[n:])


def spm_loss(family, model, original, z: torch.Tensor, t: torch.Tensor, c: Conditioning, empty: Conditioning,
             anchors: Conditioning | None, negative_guidance: float, anchor_strength: float) -> torch.Tensor:
    """One iteration's loss on the trajectory's ``z`` at ``t``: ``‖ε_θ(z,t,c) − [ε*(∅) − η(ε*(c) − ε*(∅))]‖²`` plus
    ``anchor_strength`` × the mean squared distance ``‖ε_θ(z,t,r) − ε*(z,t,r)‖²`` over the rows ``anchors``
    (:func:`anchoring_rows`; ``None``: no anchoring). ``model`` is the membrane-on denoiser, ``original`` ε*."""
    with torch.no_grad():
        e_0, e_p = original(torch.cat([z, z]), t.expand(2), Conditioning.cat([empty, c])).chunk(2)
    loss = F.mse_loss(family.predict(model, z, t, c), esd_target(e_0, e_p, negative_guidance))
    if anchors is not None:
        n = len(anchors)
        za, ta = z.expand(n, *z.shape[1:]), t.expand(n)
        with torch.no_grad():
            a_orig = original(za, ta, anchors)
        loss = loss + anchor_strength * F.mse_loss(family.predict(model, za, ta, anchors), a_orig)
    return loss


def spm_draws(config: SPMConfig, step: int, shape: tuple[int, ...]) -> dict:
    """The draws of one iteration seeded by ``(seed, step)``: the concept, k, z_T and the anchors' generator."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
    word = int(torch.randint(len(config.concepts), (1,), generator=g))
    k = int(torch.randint(1, config.ddim_steps, (1,), generator=g))
    start = torch.randn((1, *shape), generator=g)
    return {"word": word, "k": k, "start": start, "generator": g}


class SPMUnlearner(TrainedUnlearner):
    """Train SPM's rank-1 membrane (see module docstring); the result is the LoRA and the fused pipeline folder."""

    requires = ("ddpm_unet",)
    display_name = "SPM"
    reference_code = ("Con6924/SPM@3dd762e: train_spm.py, src/models/spm.py (the code is unchanged since its first "
                      "commit ac38a89)")
    deviations = ("The membrane is always on at strength 1 (a plain LoRA; the authors' facilitated transport scales it "
                  "per prompt at inference with a custom pipeline).",
                  "Adam at a constant learning rate (the authors: AdamW8bit, cosine with restarts, 500 warm-up steps).",
                  "Anchors are drawn with torch generators seeded by (seed, step) (the authors: Python's random), so "
                  "a resumed run repeats the uninterrupted one.",
                  "On SDXL the anchors keep the concept's pooled embedding and time ids (the authors' train_spm_xl.py "
                  "samples a pooled anchor too, with sample_xl, the way it samples the token states).")

    config_class = SPMConfig
    technique = "one-dimensional adapter (rank-1 LoRA) with latent anchoring"
    artifact_kind = "LoRA adapter"  # pytorch_lora_weights.safetensors, beside the fused pipeline
    multi_concept = True  # one membrane per concept in the paper; several concepts share one here

    def __init__(self, config: SPMConfig, **scaffold):
        super().__init__(config, **scaffold)
        self.lora = None

    def _unlearn(self, pipeline) -> list[str]:
        from ..diffusion import add_lora, ddim_sample_steps, fuse_lora_into_unet, reference_forward
        from ..training import TrainingRun

        cfg: SPMConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline)
        unet = family.denoiser(pipeline)
        run = TrainingRun({**cfg.to_dict(), "family": family.name}, self.accelerator, progress=self.progress,
                          resumable_changes=("iterations",), **self.train_kwargs)
        run.check_divisible("train batch (SPM trains on batch 1)", 1)
        dev = run.device
        conds = family.encode(pipeline, [""] + list(cfg.concepts)).to(dev)
        add_lora(unet, transformer_block_modules(unet), cfg.rank, int(cfg.alpha) if float(cfg.alpha).is_integer()
                 else cfg.alpha, init_lora_weights=True, seed=cfg.seed)
        unet.to(dev)
        original = reference_forward(unet, family)
        lora = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        opt = torch.optim.Adam(list(lora.values()), lr=cfg.lr)
        acc = run.accelerator
        model, opt = acc.prepare(unet, opt)
        sampler = _ddim_scheduler(pipeline)
        sampler.set_timesteps(cfg.ddim_steps)
        num_train = family.num_train_timesteps(sampler)
        size = unet.config.sample_size
        shape = (unet.config.in_channels, size, size)
        empty = conds[:1]
        losses, first = run.resume_training(lora, opt, "losses", [])
        unet.train()
        for step in run.steps(first, cfg.iterations, "SPM"):
            d = spm_draws(cfg, step, shape)
            c = conds[1 + d["word"]:2 + d["word"]]
            z = ddim_sample_steps(family, unet, sampler, d["start"].to(dev), c, empty, cfg.start_guidance, d["k"])
            tt = torch.tensor([spm_timestep(d["k"], cfg.ddim_steps, num_train)], device=dev)
            anchors = None
            if cfg.anchor_strength > 0:
                anchors = anchoring_rows(sample_anchors(c.states, cfg.anchor_batch_size, d["generator"]), c, empty,
                                         cfg.anchor_empty_rows)
            loss = spm_loss(family, model, original, z, tt, c, empty, anchors, cfg.negative_guidance,
                            cfg.anchor_strength)
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            acc.log({"loss": losses[-1]}, step=step + 1)
            run.checkpoint(step + 1, {"losses": losses}, lora, opt.state_dict())
            run.after_step(step + 1)
        unet.eval()
        self.lora, edited = fuse_lora_into_unet(unet, family)
        unet.requires_grad_(False)
        self.stats = {"first_loss": losses[0], "final_loss": losses[-1], "iterations": cfg.iterations,
                      "adapter_parameters": sum(v.numel() for v in self.lora.values()),
                      "anchored": cfg.anchor_strength > 0}
        return edited

    def unlearn(self, pipeline):
        result = super().unlearn(pipeline)
        result.lora_state_dict = self.lora
        return result


register_method("spm", SPMUnlearner)
