"""AdvUnlearn: Defensive Unlearning with Adversarial Training (Zhang et al., NeurIPS 2024), the text encoder made
robust to adversarial prompts; the UNet is never changed.

Each iteration i (the paper-era code, ``OPTML-Group/AdvUnlearn`` 9d23124, ``train-scripts/AdvUnlearn.py`` with the
README's nudity command: ``--attack_init random --attack_step 30 --retain_train reg --retain_loss_w 0.3``)::

    c ~ the concepts;  z = DDIM (η=0, guidance start_guidance) of the original model on c, stopped at t_enc (as ESD)
    inner (i ≥ warmup): k soft prefix embeddings p (k=1, init: random vocabulary tokens), 30 Adam steps (lr 1e-3):
        min_p ‖ε(z, t, E_θ([p; c])) − ε*(z, t, c)‖²            (fresh t_enc, t, z each step; E_θ frozen here)
    outer: L = ‖ε(z, t, E_θ([p; c])) − [ε*(z,t,∅) − η(ε*(z,t,c) − ε*(z,t,∅))]‖²      (c alone during warm-up)
           + w · ‖ε(z_r, t, E_θ(r)) − ε*(z_r, t, r)‖²   over retain prompts r (batch 5, z_r sampled as z)
    Adam (lr 1e-5) on E_θ's transformer layers and final layer norm (``text_encoder_full``); 1000 iterations,
    warm-up 200.

ε is the (frozen) UNet with the trained text encoder, ε* the UNet with the original one. The inner attack is
:func:`igmu_hf.attacks.soft_prompt.soft_prefix_attack`. The result is the pipeline with its new ``text_encoder/``;
that folder alone in the original pipeline (``CLIPTextModel.from_pretrained(dir, subfolder="text_encoder")``) is the
unlearned model, as in the authors' model zoo.
"""

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from ..families import Conditioning, family_of
from .base import MethodConfig, TrainedUnlearner, register_method
from .esd import _ddim_scheduler, esd_target, esd_timesteps, paper_trajectory


@dataclass
class AdvUnlearnConfig(MethodConfig):
    retain_prompts: list[str] = field(default_factory=list, metadata={
        "help": "Retain prompts r of the utility term (the paper: COCO object captions; default: CatIGMU's preserve "
                "prompts of the target in its concept world)."})
    iterations: int = field(default=1000, metadata={"help": "Outer iterations (batch 1)."})
    lr: float = field(default=1e-5, metadata={"help": "Adam learning rate of the text encoder."})
    warmup_iterations: int = field(default=200, metadata={"help": "Iterations before the inner attack starts "
                                                                  "(plain ESD loss on the text encoder)."})
    attack_steps: int = field(default=30, metadata={"help": "Inner attack steps per iteration."})
    attack_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the soft prefix."})
    prefix_length: int = field(default=1, metadata={"help": "k soft prefix tokens (the paper's adv_prompt_num)."})
    attack_method: str = field(default="pgd", metadata={"help": "'pgd' (Adam) or 'fast_at' (Adam on the sign)."})
    inner_attack: str = field(default="paper", metadata={
        "help": "'paper': each attack step on its own gradient, the last prefix returned (a standard attack, as the "
                "paper describes it). 'authors_code': as train-scripts/utils/attack_util.py (9d23124) runs — the "
                "gradient is never zeroed, so step i steps on the sum of steps 0..i, and the prefix from before the "
                "last update is returned."})
    attack_init: str = field(default="random", metadata={
        "help": "'random' vocabulary tokens each iteration (the README's command) or 'latest' (the previous prefix)."})
    retain_loss_weight: float = field(default=0.3, metadata={"help": "w of the retain term (README: 0.3)."})
    retain_batch_size: int = field(default=5, metadata={"help": "Retain prompts per iteration."})
    negative_guidance: float = field(default=1.0, metadata={"help": "η of the ESD target."})
    start_guidance: float = field(default=3.0, metadata={"help": "Guidance of the DDIM trajectory making z."})
    ddim_steps: int = field(default=50, metadata={"help": "DDIM steps t_enc is drawn from."})

    field_ranges: ClassVar[dict] = {"warmup_iterations": (0, None, True)}
    preserve_field = "retain_prompts"
    preserve_by_default = True
    # the best of the settings measured on the mini world (README, "Baselines II"): 150 iterations (30 warm-up),
    # 5 inner steps, lr 1e-3 (1e-4 barely forgets; 3e-3 moves other shapes)
    mini_preset = {"iterations": 150, "warmup_iterations": 30, "attack_steps": 5, "lr": 1e-3, "ddim_steps": 25,
                   "retain_batch_size": 3}

    def __post_init__(self):
        super().__post_init__()
        if self.inner_attack not in ("paper", "authors_code"):
            raise ValueError(f"`inner_attack` must be 'paper' or 'authors_code', got {self.inner_attack!r}.")
        if self.attack_method not in ("pgd", "fast_at"):
            raise ValueError(f"`attack_method` must be 'pgd' or 'fast_at', got {self.attack_method!r}.")
        if self.attack_init not in ("random", "latest"):
            raise ValueError(f"`attack_init` must be 'random' or 'latest', got {self.attack_init!r}.")
        if isinstance(self.retain_prompts, str):
            self.retain_prompts = [self.retain_prompts]
        if self.retain_loss_weight > 0 and not self.retain_prompts:
            raise ValueError("`retain_prompts` is empty but `retain_loss_weight` > 0; give retain prompts (--preserve) "
                             "or set retain_loss_weight 0.")


def text_encoder_full_parameters(text_encoder) -> dict[str, torch.nn.Parameter]:
    """The paper code's ``text_encoder_full``: the transformer layers and the final layer norm (embeddings frozen),
    named as pipeline parameters (``text_encoder.<name>``; transformers ≥ 5 has no ``text_model.`` level)."""
    return {f"text_encoder.{n}": p for n, p in text_encoder.named_parameters()
            if n.removeprefix("text_model.").startswith(("encoder.", "final_layer_norm."))}


def advunlearn_draws(config: AdvUnlearnConfig, iteration: int, shape: tuple[int, ...], num_train_timesteps: int,
                     ) -> dict[str, Any]:
    """Every random draw of one iteration, seeded by ``(seed, iteration)``: the concept, the outer (t_enc, t, z_T),
    the retain prompts and their z_T, and a generator for the inner attack (so a resumed run redraws them)."""
    g = torch.Generator().manual_seed(config.seed * 1_000_003 + iteration)
    word = int(torch.randint(len(config.concepts), (1,), generator=g))
    t_enc = int(torch.randint(config.ddim_steps, (1,), generator=g))
    t = esd_timesteps(t_enc, config.ddim_steps, num_train_timesteps, g)
    start = torch.randn((1, *shape), generator=g)
    n = min(config.retain_batch_size, len(config.retain_prompts))
    retain = [config.retain_prompts[int(k)] for k in torch.randperm(len(config.retain_prompts), generator=g)[:n]] \
        if config.retain_loss_weight > 0 else []
    retain_start = torch.randn((len(retain), *shape), generator=g)
    return {"word": word, "t_enc": t_enc, "t": t, "start": start, "retain": retain, "retain_start": retain_start,
            "attack_generator": torch.Generator().manual_seed(int(torch.randint(2**31 - 1, (1,), generator=g)))}


class AdvUnlearnUnlearner(TrainedUnlearner):
    """Adversarial training of the text encoder (see module docstring)."""

    config_class = AdvUnlearnConfig
    technique = "adversarial fine-tuning of the text encoder (ESD loss + retain term)"
    artifact_kind = "text-encoder weights"
    multi_concept = True  # the paper code erases several words ('allartist', '--seperator')
    requires = ("single_text_encoder", "ddpm_unet")
    display_name = "AdvUnlearn"
    reference_code = "OPTML-Group/AdvUnlearn@9d23124: train-scripts/AdvUnlearn.py, utils/attack_util.py, utils/get_loss.py"
    deviations = (
        "Retain prompts default to CatIGMU's preserve prompts of the target (the paper: COCO object captions, which "
        "the mini world has no equivalent of); --preserve gives others.",
        "Random prefix initialisation draws whole-word vocabulary tokens (the paper code draws any token id).",
        "The inner attack's z is the original model's trajectory (the paper samples with its ESD model wrapper, whose "
        "UNet is the original's and whose conditioning there is the original encoder's, so the same trajectory).",
        "The retain z_r uses the outer iteration's t_enc, as the paper's 'reg' loss does; one shared draw per "
        "iteration seeded by (seed, iteration) so a resumed run repeats the uninterrupted one.",
        "By default (inner_attack='paper') the inner attack zeroes its gradient every step and returns the prefix "
        "after its last update; the authors' (train-scripts/utils/attack_util.py) never zero it, so its gradient "
        "accumulates over the attack steps, and return the prefix from before the last update: "
        "inner_attack='authors_code' attacks so.",
        "The adversarial prompt keeps every token of the concept; the authors' split_id/split_embd keep "
        "len(word.split()) tokens, so a concept with more tokens than words is cut ('nudity' = [nud, ity] "
        "trains on '<adv> nud').",
        "Retain prompts are a fresh random choice each iteration, the word by torch's generator; the authors "
        "draw retain prompts without replacement across iterations and the word with Python's random.")

    def _unlearn(self, pipeline) -> list[str]:
        from ..attacks.soft_prompt import prefixed_states, random_vocabulary_embeddings, soft_prefix_attack
        from ..text import prompt_states
        from ..training import TrainingRun

        cfg: AdvUnlearnConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline, cfg.retain_prompts)
        run = TrainingRun({**cfg.to_dict(), "family": family.name}, self.accelerator, progress=self.progress,
                          resumable_changes=("iterations",), **self.train_kwargs)
        run.check_divisible("train batch (AdvUnlearn trains on batch 1)", 1)
        dev = run.device
        unet, tok, te = family.denoiser(pipeline), pipeline.tokenizer, pipeline.text_encoder
        unet.requires_grad_(False).eval()
        # ε*'s conditioning: the original encoder's states, computed before any update
        prompts = [""] + list(cfg.concepts) + list(dict.fromkeys(cfg.retain_prompts))
        orig_states = {p: s for p, s in zip(prompts, family.encode(pipeline, prompts).states.to(dev))}
        te.requires_grad_(False)
        trainable = text_encoder_full_parameters(te)
        for p in trainable.values():
            p.requires_grad_(True)
        opt = torch.optim.Adam(list(trainable.values()), lr=cfg.lr)
        sampler = _ddim_scheduler(pipeline)
        sampler.set_timesteps(cfg.ddim_steps)
        num_train = family.num_train_timesteps(sampler)
        size = unet.config.sample_size
        shape = (unet.config.in_channels, size, size)
        state, first = run.resume_training({**trainable}, opt, "state", {"losses": [], "attack_losses": [],
                                                                          "inner_seconds": 0.0, "latest": None})
        latest = None if state["latest"] is None else torch.tensor(state["latest"])
        empty = Conditioning(orig_states[""][None])

        def trajectory(start, cond, t_enc):
            with torch.no_grad():
                return paper_trajectory(family, unet, sampler, start.to(dev), cond, empty, cfg.start_guidance, t_enc,
                                        cfg.ddim_steps)

        def eps(z, t, states):
            return family.predict(unet, z, torch.full((len(z),), t, device=dev), Conditioning(states))

        te.train()
        for it in run.steps(first, cfg.iterations, "AdvUnlearn"):
            d = advunlearn_draws(cfg, it, shape, num_train)
            word = cfg.concepts[d["word"]]
            c = Conditioning(orig_states[word][None])
            prefix = None
            if it >= cfg.warmup_iterations:
                started = time.perf_counter()
                ag = d["attack_generator"]
                init = latest if cfg.attack_init == "latest" and latest is not None else \
                    random_vocabulary_embeddings(tok, te, cfg.prefix_length, ag)

                def objective(states, step, _word=word, _g=ag):
                    t_enc = int(torch.randint(cfg.ddim_steps, (1,), generator=_g))
                    t = esd_timesteps(t_enc, cfg.ddim_steps, num_train, _g)
                    z = trajectory(torch.randn((1, *shape), generator=_g), Conditioning(orig_states[_word][None]),
                                   t_enc)
                    with torch.no_grad():
                        e_p = eps(z, t, orig_states[_word][None])
                    return F.mse_loss(eps(z, t, states.to(dev)), e_p)

                te.requires_grad_(False)
                authors = cfg.inner_attack == "authors_code"
                prefix, attack_losses = soft_prefix_attack(tok, te, word, objective, init, cfg.attack_steps,
                                                           cfg.attack_lr, cfg.attack_method,
                                                           accumulate_gradients=authors,
                                                           return_before_last_update=authors)
                for p in trainable.values():
                    p.requires_grad_(True)
                latest = prefix
                state["latest"] = prefix.tolist() if cfg.attack_init == "latest" else None
                state["attack_losses"].append(attack_losses[-1])
                state["inner_seconds"] += time.perf_counter() - started
            opt.zero_grad(set_to_none=True)
            z = trajectory(d["start"], c, d["t_enc"])
            with torch.no_grad():
                e_0, e_p = eps(torch.cat([z, z]), d["t"], torch.cat([orig_states[""][None],
                                                                      orig_states[word][None]])).chunk(2)
            if prefix is None:
                states = prompt_states(tok, te, [word])
            else:
                states = prefixed_states(tok, te, prefix, word)
            loss = F.mse_loss(eps(z, d["t"], states.to(dev)), esd_target(e_0, e_p, cfg.negative_guidance))
            if d["retain"]:
                r_orig = torch.stack([orig_states[r] for r in d["retain"]])
                z_r = trajectory(d["retain_start"], Conditioning(r_orig), d["t_enc"])
                with torch.no_grad():
                    r_p = eps(z_r, d["t"], r_orig)
                r_n = eps(z_r, d["t"], prompt_states(tok, te, d["retain"]).to(dev))
                loss = loss + cfg.retain_loss_weight * F.mse_loss(r_n, r_p)
            loss.backward()
            opt.step()
            state["losses"].append(float(loss.detach()))
            run.checkpoint(it + 1, {"state": state}, trainable, opt.state_dict())
            run.after_step(it + 1)
        te.eval()
        te.requires_grad_(False)
        self.stats = {"first_loss": state["losses"][0] if state["losses"] else None,
                      "final_loss": state["losses"][-1] if state["losses"] else None,
                      "final_attack_loss": state["attack_losses"][-1] if state["attack_losses"] else None,
                      "iterations": cfg.iterations, "inner_attack_seconds": state["inner_seconds"]}
        return list(trainable)


register_method("advunlearn", AdvUnlearnUnlearner)
