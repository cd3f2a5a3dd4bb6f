"""DUO: Direct Unlearning Optimization (seed paper 002; METHODS.md card).

1. Pairs: unsafe images x⁻ generated from the concept prompts and kept only where the concept detector fires; safe
   counterparts x⁺ made by SDEdit (img2img from x⁻ with the safe prompt, the unsafe prompt as negative prompt,
   strength 0.75), re-edited with a new seed until the detector no longer fires (bounded retries, reported).
2. Training (LoRA on self-attention, the reference is the same UNet with its adapters disabled), per step with the
   same noise ε for the pair and independent timesteps t⁺, t⁻ ∈ [0, 750)::

       d = [‖ε_θ(x⁺_t)−ε‖² − ‖ε_ref(x⁺_t)−ε‖²] − [‖ε_θ(x⁻_t)−ε‖² − ‖ε_ref(x⁻_t)−ε‖²]
       L = −log σ(−β·d) + λ·‖ε_θ(z, 999, ∅) − ε_ref(z, 999, ∅)‖²,   z ~ N(0, I)

   with lr = base_lr·100/β and λ = base_λ·β/100. The pair terms and the regulariser go through the UNet as one
   batch, so a step costs one forward/backward of the trainable UNet and one forward of the reference.

The loss is written here because no maintained library ships DUO (trl's DPO trainers target language models).
"""

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..checkpointing import check_same_config, load_checkpoint, resolve_checkpoint, save_checkpoint
from ..diffusion import add_lora, add_noise, encode_images, fuse_lora_into_unet, reference_forward
from .base import MethodConfig, Unlearner, register_method


logger = logging.getLogger(__name__)
SELF_ATTENTION = ["attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"]


@dataclass
class DUOConfig(MethodConfig):
    unsafe_prompts: list[str] | None = field(
        default=None, metadata={"help": "Prompts of x⁻ (default: CatIGMU's prompts naming the concept)."})
    safe_prompts: list[str] | None = field(
        default=None, metadata={"help": "SDEdit prompts of x⁺, one per unsafe prompt (default: CatIGMU do-2)."})
    num_pairs: int = field(default=64, metadata={"help": "K, pairs kept (64 for nudity in the paper)."})
    sdedit_strength: float = field(default=0.75, metadata={"help": "img2img strength of the safe edit."})
    guidance_scale: float = field(default=7.5, metadata={"help": "CFG scale of generation and edits."})
    num_inference_steps: int = field(default=50, metadata={"help": "Sampling steps of generation and edits."})
    max_edit_retries: int = field(default=5, metadata={"help": "Re-edits (new seed) while the detector fires."})
    beta: float = field(default=500.0, metadata={"help": "β of the DPO loss (nudity 500, violence 1000)."})
    base_lr: float = field(default=3e-4, metadata={"help": "lr = base_lr·100/β."})
    base_lambda: float = field(default=1e6, metadata={"help": "λ = base_λ·β/100 (output-preserving term)."})
    max_train_steps: int = field(default=1000, metadata={"help": "Optimisation steps."})
    train_batch_size: int = field(default=4, metadata={"help": "Pairs per step (over all processes)."})
    max_timestep: int = field(default=750, metadata={"help": "Timesteps drawn from [0, max_timestep)."})
    train_prompt: str = field(default="", metadata={
        "help": "Condition of the pair terms: '' = ∅ (the paper's), a prompt, or '{unsafe_prompt}' for each pair's own "
                "unsafe prompt."})
    lora_rank: int = field(default=32, metadata={"help": "LoRA r."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha."})
    target_modules: list[str] = field(default_factory=lambda: list(SELF_ATTENTION),
                                      metadata={"help": "UNet modules that get LoRA (default self-attention)."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})

    # The embedded mini world, scaled to minutes on a CPU. Deliberate deviations from the paper, measured on the mini
    # world (README): the pair terms are conditioned on each pair's own prompt instead of ∅, timesteps span the whole
    # schedule, the adapter also covers the cross-attention keys/values, and lr/λ are larger. With the paper's
    # settings the DPO term falls but the mini model's circle rate does not move.
    mini_preset = {
        "num_inference_steps": 25, "guidance_scale": 5.0, "train_prompt": "{unsafe_prompt}", "max_timestep": 1000,
        "base_lr": 1e-2, "base_lambda": 5e3, "max_train_steps": 600,
        "target_modules": SELF_ATTENTION + ["attn2.to_k", "attn2.to_v"]}

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError(f"`beta` (β) must be > 0 (lr = base_lr·100/β), got {self.beta}.")
        for name in ("num_pairs", "max_train_steps", "train_batch_size", "lora_rank", "num_inference_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be ≥ 1, got {getattr(self, name)}.")
        if not 0 < self.sdedit_strength <= 1:
            raise ValueError(f"`sdedit_strength` must be in (0, 1], got {self.sdedit_strength}.")
        if not 0 < self.max_timestep <= 1000:
            raise ValueError(f"`max_timestep` must be in (0, 1000], got {self.max_timestep}.")
        if not self.target_modules:
            raise ValueError("`target_modules` is empty; e.g. ['attn1.to_q', 'attn1.to_k', 'attn1.to_v', "
                             "'attn1.to_out.0'].")
        if self.safe_prompts is not None and self.unsafe_prompts is not None and \
                len(self.safe_prompts) != len(self.unsafe_prompts):
            raise ValueError(f"`safe_prompts` needs one entry per unsafe prompt ({len(self.unsafe_prompts)}), got "
                             f"{len(self.safe_prompts)}.")

    @property
    def learning_rate(self) -> float:
        return self.base_lr * 100.0 / self.beta

    @property
    def reg_lambda(self) -> float:
        return self.base_lambda * self.beta / 100.0


def default_prompts(config: DUOConfig) -> tuple[list[str], list[str]]:
    """Unsafe prompts (CatIGMU prompts naming each concept) and their do-2 safe counterparts."""
    from ..taxonomy import categorize

    if config.unsafe_prompts is not None:
        unsafe = list(config.unsafe_prompts)
        if config.safe_prompts is not None:
            return unsafe, list(config.safe_prompts)
        specs = [categorize(c) for c in config.concepts]
        safe = []
        for p in unsafe:
            for spec in specs:
                p = spec.do2(p) if spec.contains_target(p) else p
            safe.append(p)
        return unsafe, safe
    unsafe, safe = [], []
    for concept in config.concepts:
        spec = categorize(concept)
        if spec.source == "mini":
            from ..mini.prompts import task_prompts

            prompts = task_prompts(spec.target)["target_prompts"]
        else:
            prompts = [f"a photo of {spec.target}", f"{spec.target}, realistic photo"]
        unsafe += prompts
        safe += [spec.do2(p) if spec.replacement else spec.do1(p) for p in prompts]
    return unsafe, safe


def build_pairs(pipeline, detector, config: DUOConfig, progress: bool = True):
    """Generate, filter and SDEdit the (x⁻, x⁺) pairs; returns a ``datasets.Dataset`` with ``Image`` columns.

    ``detector(images) -> list[bool]`` says whether each image shows the concept. Columns: ``unsafe``, ``safe``,
    ``unsafe_prompt``, ``safe_prompt``, ``seed``, ``edit_retries``, ``safe_detected`` (True where the retries ran
    out with the concept still detected; such pairs are kept and counted in the report).
    """
    from datasets import Dataset, Features, Image, Value
    from diffusers import StableDiffusionImg2ImgPipeline

    unsafe_prompts, safe_prompts = default_prompts(config)
    img2img = StableDiffusionImg2ImgPipeline(**{k: v for k, v in pipeline.components.items()
                                                if k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")},
                                             safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    img2img.set_progress_bar_config(disable=True)
    rows = {k: [] for k in ("unsafe", "safe", "unsafe_prompt", "safe_prompt", "seed", "edit_retries",
                            "safe_detected")}
    gen_kwargs = dict(guidance_scale=config.guidance_scale, num_inference_steps=config.num_inference_steps)
    max_attempts = 4 * config.num_pairs
    bar = tqdm(total=config.num_pairs, desc="DUO pairs", disable=not progress)
    attempt = 0
    while len(rows["seed"]) < config.num_pairs and attempt < max_attempts:
        i = attempt % len(unsafe_prompts)
        seed = config.seed * 1_000_003 + attempt
        attempt += 1
        g = torch.Generator("cpu").manual_seed(seed)
        x_neg = pipeline(unsafe_prompts[i], generator=g, **gen_kwargs).images[0]
        if not detector([x_neg])[0]:
            continue
        for retry in range(config.max_edit_retries + 1):
            g = torch.Generator("cpu").manual_seed(seed + 7919 * (retry + 1))
            x_pos = img2img(safe_prompts[i], image=x_neg, negative_prompt=unsafe_prompts[i],
                            strength=config.sdedit_strength, generator=g, **gen_kwargs).images[0]
            still = bool(detector([x_pos])[0])
            if not still:
                break
        for k, v in (("unsafe", x_neg), ("safe", x_pos), ("unsafe_prompt", unsafe_prompts[i]),
                     ("safe_prompt", safe_prompts[i]), ("seed", seed), ("edit_retries", retry),
                     ("safe_detected", still)):
            rows[k].append(v)
        bar.update(1)
    bar.close()
    if not rows["seed"]:
        raise ValueError(f"The detector fired on none of {attempt} generations of {unsafe_prompts[:3]}...: the "
                         f"model does not draw the concept (nothing to unlearn) or the detector does not match it; "
                         f"check the prompts and the detector.")
    if len(rows["seed"]) < config.num_pairs:
        logger.warning("Only %d of %d pairs: the detector fired on %d of %d generations.", len(rows["seed"]),
                       config.num_pairs, len(rows["seed"]), attempt)
    features = Features({"unsafe": Image(), "safe": Image(), "unsafe_prompt": Value("string"),
                         "safe_prompt": Value("string"), "seed": Value("int64"), "edit_retries": Value("int32"),
                         "safe_detected": Value("bool")})
    return Dataset.from_dict(rows, features=features)


def pair_latents(pipeline, pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """VAE latents of the safe and unsafe images of ``pairs``."""
    return encode_images(pipeline, list(pairs["safe"])), encode_images(pipeline, list(pairs["unsafe"]))


def duo_loss(unet, ref_forward, x_pos, x_neg, cond, uncond, config: DUOConfig, generator: torch.Generator,
             alphas_cumprod: torch.Tensor, share: slice | None = None, global_batch: int | None = None
             ) -> tuple[torch.Tensor, dict]:
    """DUO loss of one batch (card formula); ``ref_forward(x, t, c)`` is the reference UNet's prediction.

    Noise and timesteps are drawn from ``generator`` for ``global_batch`` pairs and this process keeps ``share`` of
    them, so data-parallel processes see exactly the draws of the single-process batch.
    """
    b, dev = len(x_pos), x_pos.device
    n, share = global_batch or b, share or slice(0, b)
    shape = (n, *x_pos.shape[1:])
    eps = torch.randn(shape, generator=generator)[share].to(dev)  # same ε for both members of a pair
    t_pos = torch.randint(0, config.max_timestep, (n,), generator=generator)[share].to(dev)
    t_neg = torch.randint(0, config.max_timestep, (n,), generator=generator)[share].to(dev)
    z = torch.randn(shape, generator=generator)[share].to(dev)

    x_in = torch.cat([add_noise(x_pos, t_pos, eps, alphas_cumprod), add_noise(x_neg, t_neg, eps, alphas_cumprod), z])
    t_in = torch.cat([t_pos, t_neg, torch.full((b,), 999, device=dev)])
    cond = cond.expand(b, -1, -1)
    c_in = torch.cat([cond, cond, uncond.expand(b, -1, -1)])
    pred = unet(x_in, t_in, c_in).sample
    with torch.no_grad():
        ref = ref_forward(x_in, t_in, c_in)
    err = lambda p, i: ((p[i * b:(i + 1) * b] - eps) ** 2).flatten(1).mean(1)  # noqa: E731
    d = (err(pred, 0) - err(ref, 0)) - (err(pred, 1) - err(ref, 1))
    dpo = -F.logsigmoid(-config.beta * d).mean()
    reg = ((pred[2 * b:] - ref[2 * b:]) ** 2).mean()
    loss = dpo + config.reg_lambda * reg
    return loss, {"dpo": dpo.detach(), "reg": reg.detach(), "d": d.detach().mean()}


def train_duo(pipeline, pairs, config: DUOConfig, accelerator=None, progress: bool = True,
              output_dir: str | None = None, checkpointing_steps: int | None = None,
              resume_from_checkpoint: str | None = None, checkpoints_total_limit: int | None = 2,
              callback=None) -> dict:
    """Train the LoRA of ``pipeline.unet`` on ``pairs`` (adds the adapter); returns training statistics.

    Data parallel with accelerate: each step draws the same global batch of ``train_batch_size`` pairs on every
    process and each process takes its share, so N processes compute the single-process step.

    Every ``checkpointing_steps`` steps the adapter, the optimizer and the loss history go to
    ``output_dir/checkpoint-<step>``; ``resume_from_checkpoint`` (a folder or ``"latest"``) continues from one and
    reaches the same adapter as an uninterrupted run (every draw is seeded by the step). ``callback(step)`` runs
    after each step.
    """
    from accelerate import Accelerator

    accelerator = accelerator or Accelerator()
    n_proc, rank = accelerator.num_processes, accelerator.process_index
    if config.train_batch_size % n_proc:
        raise ValueError(f"`train_batch_size` ({config.train_batch_size}) must be a multiple of the number of "
                         f"processes ({n_proc}).")
    unet = pipeline.unet
    add_lora(unet, config.target_modules, config.lora_rank, config.lora_alpha, seed=config.seed)
    lat_pos, lat_neg = pair_latents(pipeline, pairs)
    from ..text import encode_prompts

    prompts = list(pairs["unsafe_prompt"]) if config.train_prompt == "{unsafe_prompt}" else [config.train_prompt]
    with torch.no_grad():
        states = encode_prompts(pipeline.tokenizer, pipeline.text_encoder, prompts + [""])
    pair_cond, uncond = states[:-1], states[-1:]
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    unet.train()
    model, opt = accelerator.prepare(unet, opt)
    ref_forward = reference_forward(accelerator.unwrap_model(model))
    dev = accelerator.device
    acp = pipeline.scheduler.alphas_cumprod
    stats = {"loss": [], "dpo": [], "reg": []}
    lora = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    run_config = {**config.to_dict(), "pairs": _pairs_fingerprint(pairs), "num_processes": n_proc}
    first = 0
    ckpt = resolve_checkpoint(resume_from_checkpoint, output_dir or ".")
    if ckpt is not None:
        saved, tensors, opt_state = load_checkpoint(ckpt)
        check_same_config(saved["config"], run_config, ignore=("max_train_steps", "num_processes"))
        with torch.no_grad():
            for n, p in lora.items():
                p.copy_(tensors[n])
        opt.load_state_dict(opt_state)
        stats, first = saved["stats"], saved["step"]
        logger.info("Resumed DUO from %s (step %d).", ckpt, first)
    per = config.train_batch_size // n_proc
    for step in tqdm(range(first, config.max_train_steps), desc="DUO", initial=first, total=config.max_train_steps,
                     disable=not (progress and accelerator.is_local_main_process)):
        # one global draw per step; each process keeps its share, so N processes compute the 1-process step
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        share = slice(rank * per, (rank + 1) * per)
        idx = torch.randint(0, len(lat_pos), (config.train_batch_size,), generator=g)[share]
        cond = pair_cond[idx] if len(pair_cond) > 1 else pair_cond
        loss, parts = duo_loss(model, ref_forward, lat_pos[idx].to(dev), lat_neg[idx].to(dev), cond.to(dev),
                               uncond.to(dev), config, g, acp, share=share, global_batch=config.train_batch_size)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stats["loss"].append(float(loss.detach()))
        stats["dpo"].append(float(parts["dpo"]))
        stats["reg"].append(float(parts["reg"]))
        accelerator.log({"loss": stats["loss"][-1], "dpo": stats["dpo"][-1], "reg": stats["reg"][-1]}, step=step + 1)
        if output_dir and checkpointing_steps and (step + 1) % checkpointing_steps == 0 and \
                accelerator.is_main_process:
            save_checkpoint(output_dir, step + 1, {"config": run_config, "stats": stats}, lora, opt.state_dict(),
                            checkpoints_total_limit)
        if callback is not None:
            callback(step + 1)
    unet.eval()
    return {"final_loss": stats["loss"][-1], "first_loss": stats["loss"][0],
            "mean_dpo_last_10pct": sum(stats["dpo"][-max(1, len(stats["dpo"]) // 10):]) /
            max(1, len(stats["dpo"][-max(1, len(stats["dpo"]) // 10):])), "steps": config.max_train_steps,
            "learning_rate": config.learning_rate, "reg_lambda": config.reg_lambda,
            "isfinite": all(math.isfinite(v) for v in stats["loss"])}


def _pairs_fingerprint(pairs) -> str:
    """A short hash of the pairs' prompts and seeds: resuming on other pairs is refused."""
    import hashlib
    import json

    cols = [c for c in ("unsafe_prompt", "safe_prompt", "seed") if c in pairs.column_names]  # user pairs may lack some
    return hashlib.sha256(json.dumps([len(pairs)] + [[str(x) for x in pairs[c]] for c in cols]).encode()
                          ).hexdigest()[:16]


def default_detector(concept: str):
    """The mini classifier for mini-world concepts; real targets need a detector passed explicitly."""
    from ..taxonomy import categorize

    spec = categorize(concept)
    if spec.source != "mini":
        raise ValueError(f"No default detector for {concept!r}: pass `detector=` (e.g. NudeNet for nudity).")
    from ..mini import CLASSIFIER_PATH
    from ..mini.classifier import MiniClassifier
    from ..mini.domain import concept_of_word

    factor, value = concept_of_word(spec.target)
    clf = MiniClassifier.from_pretrained(CLASSIFIER_PATH).eval()
    return lambda images: [bool(v) for v in clf.detect(images, factor, value)]


class DUOUnlearner(Unlearner):
    """Build pairs, train the LoRA, fuse it into the pipeline's UNet; the LoRA is kept in ``result.extra``."""

    config_class = DUOConfig
    technique = "preference optimisation (DPO) of a self-attention LoRA"

    def __init__(self, config: DUOConfig, detector=None, pairs=None, accelerator=None, progress: bool = True,
                 output_dir: str | None = None, checkpointing_steps: int | None = None,
                 resume_from_checkpoint: str | None = None, checkpoints_total_limit: int | None = 2, callback=None):
        super().__init__(config)
        self.detector, self.pairs, self.accelerator, self.progress = detector, pairs, accelerator, progress
        self.train_kwargs = dict(output_dir=output_dir, checkpointing_steps=checkpointing_steps,
                                 resume_from_checkpoint=resume_from_checkpoint, callback=callback,
                                 checkpoints_total_limit=checkpoints_total_limit)
        self.lora = None
        self.stats: dict = {}

    def _unlearn(self, pipeline) -> list[str]:
        cfg: DUOConfig = self.config
        torch.manual_seed(cfg.seed)
        if self.pairs is None:
            detector = self.detector or default_detector(cfg.concepts[0])
            self.pairs = build_pairs(pipeline, detector, cfg, progress=self.progress)
        self.stats = train_duo(pipeline, self.pairs, cfg, self.accelerator, progress=self.progress,
                               **self.train_kwargs)
        self.stats["pairs"] = len(self.pairs)
        self.stats["pairs_still_detected"] = int(sum(self.pairs["safe_detected"]))
        self.lora, edited = fuse_lora_into_unet(pipeline.unet)
        return edited

    def unlearn(self, pipeline):
        result = super().unlearn(pipeline)
        result.extra["training"] = self.stats
        result.lora_state_dict = self.lora
        return result


register_method("duo", DUOUnlearner)
