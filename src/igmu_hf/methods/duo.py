"""DUO: Direct Unlearning Optimization (seed paper 002, arXiv 2407.21035).

1. Pairs: unsafe images x⁻ generated from the concept prompts and kept only where the concept detector fires; safe
   counterparts x⁺ made by SDEdit (img2img from x⁻ with the safe prompt, the unsafe prompt as negative prompt,
   strength 0.75), re-edited with a new seed until the detector no longer fires (bounded retries, reported).
2. Training (LoRA on self-attention, the reference is the same UNet with its adapters disabled), per step with the
   same noise ε for the pair and independent timesteps t⁺, t⁻ ∈ [0, 750)::

       d = [‖ε_θ(x⁺_t)−ε‖² − ‖ε_ref(x⁺_t)−ε‖²] − [‖ε_θ(x⁻_t)−ε‖² − ‖ε_ref(x⁻_t)−ε‖²]
       L = −log σ(−β·d) + λ·‖ε_θ(z, 999, ∅) − ε_ref(z, 999, ∅)‖²,   z ~ N(0, I)

   with lr = base_lr·100/β and λ = base_λ·β/100. The pair terms and the regulariser go through the UNet as one
   batch, so a step costs one forward/backward of the trainable UNet and one forward of the reference.

Every model family runs it (:mod:`igmu_hf.families`): the errors compare the denoiser's output with the family's
training target (ε for SD1.x, v for SD2.x v-prediction, ε − x₀ for SD3's rectified flow) on the family's noisy
input. SD3 follows the authors' own SD3 script (naver-ai/DUO ``train/unlearn-sd3.py``): LoRA on the joint
attention's ``to_q/k/v/out.0``, t drawn uniformly over the first ``max_timestep`` of the (descending, shifted)
flow-matching schedule, loss weighting ``logit_normal`` (diffusers' ``compute_loss_weighting_for_sd3``: weight 1),
the prior term at the schedule's last timestep.

The loss is written here because no maintained library ships DUO (trl's DPO trainers target language models).
"""

import logging
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..diffusion import add_lora, fuse_lora_into_unet, reference_forward
from ..families import FAMILIES, Conditioning, as_conditioning, family_of
from .base import MethodConfig, Unlearner, register_method


logger = logging.getLogger(__name__)
SELF_ATTENTION = FAMILIES["sd1"].modules("self")  # attn1.to_q/k/v/out.0 of SD1.x/SD2.x/SDXL UNets


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
    target_modules: list[str] | None = field(default=None, metadata={
        "help": "Denoiser modules that get LoRA (default: the family's self-attention, attn1.to_q/k/v/out.0 of a "
                "UNet; SD3: the joint attention's to_q/k/v/out.0, as DUO's SD3 script)."})
    pair_filter: str = field(default="detector", metadata={
        "help": "'detector': keep x⁻ only where the concept detector fires and re-edit x⁺ while it fires (the "
                "paper's); 'none': keep every generated pair unfiltered (models no detector reads, e.g. random "
                "weights; recorded in the card)."})
    preserve_prompts: list[str] = field(default_factory=list, metadata={
        "help": "Extra conditions of the output-preserving term: besides ∅ (the paper's only one), the prior term's "
                "rows cycle over these prompts (igmu --preserve). Empty = the paper's."})
    weighting_scheme: str = field(default="logit_normal", metadata={
        "help": "Flow-matching families (SD3) only: diffusers' compute_loss_weighting_for_sd3 scheme of the pair "
                "errors (DUO's SD3 script: 'logit_normal', i.e. weight 1)."})
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})

    # The embedded mini world, scaled to minutes on a CPU. Deliberate deviations from the paper, measured on the mini
    # world (README): the pair terms are conditioned on each pair's own prompt instead of ∅, timesteps span the whole
    # schedule, the adapter also covers the cross-attention keys/values, and lr/λ are larger. With the paper's
    # settings the DPO term falls but the mini model's circle rate does not move.
    mini_preset = {  # the mini world's sampling settings (25 steps, CFG 5) come from its Domain
        "train_prompt": "{unsafe_prompt}", "max_timestep": 1000,
        "base_lr": 1e-2, "base_lambda": 5e3, "max_train_steps": 600,
        "target_modules": SELF_ATTENTION + ["attn2.to_k", "attn2.to_v"]}
    preserve_field = "preserve_prompts"

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
        if self.target_modules is not None and not self.target_modules:
            raise ValueError("`target_modules` is empty; e.g. ['attn1.to_q', 'attn1.to_k', 'attn1.to_v', "
                             "'attn1.to_out.0'], or None for the model family's self-attention.")
        if self.pair_filter not in ("detector", "none"):
            raise ValueError(f"`pair_filter` must be 'detector' or 'none', got {self.pair_filter!r}.")
        if isinstance(self.preserve_prompts, str):
            self.preserve_prompts = [self.preserve_prompts]
        if any(not isinstance(p, str) or not p.strip() for p in self.preserve_prompts):
            raise ValueError(f"`preserve_prompts` holds an empty prompt: {self.preserve_prompts!r}.")
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


def default_prompts(config: DUOConfig, domain=None) -> tuple[list[str], list[str]]:
    """Unsafe prompts (the concept world's prompts naming each concept) and their CatIGMU do-2 (or do-1) safe
    counterparts; given unsafe prompts without safe ones get every concept replaced."""
    from ..domains import domain_of_concept, get_domain
    from ..taxonomy import categorize

    if config.unsafe_prompts is not None and config.safe_prompts is not None:
        return list(config.unsafe_prompts), list(config.safe_prompts)
    specs = [categorize(c, domain=domain) for c in config.concepts]
    if config.unsafe_prompts is not None:
        unsafe = list(config.unsafe_prompts)
        safe = []
        for p in unsafe:
            for spec in specs:
                p = spec.do2(p) if spec.contains_target(p) else p
            safe.append(p)
        return unsafe, safe
    unsafe, safe = [], []
    for concept, spec in zip(config.concepts, specs):
        world = get_domain(domain) if domain is not None else domain_of_concept(concept)
        prompts = world.target_prompts(spec)
        unsafe += prompts
        safe += [spec.do2(p) if spec.replacement else spec.do1(p) for p in prompts]
    return unsafe, safe


def build_pairs(pipeline, detector, config: DUOConfig, progress: bool = True, domain=None):
    """Generate, filter and SDEdit the (x⁻, x⁺) pairs; returns a ``datasets.Dataset`` with ``Image`` columns.

    ``detector(images) -> list[bool]`` says whether each image shows the concept (``None`` with
    ``pair_filter='none'``: every pair is kept after one edit). Columns: ``unsafe``, ``safe``, ``unsafe_prompt``,
    ``safe_prompt``, ``seed``, ``edit_retries``, ``safe_detected`` (True where the retries ran out with the concept
    still detected; such pairs are kept and counted in the report). The img2img pipeline is the family's
    (``AutoPipelineForImage2Image.from_pipe``), over the same components.
    """
    from datasets import Dataset, Features, Image, Value

    if config.pair_filter == "none":
        detector = None
    elif detector is None:
        raise ValueError("`detector` is None but `pair_filter` is 'detector'; pass a detector or set "
                         "pair_filter='none'.")
    unsafe_prompts, safe_prompts = default_prompts(config, domain)
    img2img = family_of(pipeline).img2img(pipeline)
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
        if detector is not None and not detector([x_neg])[0]:
            continue
        for retry in range(config.max_edit_retries + 1):
            g = torch.Generator("cpu").manual_seed(seed + 7919 * (retry + 1))
            x_pos = img2img(safe_prompts[i], image=x_neg, negative_prompt=unsafe_prompts[i],
                            strength=config.sdedit_strength, generator=g, **gen_kwargs).images[0]
            still = False if detector is None else bool(detector([x_pos])[0])
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
    """VAE latents of the safe and unsafe images of ``pairs``, as the family's denoiser sees them."""
    family = family_of(pipeline)
    return family.latents(pipeline, list(pairs["safe"])), family.latents(pipeline, list(pairs["unsafe"]))


def duo_loss(unet, ref_forward, x_pos, x_neg, cond, uncond, config: DUOConfig, generator: torch.Generator,
             scheduler, share: slice | None = None, global_batch: int | None = None, family=None
             ) -> tuple[torch.Tensor, dict]:
    """DUO loss of one batch (card formula); ``ref_forward(x, t, c)`` is the reference denoiser's prediction.

    ``cond`` (one row or one per pair) and ``uncond`` (one row or one per pair: the prior term's conditions) are
    :class:`~igmu_hf.families.Conditioning` or bare states; ``scheduler`` the pipeline's (its training schedule);
    ``family`` the denoiser's (default SD1.x). Noise and timesteps are drawn from ``generator`` for
    ``global_batch`` pairs and this process keeps ``share`` of them, so data-parallel processes see exactly the
    draws of the single-process batch.
    """
    family = family or FAMILIES["sd1"]
    b, dev = len(x_pos), x_pos.device
    n, share = global_batch or b, share or slice(0, b)
    shape = (n, *x_pos.shape[1:])
    eps = torch.randn(shape, generator=generator)[share].to(dev)  # same ε for both members of a pair
    t_pos = family.draw_timesteps(scheduler, n, generator, config.max_timestep)[share].to(dev)
    t_neg = family.draw_timesteps(scheduler, n, generator, config.max_timestep)[share].to(dev)
    z = torch.randn(shape, generator=generator)[share].to(dev)

    x_in = torch.cat([family.noisy(scheduler, x_pos, eps, t_pos), family.noisy(scheduler, x_neg, eps, t_neg), z])
    t_in = torch.cat([t_pos, t_neg, torch.full((b,), family.prior_timestep(scheduler), device=dev,
                                               dtype=t_pos.dtype)])
    cond = as_conditioning(cond).expand(b)
    c_in = Conditioning.cat([cond, cond, as_conditioning(uncond).expand(b)])
    pred = family.predict(unet, x_in, t_in, c_in)
    with torch.no_grad():
        ref = ref_forward(x_in, t_in, c_in)
    targets = (family.target(scheduler, x_pos, eps, t_pos), family.target(scheduler, x_neg, eps, t_neg))
    weights = [_weight(family, scheduler, t, config).to(dev) for t in (t_pos, t_neg)]

    def err(p, i):
        w = weights[i].view(-1, *([1] * (p.dim() - 1)))
        return (w * (p[i * b:(i + 1) * b] - targets[i]) ** 2).flatten(1).mean(1)

    d = (err(pred, 0) - err(ref, 0)) - (err(pred, 1) - err(ref, 1))
    dpo = -F.logsigmoid(-config.beta * d).mean()
    reg = ((pred[2 * b:] - ref[2 * b:]) ** 2).mean()
    loss = dpo + config.reg_lambda * reg
    return loss, {"dpo": dpo.detach(), "reg": reg.detach(), "d": d.detach().mean()}


def _weight(family, scheduler, t, config: DUOConfig) -> torch.Tensor:
    if family.prediction_type(scheduler) == "flow":
        return family.loss_weight(scheduler, t, config.weighting_scheme)
    return family.loss_weight(scheduler, t)


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
    from ..training import TrainingRun

    family = family_of(pipeline)
    unet = family.denoiser(pipeline)
    run_config = {**config.to_dict(), "pairs": _pairs_fingerprint(pairs), "family": family.name}
    run = TrainingRun(run_config, accelerator, output_dir, checkpointing_steps, checkpoints_total_limit,
                      resume_from_checkpoint, progress, callback, resumable_changes=("max_train_steps",))
    run.check_divisible("train_batch_size", config.train_batch_size)
    add_lora(unet, config.target_modules or family.modules("self"), config.lora_rank, config.lora_alpha,
             seed=config.seed)
    lat_pos, lat_neg = pair_latents(pipeline, pairs)
    if config.train_prompt == "{unsafe_prompt}" and "unsafe_prompt" not in pairs.column_names:
        raise ValueError("`train_prompt` '{unsafe_prompt}' needs an `unsafe_prompt` column in the pairs dataset; add "
                         "it or use train_prompt ''.")
    prompts = list(pairs["unsafe_prompt"]) if config.train_prompt == "{unsafe_prompt}" else [config.train_prompt]
    states = family.encode(pipeline, prompts + [""] + list(config.preserve_prompts))
    pair_cond, prior_conds = states[:len(prompts)], states[len(prompts):]  # prior: ∅, then the preserve prompts
    scheduler = family.training_scheduler(pipeline)
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    unet.train()
    accelerator = run.accelerator
    model, opt = accelerator.prepare(unet, opt)
    ref_forward = reference_forward(accelerator.unwrap_model(model), family)
    dev = run.device
    stats = {"loss": [], "dpo": [], "reg": []}
    lora = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    stats, first = run.resume_training(lora, opt, "stats", stats)
    for step in run.steps(first, config.max_train_steps, "DUO"):
        # one global draw per step; each process keeps its share, so N processes compute the 1-process step
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        share = run.share(config.train_batch_size)
        idx = torch.randint(0, len(lat_pos), (config.train_batch_size,), generator=g)[share]
        cond = pair_cond[idx] if len(pair_cond) > 1 else pair_cond
        # the prior term's rows: ∅ alone (the paper's), or ∅ and the preserve prompts in turn over global rows
        rows = (step * config.train_batch_size + torch.arange(config.train_batch_size)[share]) % len(prior_conds)
        prior = prior_conds[:1] if len(prior_conds) == 1 else prior_conds[rows]
        loss, parts = duo_loss(model, ref_forward, lat_pos[idx].to(dev), lat_neg[idx].to(dev), cond.to(dev),
                               prior.to(dev), config, g, scheduler, share=share,
                               global_batch=config.train_batch_size, family=family)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        stats["loss"].append(float(loss.detach()))
        stats["dpo"].append(float(parts["dpo"]))
        stats["reg"].append(float(parts["reg"]))
        accelerator.log({"loss": stats["loss"][-1], "dpo": stats["dpo"][-1], "reg": stats["reg"][-1]}, step=step + 1)
        run.checkpoint(step + 1, {"stats": stats}, lora, opt.state_dict())
        run.after_step(step + 1)
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


def default_detector(concepts, domain=None):
    """The concept world's detector of *any* of ``concepts`` (the mini classifier on mini concepts, NudeNet for
    nudity); other real targets need ``detector=`` or ``pair_filter='none'``."""
    from ..domains import domain_of_concept, get_domain

    concepts = [concepts] if isinstance(concepts, str) else list(concepts)
    world = get_domain(domain) if domain is not None else domain_of_concept(concepts[0])
    return world.concept_detector(concepts)


class DUOUnlearner(Unlearner):
    """Build pairs, train the LoRA, fuse it into the pipeline's UNet; the LoRA is kept in ``result.extra``."""

    reference_code = "naver-ai/DUO: train/unlearn-sd3.py (read for facts); SD1.x after the paper (seed 002)"
    deviations = ("The output-preserving prior term draws its own noise (the authors' code reuses the pair's ε).",
                  "pair_filter='none' keeps every generated pair unfiltered where no detector reads the model "
                  "(recorded in the run); the paper filters with a detector.")

    config_class = DUOConfig
    technique = "preference optimisation (DPO) of a self-attention LoRA"
    artifact_kind = "LoRA adapter"  # pytorch_lora_weights.safetensors, beside the fused pipeline
    trained = True

    def __init__(self, config: DUOConfig, detector=None, pairs=None, accelerator=None, progress: bool = True,
                 output_dir: str | None = None, checkpointing_steps: int | None = None,
                 resume_from_checkpoint: str | None = None, checkpoints_total_limit: int | None = 2, callback=None,
                 domain=None, pairs_built_by_method: bool = False):
        super().__init__(config)
        self.detector, self.pairs, self.accelerator, self.progress = detector, pairs, accelerator, progress
        self.domain = domain
        self.pairs_built_by_method = pairs_built_by_method  # prepared by build_prepared_data (the config's filter)
        self.train_kwargs = dict(output_dir=output_dir, checkpointing_steps=checkpointing_steps,
                                 resume_from_checkpoint=resume_from_checkpoint, callback=callback,
                                 checkpoints_total_limit=checkpoints_total_limit)
        self.lora = None
        self.stats: dict = {}

    prepared_data = "pairs"
    prepared_data_fields = ("concepts", "seed", "unsafe_prompts", "safe_prompts", "num_pairs", "sdedit_strength",
                            "guidance_scale", "num_inference_steps", "max_edit_retries", "pair_filter")

    @classmethod
    def domain_kwargs(cls, domain) -> dict:
        return {"domain": domain}

    @classmethod
    def build_prepared_data(cls, pipeline, config: DUOConfig, accelerator, domain=None, progress: bool = True):
        """The (x⁻, x⁺) pairs, built on the main process (the others wait for them)."""
        if not accelerator.is_main_process:
            return None
        detector = default_detector(config.concepts, domain) if config.pair_filter == "detector" else None
        return build_pairs(pipeline, detector, config, progress=progress, domain=domain)

    @classmethod
    def from_prepared_data(cls, dataset) -> dict:
        return {"pairs": dataset, "pairs_built_by_method": True}

    def _unlearn(self, pipeline) -> list[str]:
        cfg: DUOConfig = self.config
        from ..seeding import seeded

        given = self.pairs is not None and not self.pairs_built_by_method
        with seeded(cfg.seed):  # the run is seeded; the caller's random state is left as it was
            if self.pairs is None:
                detector = None
                if cfg.pair_filter == "detector":
                    detector = self.detector or default_detector(cfg.concepts, self.domain)
                self.pairs = build_pairs(pipeline, detector, cfg, progress=self.progress, domain=self.domain)
            self.stats = train_duo(pipeline, self.pairs, cfg, self.accelerator, progress=self.progress,
                                   **self.train_kwargs)
        self.stats["pairs"] = len(self.pairs)
        if "safe_detected" in self.pairs.column_names:
            self.stats["pairs_still_detected"] = int(sum(self.pairs["safe_detected"]))
        self.stats["pair_filter"] = "given pairs" if given else cfg.pair_filter
        family = family_of(pipeline)
        self.lora, edited = fuse_lora_into_unet(family.denoiser(pipeline), family)
        return edited

    def unlearn(self, pipeline):
        result = super().unlearn(pipeline)
        result.extra["training"] = self.stats
        result.lora_state_dict = self.lora
        return result


register_method("duo", DUOUnlearner)
