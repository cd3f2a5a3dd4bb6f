"""Receler: Reliable Concept Erasing of Text-to-Image Diffusion Models via Lightweight Erasers (Huang et al., ECCV
2024). Only the erasers are trained; the UNet is never changed.

The eraser after each cross-attention module: o ← o + E(o), E = up(GELU(down(o))) with 128 hidden units and ``up``
zero-initialised (``pipelines/receler/pipeline_receler.py``). Each iteration (batch 1, Adam lr 3e-4, 500
iterations; facts from the paper and ``jasper0314-huang/Receler`` 1b3f4a1, ``train-scripts/train_receler.py``)::

    c ~ the concepts;  z = DDIM (η=0, guidance 3) of the erased model on c, stopped at a random step (as ESD)
    adversarial prompting (every iteration): k = 16 soft tokens p, 50 Adam steps (lr 1e-1) on
        min_p ‖ε_E(z, t, [p; c]) − ε*(z, t, c)‖²                  (the erasers frozen; ε* = erasers off)
    L = Σ_{c' ∈ {c, [p; c]}} ‖ε_E(z, t, c') − [ε*(z,t,∅) − η(ε*(z,t,c) − ε*(z,t,∅))]‖²
        + λ · mean_layers ‖(1 − M_l) ⊙ E_l(o_l)‖²                  (concept-localised regularisation, λ = 0.1)

with M_l the concept's cross-attention mask in layer l: the original model's attention probabilities of the concept
tokens at z, averaged over heads and tokens, min-max normalised per image and thresholded at ``mask_threshold``.

The result is a custom pipeline (``RecelerPipeline``): the original components plus an ``eraser`` component; stock
diffusers loads the folder with ``trust_remote_code=True`` and igmu_hf with its own copy of the class.
"""

import time
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..families import Conditioning, family_of
from .base import MethodConfig, TrainedUnlearner, register_method
from .esd import _ddim_scheduler, esd_target, esd_timesteps, steps_until


@dataclass
class RecelerConfig(MethodConfig):
    iterations: int = field(default=500, metadata={"help": "Optimisation steps of the erasers (batch 1)."})
    lr: float = field(default=3e-4, metadata={"help": "Adam learning rate of the erasers."})
    eraser_rank: int = field(default=128, metadata={"help": "Hidden units of each eraser (down → GELU → up)."})
    negative_guidance: float = field(default=1.0, metadata={"help": "η of the ESD target."})
    start_guidance: float = field(default=3.0, metadata={"help": "Guidance of the DDIM trajectory making z."})
    ddim_steps: int = field(default=50, metadata={"help": "DDIM steps t_enc is drawn from."})
    mask_weight: float = field(default=0.1, metadata={"help": "λ of the concept-localised regularisation."})
    mask_threshold: float = field(default=0.1, metadata={
        "help": "Threshold of the normalised concept attention map that makes the mask M."})
    adversarial_tokens: int = field(default=16, metadata={"help": "k soft tokens of the adversarial prompt (0: none)."})
    attack_steps: int = field(default=50, metadata={"help": "Adam steps of the adversarial prompt per iteration."})
    attack_lr: float = field(default=0.1, metadata={"help": "Adam learning rate of the adversarial prompt."})
    warmup_iterations: int = field(default=0, metadata={"help": "Iterations before adversarial prompting starts."})

    field_ranges: ClassVar[dict] = {"warmup_iterations": (0, None, True), "adversarial_tokens": (0, None, True),
                                    "mask_weight": (0, None, True)}
    # the mini tokenizer holds 32 positions: 8 soft tokens leave room for the prompt
    mini_preset = {"iterations": 150, "lr": 3e-3, "ddim_steps": 25, "adversarial_tokens": 8, "attack_steps": 5}

    def __post_init__(self):
        super().__post_init__()
        if not self.lr > 0 or not self.attack_lr > 0 or self.iterations < 1 or self.eraser_rank < 1:
            raise ValueError("`lr` and `attack_lr` must be > 0 and `iterations`, `eraser_rank` ≥ 1; got "
                             f"{self.lr}, {self.attack_lr}, {self.iterations}, {self.eraser_rank}.")
        if not 0 <= self.mask_threshold < 1:
            raise ValueError(f"`mask_threshold` must be in [0, 1), got {self.mask_threshold}.")


def cross_attention_layers(denoiser) -> tuple[list[str], list[int]]:
    """The names of the denoiser's cross-attention modules and their output widths, in forward order."""
    names, dims = [], []
    for name, module in denoiser.named_modules():
        if name.endswith("attn2"):
            names.append(name)
            dims.append(module.to_out[0].out_features)
    if not names:
        raise ValueError(f"The {type(denoiser).__name__} has no cross-attention (attn2) modules for Receler's erasers.")
    return names, dims


def concept_masks(probs: list[torch.Tensor], positions: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Per layer, ``(batch, queries)`` 0/1: where the concept tokens' attention, averaged over heads and tokens and
    min-max normalised per image, exceeds ``threshold``."""
    out = []
    for p in probs:
        b = positions.shape[0]
        heads = p.shape[0] // b
        a = p.view(b, heads, *p.shape[1:]).mean(1)  # (batch, queries, keys)
        m = (a * positions[:, None, :].to(a)).sum(-1) / positions.sum(-1, keepdim=True).to(a)
        lo, hi = m.amin(-1, keepdim=True), m.amax(-1, keepdim=True)
        out.append(((m - lo) / (hi - lo).clamp_min(1e-12) > threshold).to(a.dtype))
    return out


def outside_mask_penalty(outputs: list[torch.Tensor], masks: list[torch.Tensor]) -> torch.Tensor:
    """mean over layers of mean ‖(1 − M) ⊙ E(o)‖² (E(o): ``(batch, queries, dim)``, M: ``(batch, queries)``)."""
    return torch.stack([((1 - m)[..., None] * e).pow(2).mean() for e, m in zip(outputs, masks)]).mean()


class RecelerUnlearner(TrainedUnlearner):
    """Train Receler's erasers (see module docstring)."""

    requires = ("single_text_encoder", "ddpm_unet")
    display_name = "Receler"
    reference_code = "jasper0314-huang/Receler@1b3f4a1: train-scripts/train_receler.py"
    deviations = (
        "The adversarial soft tokens are a prefix of the concept prompt (igmu_hf's shared soft-prefix attack, the "
        "one AdvUnlearn uses), initialised with random whole-word vocabulary embeddings every iteration.",
        "The inner attack reuses the outer iteration's z and t.",
        "The concept mask is the original model's attention at z, thresholded after min-max normalisation "
        "(mask_threshold); the authors' thresholding details were not followed line by line.",
        "Draws are seeded by (seed, iteration), so a resumed run repeats the uninterrupted one.")

    config_class = RecelerConfig
    technique = "lightweight erasers after cross-attention, adversarially trained (ESD loss + concept-mask penalty)"
    artifact_kind = "custom pipeline"
    multi_concept = True

    def __init__(self, config: RecelerConfig, **scaffold):
        super().__init__(config, **scaffold)
        self.erasers = None

    def _unlearn(self, pipeline) -> list[str]:
        from ..attacks.soft_prompt import prefixed_states, random_vocabulary_embeddings, soft_prefix_attack
        from ..diffusion import ddim_sample_steps
        from ..pipelines.receler.pipeline_receler import RecelerErasers
        from ..text import prompt_states
        from ..training import TrainingRun
        from .fmn import AttentionProbabilities, concept_positions

        cfg: RecelerConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline)
        run = TrainingRun({**cfg.to_dict(), "family": family.name}, self.accelerator, progress=self.progress,
                          resumable_changes=("iterations",), **self.train_kwargs)
        run.check_divisible("train batch (Receler trains on batch 1)", 1)
        dev = run.device
        unet, tok, te = family.denoiser(pipeline), pipeline.tokenizer, pipeline.text_encoder
        unet.requires_grad_(False).eval().to(dev)
        te.requires_grad_(False)
        layers, dims = cross_attention_layers(unet)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            erasers = RecelerErasers(layers, dims, cfg.eraser_rank)
        erasers.to(dev).train()
        erasers.attach(unet)
        trainable = {f"eraser.{n}": p for n, p in erasers.named_parameters()}
        opt = torch.optim.Adam(list(trainable.values()), lr=cfg.lr)
        conds = family.encode(pipeline, [""] + list(cfg.concepts)).to(dev)
        empty = conds[:1]
        positions = {c: concept_positions(tok, c, c, use_pooler=False)[None] for c in cfg.concepts}
        sampler = _ddim_scheduler(pipeline)
        sampler.set_timesteps(cfg.ddim_steps)
        num_train = family.num_train_timesteps(sampler)
        size = unet.config.sample_size
        shape = (unet.config.in_channels, size, size)
        state, first = run.resume_training(trainable, opt, "state", {"losses": [], "attack_losses": [],
                                                                      "inner_seconds": 0.0})

        def eps(z, t, states):
            return family.predict(unet, z, torch.full((len(z),), t, device=dev), Conditioning(states))

        recorder = AttentionProbabilities(unet)
        recorder.active = False  # on for the mask's pass only
        try:
            for it in run.steps(first, cfg.iterations, "Receler"):
                g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
                word = cfg.concepts[int(torch.randint(len(cfg.concepts), (1,), generator=g))]
                t_enc = int(torch.randint(cfg.ddim_steps, (1,), generator=g))
                t = esd_timesteps(t_enc, cfg.ddim_steps, num_train, g)
                start = torch.randn((1, *shape), generator=g)
                k = list(cfg.concepts).index(word)
                c_states = conds[1 + k:2 + k].states
                with torch.no_grad():
                    z = ddim_sample_steps(family, unet, sampler, start.to(dev), Conditioning(c_states), empty,
                                          cfg.start_guidance, steps_until(t_enc, cfg.ddim_steps))
                    erasers.enabled = False
                    e_0 = eps(z, t, empty.states)
                    recorder.probs.clear()
                    recorder.active = True
                    e_p = eps(z, t, c_states)
                    recorder.active = False
                    masks = concept_masks(recorder.probs, positions[word], cfg.mask_threshold)
                    recorder.probs.clear()
                    erasers.enabled = True
                target = esd_target(e_0, e_p, cfg.negative_guidance)
                prompts = [prompt_states(tok, te, [word]).to(dev)]
                if cfg.adversarial_tokens > 0 and it >= cfg.warmup_iterations:
                    started = time.perf_counter()
                    erasers.requires_grad_(False)
                    init = random_vocabulary_embeddings(tok, te, cfg.adversarial_tokens, g)
                    prefix, attack_losses = soft_prefix_attack(
                        tok, te, word, lambda states, step: F.mse_loss(eps(z, t, states.to(dev)), e_p), init,
                        cfg.attack_steps, cfg.attack_lr)
                    erasers.requires_grad_(True)
                    with torch.no_grad():
                        prompts.append(prefixed_states(tok, te, prefix, word).to(dev))
                    state["attack_losses"].append(attack_losses[-1])
                    state["inner_seconds"] += time.perf_counter() - started
                opt.zero_grad(set_to_none=True)
                erasers.outputs.clear()
                erasers.record = True
                loss = torch.zeros((), device=dev)
                for i, states in enumerate(prompts):
                    loss = loss + F.mse_loss(eps(z, t, states), target)
                    if i == 0 and cfg.mask_weight > 0:  # the penalty on the concept prompt's pass
                        loss = loss + cfg.mask_weight * outside_mask_penalty(erasers.outputs, masks)
                erasers.record = False
                erasers.outputs.clear()
                loss.backward()
                opt.step()
                state["losses"].append(float(loss.detach()))
                run.checkpoint(it + 1, {"state": state}, trainable, opt.state_dict())
                run.after_step(it + 1)
        finally:
            recorder.restore()
            erasers.record, erasers.enabled = False, True
            erasers.eval().requires_grad_(False)
        self.erasers = erasers
        self.stats = {"first_loss": state["losses"][0] if state["losses"] else None,
                      "final_loss": state["losses"][-1] if state["losses"] else None,
                      "final_attack_loss": state["attack_losses"][-1] if state["attack_losses"] else None,
                      "iterations": cfg.iterations, "inner_attack_seconds": state["inner_seconds"],
                      "eraser_parameters": sum(p.numel() for p in erasers.parameters())}
        return list(trainable)

    def wrap_pipeline(self, pipeline):
        from ..pipelines.receler.pipeline_receler import RecelerPipeline

        components = {k: v for k, v in pipeline.components.items() if k in (
            "vae", "text_encoder", "tokenizer", "unet", "scheduler", "safety_checker", "feature_extractor",
            "image_encoder")}
        out = RecelerPipeline(**components, eraser=self.erasers, requires_safety_checker=False)
        out.set_progress_bar_config(disable=True)
        return out

    def extra_metadata(self, pipeline) -> dict:
        return {"custom_pipeline": ["pipeline_receler", "RecelerPipeline"]}


register_method("receler", RecelerUnlearner)
