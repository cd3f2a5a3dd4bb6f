"""Dark Miner: mine, verify, circumvent, in a loop (seed paper 001, §3.2 and §4.1).

Each loop, with the UNet's LoRA (value projections of every attention) as the only trainable weights:

1. **Mine** a free text embedding ``c`` of ``embedding_length`` tokens (fed to the text encoder in place of word
   embeddings) that minimises the denoising loss ``E‖ε − ε_θ(x_t, t, c)‖²`` on ``k`` images of the image pool,
   with the model frozen. ``c`` joins the embedding pool P_E.
2. **Verify** it: ``x_r`` = image of the anchor ("a photo"), ``x_c`` = image of ``c`` (same seed, current model),
   ``s(c) = mean_{x_e} cos(E(x_c) − E(x_r), E(x_e) − E(x_r))`` with the CLIP image encoder E over the ``k`` mining
   images. If ``s(c) < τ`` the concept is no longer reachable and the whole run stops.
3. **Circumvent**: pick ``c`` from P_E (the newest with probability r, else a random older one), let the original
   model ε* draw images from it, and train the LoRA on
   ``α_c‖ε_θ(x_t, c) − ε*(x_t, c₀)‖² + α_p(‖ε_θ(x_t,c₀)−ε*(x_t,c₀)‖² + ‖ε_θ(x_t,0·c)−ε*(x_t,0·c)‖²
   + ‖ε_θ(x_t,−c)−ε*(x_t,−c)‖²)``, c₀ = the anchor prompt. Then back to 1, until verification fails or
   ``max_loops``.

No public code exists for the paper and no library ships the method, so the loop is written here. Choices the
paper leaves open (and that are config fields or documented here): the optimiser of mining (Adam; the paper gives
only the lr schedule), the initialisation of ``c`` (drawn from the statistics of the token-embedding table), one
image of ``c`` per circumvent sample by default, and timesteps uniform over the scheduler's range.

Every random draw is seeded from ``(seed, loop, stage, epoch)``, so a run interrupted anywhere and resumed from a
checkpoint reaches the same result, and N data-parallel processes (each taking its share of one global batch, with
gradients averaged) compute the single-process step.
"""

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import ClassVar
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..diffusion import adapters_disabled, add_lora, fuse_lora_into_unet
from ..families import family_of
from ..text import encode_free_tokens, encode_prompts
from .base import MethodConfig, Unlearner, register_method


logger = logging.getLogger(__name__)
VALUE_PROJECTIONS = ["attn1.to_v", "attn2.to_v"]
STAGES = ("mine", "verify", "circumvent")
# Fields that may change between a run and its resumption without changing what the resumed run computes.
RESUMABLE_CHANGES = ("max_loops",)


@dataclass
class DarkMinerConfig(MethodConfig):
    pool_prompts: list[str] | None = field(default=None, metadata={
        "help": "Prompts of the image pool P_I; '{concept}' is filled in (default: 'a {concept} photo')."})
    pool_size: int = field(default=200, metadata={"help": "|P_I|, images generated for the pool."})
    anchor_prompt: str = field(default="a photo", metadata={"help": "c₀, the anchor of circumventing and of x_r."})
    embedding_length: int = field(default=32, metadata={"help": "Tokens of a mined embedding c."})
    embedding_init: str = field(default="random", metadata={
        "help": "Start of each mining: 'random' (drawn from the token-embedding table's statistics) or 'prompt' (the "
                "first pool prompt's token embeddings, tiled to embedding_length). The paper does not say."})
    mining_images: int = field(default=3, metadata={"help": "k, pool images a loop mines (and verifies) on."})
    mining_epochs: int = field(default=1000, metadata={"help": "Optimisation steps of mining."})
    mining_batch_size: int = field(default=3, metadata={"help": "Images per mining step (over all processes)."})
    mining_lr: float = field(default=0.1, metadata={"help": "Mining lr until mining_decay_epoch."})
    mining_lr_decayed: float = field(default=0.01, metadata={"help": "Mining lr from mining_decay_epoch on."})
    mining_decay_epoch: int = field(default=500, metadata={"help": "Epoch of the mining lr decay."})
    mining_max_grad_norm: float = field(default=10.0, metadata={"help": "Gradient-norm clip of mining."})
    tau: float = field(default=0.2, metadata={"help": "τ: stop when the verification score s(c) < τ."})
    field_ranges: ClassVar[dict] = {"tau": (-1, 1, True)}  # a cosine-similarity threshold
    current_embedding_prob: float = field(default=0.7, metadata={
        "help": "r: probability that circumventing uses this loop's embedding (else a random older one)."})
    circumvent_epochs: int = field(default=1000, metadata={"help": "Optimisation steps of circumventing."})
    circumvent_batch_size: int = field(default=1, metadata={"help": "Images per circumvent step (all processes)."})
    circumvent_images: int | None = field(default=None, metadata={
        "help": "Images ε* draws from c per loop, cycled over (default: one per sample, epochs × batch)."})
    circumvent_lr: float = field(default=0.01, metadata={"help": "SGD lr until circumvent_decay_epoch."})
    circumvent_lr_decayed: float = field(default=0.001, metadata={"help": "SGD lr from circumvent_decay_epoch on."})
    circumvent_decay_epoch: int = field(default=800, metadata={"help": "Epoch of the circumvent lr decay."})
    circumvent_max_grad_norm: float = field(default=100.0, metadata={"help": "Gradient-norm clip of circumventing."})
    alpha_c: float = field(default=1.0, metadata={"help": "α_c, weight of the circumventing term."})
    alpha_p: float = field(default=0.5, metadata={"help": "α_p, weight of the preservation terms (c₀, 0·c, −c)."})
    max_loops: int = field(default=50, metadata={"help": "Loops at most (the paper's nudity run stopped after 48)."})
    lora_rank: int = field(default=8, metadata={"help": "LoRA r."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA alpha."})
    target_modules: list[str] = field(default_factory=lambda: list(VALUE_PROJECTIONS),
                                      metadata={"help": "UNet modules with LoRA (default: every value projection)."})
    num_inference_steps: int = field(default=50, metadata={"help": "Sampling steps of every generation."})
    guidance_scale: float = field(default=7.5, metadata={"help": "CFG scale of every generation."})
    clip_model_name_or_path: str | None = field(default=None, metadata={
        "help": "CLIP of verification (default: the concept world's; openai/clip-vit-large-patch14 in the real "
                "world, the mini CLIP on the mini world)."})
    preserve_prompts: list[str] = field(default_factory=list, metadata={
        "help": "Extra preserved conditions (igmu --preserve): each circumvent step adds "
                "α_p‖ε_θ(x_t, c_p) − ε*(x_t, c_p)‖² for one of them in turn. The paper has only c₀; empty = the paper's."})

    preserve_field = "preserve_prompts"
    # the embedded mini world, scaled to minutes on a CPU (its Domain adds the sampling settings: 25 steps, CFG 5)
    mini_preset = {
        "embedding_length": 8, "embedding_init": "prompt",
        "pool_size": 24, "mining_epochs": 150, "mining_decay_epoch": 100, "circumvent_epochs": 150,
        "circumvent_decay_epoch": 120, "circumvent_batch_size": 4, "circumvent_images": 16, "circumvent_lr": 1.0,
        "circumvent_lr_decayed": 0.1, "max_loops": 3}

    def __post_init__(self):
        super().__post_init__()
        if not -1.0 <= self.tau <= 1.0:
            raise ValueError(f"`tau` (τ) is a cosine-similarity threshold and must be in [-1, 1], got {self.tau}.")
        if not 0.0 <= self.current_embedding_prob <= 1.0:
            raise ValueError(f"`current_embedding_prob` (r) must be in [0, 1], got {self.current_embedding_prob}.")
        for name in ("pool_size", "embedding_length", "mining_images", "mining_epochs", "mining_batch_size",
                     "circumvent_epochs", "circumvent_batch_size", "max_loops", "lora_rank", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be ≥ 1, got {getattr(self, name)}.")
        if self.circumvent_images is not None and self.circumvent_images < 1:
            raise ValueError(f"`circumvent_images` must be ≥ 1 or None, got {self.circumvent_images}.")
        if self.mining_images > self.pool_size:
            raise ValueError(f"`mining_images` (k={self.mining_images}) exceeds `pool_size` ({self.pool_size}).")
        if not self.target_modules:
            raise ValueError("`target_modules` is empty; e.g. ['attn1.to_v', 'attn2.to_v'].")
        if isinstance(self.preserve_prompts, str):
            self.preserve_prompts = [self.preserve_prompts]
        if any(not isinstance(p, str) or not p.strip() for p in self.preserve_prompts):
            raise ValueError(f"`preserve_prompts` holds an empty prompt: {self.preserve_prompts!r}.")
        if self.embedding_init not in ("random", "prompt"):
            raise ValueError(f"`embedding_init` must be 'random' or 'prompt', got {self.embedding_init!r}.")

    def pool_prompt_list(self) -> list[str]:
        prompts = self.pool_prompts or ["a {concept} photo"]
        return [p.format(concept=c) for c in self.concepts for p in prompts]


def _rng(config: DarkMinerConfig, loop: int, stage: str, epoch: int = 0) -> torch.Generator:
    """The generator of one draw: a function of (seed, loop, stage, epoch) only, so resuming redraws the same."""
    return torch.Generator().manual_seed(((config.seed * 1009 + loop) * 7 + STAGES.index(stage)) * 1_000_003 + epoch)


def _lr(epoch: int, lr: float, decayed: float, decay_epoch: int) -> float:
    return lr if epoch < decay_epoch else decayed


def generate_pool(pipeline, config: DarkMinerConfig, accelerator=None, progress: bool = True):
    """P_I as a ``datasets.Dataset`` (``image``, ``prompt``, ``seed``), generated by the original model."""
    from ..evaluation import concept_image_dataset

    prompts = config.pool_prompt_list()
    ps = [prompts[i % len(prompts)] for i in range(config.pool_size)]
    seeds = [config.seed * 1_000_003 + 17 + i for i in range(config.pool_size)]
    return concept_image_dataset(pipeline, ps, None, seeds, accelerator, "Dark Miner pool", progress,
                                 num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale)


def load_clip(config: DarkMinerConfig, domain=None):
    """``(model, processor)`` of the verification CLIP: the config's, else the concept world's (``domain``, default
    the world of the first concept)."""
    from transformers import CLIPImageProcessor, CLIPModel

    from ..domains import domain_of_concept, get_domain

    path = config.clip_model_name_or_path
    if path is None:
        world = get_domain(domain) if domain is not None else domain_of_concept(config.concepts[0])
        path = world.verification_clip
    try:
        return CLIPModel.from_pretrained(path).eval(), CLIPImageProcessor.from_pretrained(path)
    except OSError as err:
        raise ValueError(f"Could not load the verification CLIP {path!r} ({str(err).splitlines()[0]}); pass "
                         f"clip_model_name_or_path (a local CLIP folder) in method_kwargs.") from None


@torch.no_grad()
def verification_score(clip, processor, x_c, x_r, x_e: list) -> float:
    """s(c) = mean over x_e of cos(E(x_c) − E(x_r), E(x_e) − E(x_r)) with E the CLIP image encoder."""
    pixels = processor(images=[x_c, x_r, *x_e], return_tensors="pt").pixel_values.to(clip.device)
    feats = clip.get_image_features(pixel_values=pixels)
    feats = getattr(feats, "pooler_output", feats)  # transformers 5 may return an output object
    delta_c, delta_e = feats[0] - feats[1], feats[2:] - feats[1]
    return float(torch.nn.functional.cosine_similarity(delta_e, delta_c[None], dim=-1).mean())


def _generate(pipeline, cond: torch.Tensor, uncond: torch.Tensor, seeds: list[int], config: DarkMinerConfig,
              output_type: str = "pil", batch_size: int = 16):
    """One generation per seed from the encoder states ``cond`` (1, L, D), paired seeds as in evaluation."""
    out = []
    for i in range(0, len(seeds), batch_size):
        s = seeds[i:i + batch_size]
        res = pipeline(prompt_embeds=cond.expand(len(s), -1, -1), negative_prompt_embeds=uncond.expand(len(s), -1, -1),
                       generator=[torch.Generator().manual_seed(x) for x in s], output_type=output_type,
                       num_inference_steps=config.num_inference_steps, guidance_scale=config.guidance_scale)
        out.extend(list(res.images) if output_type == "pil" else list(res.images.float().cpu()))
    return out


@dataclass
class _RunState:
    loop: int = 0
    stage: str = "mine"
    epoch: int = 0
    step: int = 0
    stopped: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    selected: int | None = None


class DarkMinerTrainer:
    """The Dark Miner loop on a pipeline, resumable from ``output_dir/checkpoint-*``.

    ``pool_images``: P_I (PIL images); generated with :func:`generate_pool` when None. ``callback(state)`` is called
    after every optimisation step and stage (progress reporting; raising from it stops the run like a crash).
    """

    def __init__(self, pipeline, config: DarkMinerConfig, pool_images: list | None = None, accelerator=None,
                 output_dir: str | None = None, checkpointing_steps: int | None = None,
                 checkpoints_total_limit: int | None = 2, clip=None, progress: bool = True,
                 callback: Callable[[_RunState], None] | None = None, domain=None):
        from ..training import TrainingRun

        self.family = family_of(pipeline)
        # mining learns free token embeddings of the one CLIP encoder (SD1.x, SD2.x); SDXL/SD3 are refused here
        self.family.require("single_text_encoder", "Dark Miner")
        self.pipe, self.config = pipeline, config
        # checkpoints every `checkpointing_steps` optimisation steps, and at every stage boundary (forced)
        self.run = TrainingRun(config.to_dict(), accelerator, output_dir, checkpointing_steps,
                               checkpoints_total_limit, progress=progress, resumable_changes=RESUMABLE_CHANGES)
        self.acc = self.run.accelerator
        self.output_dir, self.progress, self.callback = output_dir, progress, callback
        for name in ("mining_batch_size", "circumvent_batch_size"):
            self.run.check_divisible(name, getattr(config, name))
        if config.embedding_length > pipeline.tokenizer.model_max_length - 2:
            raise ValueError(f"`embedding_length` {config.embedding_length} does not fit this tokenizer's "
                             f"{pipeline.tokenizer.model_max_length} positions; use ≤ "
                             f"{pipeline.tokenizer.model_max_length - 2} (the mini preset uses 8).")
        if pool_images is None:
            pool_images = list(generate_pool(pipeline, config, self.acc, progress=progress)["image"])
        if len(pool_images) < config.mining_images:
            raise ValueError(f"The image pool holds {len(pool_images)} image(s) but mining needs k="
                             f"{config.mining_images}; generate or pass a larger pool.")
        self.pool_images = pool_images
        self.pool_latents = self.family.latents(pipeline, pool_images)
        self.clip, self.clip_processor = clip or load_clip(config, domain)
        self.clip.to(self.acc.device)
        unet = self.family.denoiser(pipeline)
        add_lora(unet, config.target_modules, config.lora_rank, config.lora_alpha, seed=config.seed)
        self.lora_params = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        pipeline.text_encoder.requires_grad_(False)
        pipeline.vae.requires_grad_(False)
        tok, te = pipeline.tokenizer, pipeline.text_encoder
        self.uncond, self.anchor = encode_prompts(tok, te, ["", config.anchor_prompt]).split(1)
        self.preserve = encode_prompts(tok, te, config.preserve_prompts) if config.preserve_prompts else None
        self.scheduler = self.family.training_scheduler(pipeline)
        self.state = _RunState()
        self.embeddings: list[torch.Tensor] = []  # P_E, in mining order
        self.c: torch.Tensor | None = None
        self.mine_opt_state: dict | None = None
        self.circ_latents: torch.Tensor | None = None

    # ----------------------------------------------------------------------------------------- checkpoints --
    def _checkpoint(self, force: bool = True) -> None:
        tensors = {f"lora.{n}": p.detach() for n, p in self.lora_params.items()}
        if self.embeddings:
            tensors["embeddings"] = torch.stack(self.embeddings)
        if self.c is not None:
            tensors["c"] = self.c.detach()
        if self.circ_latents is not None:
            tensors["circumvent_latents"] = self.circ_latents
        s = self.state
        self.run.checkpoint(s.step, {"loop": s.loop, "stage": s.stage, "epoch": s.epoch, "stopped": s.stopped,
                                     "history": s.history, "selected": s.selected}, tensors, self.mine_opt_state,
                            force=force)

    def resume(self, resume_from_checkpoint: str) -> bool:
        """Load ``checkpoint-<step>`` (or ``"latest"`` in ``output_dir``); False when there is none yet."""
        self.run.resume_from_checkpoint = resume_from_checkpoint
        resumed = self.run.resume({f"lora.{n}": p for n, p in self.lora_params.items()})
        if resumed is None:
            return False
        saved, tensors, opt = resumed
        self.embeddings = list(tensors["embeddings"]) if "embeddings" in tensors else []
        self.c = tensors.get("c")
        self.circ_latents = tensors.get("circumvent_latents")
        self.mine_opt_state = opt
        self.state = _RunState(loop=saved["loop"], stage=saved["stage"], epoch=saved["epoch"], step=saved["step"],
                               stopped=saved["stopped"], history=saved["history"], selected=saved["selected"])
        if self.state.stopped == "max_loops" and self.state.loop < self.config.max_loops:
            self.state.stopped = None  # max_loops was raised: continue
        logger.info("Resumed Dark Miner at loop %d, %s, epoch %d.", self.state.loop, self.state.stage,
                    self.state.epoch)
        return True

    def _after_step(self, force: bool = False) -> None:
        self.state.step += 1 if not force else 0
        self._checkpoint(force=force)
        if self.callback is not None:
            self.callback(self.state)

    # -------------------------------------------------------------------------------------------- stages --
    def _mining_indices(self, loop: int) -> torch.Tensor:
        return torch.randperm(len(self.pool_latents), generator=_rng(self.config, loop, "mine", -1))[
            :self.config.mining_images]

    def _initial_embedding(self, loop: int) -> torch.Tensor:
        cfg = self.config
        table = self.pipe.text_encoder.get_input_embeddings().weight.detach().cpu()
        if cfg.embedding_init == "prompt":
            ids = self.pipe.tokenizer(cfg.pool_prompt_list()[0], add_special_tokens=False).input_ids
            return table[torch.tensor(ids).repeat(math.ceil(cfg.embedding_length / len(ids)))[:cfg.embedding_length]]
        noise = torch.randn(cfg.embedding_length, table.shape[1], generator=_rng(cfg, loop, "mine", -2))
        return table.mean(0) + noise * table.std(0)

    def mine(self) -> None:
        cfg, s, acc = self.config, self.state, self.acc
        unet, tok, te = self.family.denoiser(self.pipe), self.pipe.tokenizer, self.pipe.text_encoder
        k_idx = self._mining_indices(s.loop)
        if s.epoch == 0 or self.c is None:
            self.c, self.mine_opt_state = self._initial_embedding(s.loop), None
        c = self.c.clone().to(acc.device).requires_grad_(True)
        opt = torch.optim.Adam([c], lr=cfg.mining_lr)
        if self.mine_opt_state is not None:
            opt.load_state_dict(self.mine_opt_state)
        per = cfg.mining_batch_size // self.run.num_processes
        share = self.run.share(cfg.mining_batch_size)
        bar = tqdm(range(s.epoch, cfg.mining_epochs), desc=f"loop {s.loop}: mine", disable=not self.progress)
        for epoch in bar:
            for group in opt.param_groups:
                group["lr"] = _lr(epoch, cfg.mining_lr, cfg.mining_lr_decayed, cfg.mining_decay_epoch)
            g = _rng(cfg, s.loop, "mine", epoch)
            reps = math.ceil(cfg.mining_batch_size / len(k_idx))
            idx = torch.cat([k_idx[torch.randperm(len(k_idx), generator=g)] for _ in range(reps)])
            idx = idx[:cfg.mining_batch_size]
            t = torch.randint(0, self.family.num_train_timesteps(self.scheduler), (cfg.mining_batch_size,), generator=g)[share]
            x0 = self.pool_latents[idx]
            eps = torch.randn(x0.shape, generator=g)[share].to(acc.device)
            x_t = self.family.noisy(self.scheduler, x0[share].to(acc.device), eps, t.to(acc.device))
            with acc.autocast():
                cond = encode_free_tokens(tok, te, c[None]).expand(per, -1, -1)
                # ‖ε − ε_θ‖² for ε-prediction; the family's target (v) for v-prediction models
                target = self.family.target(self.scheduler, x0[share].to(acc.device), eps, t.to(acc.device))
                loss = ((unet(x_t, t.to(acc.device), cond).sample.float() - target) ** 2).mean()
            (c.grad,) = torch.autograd.grad(loss, [c])  # only c: the UNet and its adapter stay frozen
            self.run.reduce_mean_([c])
            torch.nn.utils.clip_grad_norm_([c], cfg.mining_max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.c, self.mine_opt_state = c.detach().cpu(), opt.state_dict()
            s.epoch = epoch + 1
            bar.set_postfix(loss=float(loss.detach()))
            self._last_mining_loss = float(loss.detach())
            acc.log({"mining_loss": self._last_mining_loss, "loop": s.loop}, step=s.step + 1)
            self._after_step()
        self.embeddings.append(self.c.clone())
        self.c, self.mine_opt_state = None, None

    def verify(self) -> float:
        cfg, s = self.config, self.state
        c = self.embeddings[-1].to(self.acc.device)
        seed = cfg.seed * 1_000_003 + 101 * s.loop
        with torch.no_grad():
            cond = encode_free_tokens(self.pipe.tokenizer, self.pipe.text_encoder, c[None])
            x_c = _generate(self.pipe, cond, self.uncond, [seed], cfg)[0]
            x_r = _generate(self.pipe, self.anchor, self.uncond, [seed], cfg)[0]
        x_e = [self.pool_images[i] for i in self._mining_indices(s.loop).tolist()]
        return verification_score(self.clip, self.clip_processor, x_c, x_r, x_e)

    def _select(self) -> int:
        """Index into P_E: the newest with probability r, else a uniformly random older one."""
        rnd = random.Random(int(_rng(self.config, self.state.loop, "circumvent", -1).initial_seed()))
        newest = len(self.embeddings) - 1
        if newest == 0 or rnd.random() < self.config.current_embedding_prob:
            return newest
        return rnd.randrange(newest)

    def circumvent(self) -> None:
        cfg, s, acc = self.config, self.state, self.acc
        unet, tok, te = self.family.denoiser(self.pipe), self.pipe.tokenizer, self.pipe.text_encoder
        if s.selected is None:
            s.selected = self._select()
        c = self.embeddings[s.selected].to(acc.device)
        with torch.no_grad():
            cond_c, cond_0, cond_neg = encode_free_tokens(tok, te, torch.stack([c, 0 * c, -c])).split(1)
        if self.circ_latents is None:
            n_img = cfg.circumvent_images or cfg.circumvent_epochs * cfg.circumvent_batch_size
            seeds = [cfg.seed * 1_000_003 + 7 * s.loop + 1_000 * i + 5 for i in range(n_img)]
            with adapters_disabled(unet), torch.no_grad():  # x is drawn by the original model ε*
                self.circ_latents = torch.stack(self.run.sharded(seeds, lambda sd: _generate(
                    self.pipe, cond_c, self.uncond, sd, cfg, output_type="latent")))
        params = list(self.lora_params.values())
        opt = torch.optim.SGD(params, lr=cfg.circumvent_lr)  # plain SGD: stateless, so resuming needs no state
        per = cfg.circumvent_batch_size // self.run.num_processes
        share = self.run.share(cfg.circumvent_batch_size)
        conds_pol = torch.cat([cond_c, self.anchor, cond_0, cond_neg]).repeat_interleave(per, 0)
        conds_ref = torch.cat([self.anchor, cond_0, cond_neg]).repeat_interleave(per, 0)
        n_terms = 4 + (self.preserve is not None)
        bar = tqdm(range(s.epoch, cfg.circumvent_epochs), desc=f"loop {s.loop}: circumvent", disable=not self.progress)
        unet.train()
        for epoch in bar:
            for group in opt.param_groups:
                group["lr"] = _lr(epoch, cfg.circumvent_lr, cfg.circumvent_lr_decayed, cfg.circumvent_decay_epoch)
            g = _rng(cfg, s.loop, "circumvent", epoch)
            b = cfg.circumvent_batch_size
            idx = (torch.arange(epoch * b, (epoch + 1) * b) % len(self.circ_latents))[share]
            t = torch.randint(0, self.family.num_train_timesteps(self.scheduler), (b,), generator=g)[share].to(acc.device)
            eps = torch.randn((b, *self.circ_latents.shape[1:]), generator=g)[share].to(acc.device)
            x_t = self.family.noisy(self.scheduler, self.circ_latents[idx].to(acc.device), eps, t)
            pol_c, ref_c = conds_pol, conds_ref
            if self.preserve is not None:  # one preserve prompt per step, in turn (extra term, --preserve)
                c_p = self.preserve[epoch % len(self.preserve)][None].to(acc.device).expand(per, -1, -1)
                pol_c, ref_c = torch.cat([conds_pol, c_p]), torch.cat([conds_ref, c_p])
            with acc.autocast():
                pol = unet(x_t.repeat(n_terms, 1, 1, 1), t.repeat(n_terms), pol_c).sample.float().split(per)
                with adapters_disabled(unet), torch.no_grad():
                    ref = unet(x_t.repeat(n_terms - 1, 1, 1, 1), t.repeat(n_terms - 1), ref_c).sample.float().split(per)
            mse = lambda a, b_: ((a - b_) ** 2).mean()  # noqa: E731
            loss = cfg.alpha_c * mse(pol[0], ref[0]) + cfg.alpha_p * (
                mse(pol[1], ref[0]) + mse(pol[2], ref[1]) + mse(pol[3], ref[2]))
            if self.preserve is not None:
                loss = loss + cfg.alpha_p * mse(pol[4], ref[3])
            loss.backward()
            self.run.reduce_mean_(params)
            torch.nn.utils.clip_grad_norm_(params, cfg.circumvent_max_grad_norm)
            opt.step()
            opt.zero_grad(set_to_none=True)
            s.epoch = epoch + 1
            bar.set_postfix(loss=float(loss.detach()))
            self._last_circumvent_loss = float(loss.detach())
            acc.log({"circumvent_loss": self._last_circumvent_loss, "loop": s.loop}, step=s.step + 1)
            self._after_step()
        unet.eval()
        self.circ_latents = None

    # ------------------------------------------------------------------------------------------------ loop --
    def train(self) -> _RunState:
        """Run (or finish) the loop; returns the final state (``history`` has one entry per loop)."""
        cfg, s = self.config, self.state
        while s.stopped is None:
            if s.loop >= cfg.max_loops:
                s.stopped = "max_loops"
                break
            if s.stage == "mine":
                if s.epoch == 0:
                    s.history.append({"loop": s.loop})
                start = time.perf_counter()
                self.mine()
                s.history[-1].update(mining_loss=getattr(self, "_last_mining_loss", None),
                                     mine_s=s.history[-1].get("mine_s", 0) + time.perf_counter() - start)
                s.stage, s.epoch = "verify", 0
            elif s.stage == "verify":
                start = time.perf_counter()
                score = self.verify()
                s.history[-1].update(score=score, verify_s=time.perf_counter() - start)
                logger.info("Dark Miner loop %d: s(c) = %.3f (τ = %.2f)", s.loop, score, cfg.tau)
                if score < cfg.tau:
                    s.stopped = "verification"
                    s.history[-1]["circumvented"] = False
                else:
                    s.stage, s.epoch, s.selected = "circumvent", 0, None
            else:
                start = time.perf_counter()
                self.circumvent()
                s.history[-1].update(circumvented=True, selected=s.selected,
                                     circumvent_loss=getattr(self, "_last_circumvent_loss", None),
                                     circumvent_s=s.history[-1].get("circumvent_s", 0) + time.perf_counter() - start)
                s.loop, s.stage, s.epoch, s.selected = s.loop + 1, "mine", 0, None
            self._after_step(force=True)
        if s.stopped == "max_loops":
            self._checkpoint()
        return s


class DarkMinerUnlearner(Unlearner):
    """Run the Dark Miner loop, fuse the LoRA into the UNet; the LoRA and the mined embeddings are kept."""

    requires = ("single_text_encoder",)
    display_name = "Dark Miner"

    reference_code = "none public; the paper (seed 001, sections 3.2 and 4.1)"

    config_class = DarkMinerConfig
    technique = "mined-embedding circumvention with a value-projection LoRA"
    artifact_kind = "LoRA adapter"  # pytorch_lora_weights.safetensors, beside the fused pipeline
    trained = True

    def __init__(self, config: DarkMinerConfig, pool_images: list | None = None, accelerator=None,
                 output_dir: str | None = None, checkpointing_steps: int | None = None,
                 checkpoints_total_limit: int | None = 2, resume_from_checkpoint: str | None = None,
                 progress: bool = True, callback=None, domain=None):
        super().__init__(config)
        self.kwargs = dict(pool_images=pool_images, accelerator=accelerator, output_dir=output_dir,
                           checkpointing_steps=checkpointing_steps, checkpoints_total_limit=checkpoints_total_limit,
                           progress=progress, callback=callback, domain=domain)
        self.resume_from_checkpoint = resume_from_checkpoint
        self.trainer: DarkMinerTrainer | None = None

    prepared_data = "pool"
    prepared_data_fields = ("concepts", "seed", "pool_prompts", "pool_size", "num_inference_steps", "guidance_scale")

    @classmethod
    def domain_kwargs(cls, domain) -> dict:
        return {"domain": domain}

    @classmethod
    def build_prepared_data(cls, pipeline, config: DarkMinerConfig, accelerator, domain=None, progress: bool = True):
        """P_I, the image pool of the original model, generated sharded over the processes."""
        return generate_pool(pipeline, config, accelerator, progress=progress and accelerator.is_local_main_process)

    @classmethod
    def from_prepared_data(cls, dataset) -> dict:
        return {"pool_images": list(dataset["image"])}

    def _unlearn(self, pipeline) -> list[str]:
        self.trainer = DarkMinerTrainer(pipeline, self.config, **self.kwargs)
        if self.resume_from_checkpoint:
            self.trainer.resume(self.resume_from_checkpoint)
        self.trainer.train()
        family = family_of(pipeline)
        self.lora, edited = fuse_lora_into_unet(family.denoiser(pipeline), family)
        return edited

    def unlearn(self, pipeline):
        result = super().unlearn(pipeline)
        t = self.trainer
        result.extra["darkminer"] = {"loops": t.state.history, "stopped_by": t.state.stopped,
                                     "loops_run": sum(1 for h in t.state.history if h.get("circumvented")),
                                     "mined_embeddings": len(t.embeddings)}
        result.lora_state_dict = self.lora
        if t.embeddings:  # evidence of what was erased, and seeds for attacks
            result.extra_tensors["mined_embeddings.safetensors"] = {"embeddings": torch.stack(t.embeddings)}
        return result


register_method("darkminer", DarkMinerUnlearner)
