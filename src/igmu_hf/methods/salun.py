"""SalUn: Saliency-based unlearning (Fan et al., ICLR 2024), for Stable Diffusion.

Facts from the authors' code (``OPTML-Group/Unlearn-Saliency`` ac880a2, ``SD/train-scripts/generate_mask.py``,
``random_label.py``, ``nsfw_removal.py``; the SD README's class-wise command ``random_label.py --train_method full
--alpha 0.5 --lr 1e-5 --epochs 5``, the defaults here; its nudity command keeps ``nsfw_removal.py``'s α 0.1, 1 epoch):

1. **Saliency mask.** One pass over the forget set (images x_f of the concept with their captions c_f): at
   t ~ U[0, 1000), x_t = noisy x_f and::

       g += ∇_θ −‖ε − [(1 + s)·ε_θ(x_t, c_f) − s·ε_θ(x_t, ∅)]‖²        (s = 7.5)

   then the mask m keeps the ``mask_ratio`` (50 %) of UNet weights with the largest |g|, one threshold over all.
2. **Masked training**, ``epochs`` passes over the forget set (batch 8), each step::

       L = ‖ε_θ(x_t, c_f) − sg(ε_θ(x_t, c_p))‖²  +  α·‖ε_θ(x_r,t, c_r) − ε‖²

   c_p a pseudo caption (another concept: the authors' next class, "a photo of a person wearing clothes" for
   nudity), (x_r, c_r) the retain set's images and captions; the gradient is multiplied by m before Adam (lr 1e-5).

Here the forget images are the original model's images of the concept's captions, the pseudo captions CatIGMU's
interventions on them (as CA's anchors: the style removed, an object replaced), and the retain set the original
model's images of CatIGMU's preserve prompts.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..families import Conditioning, family_of
from .base import GeneratedImagesUnlearner, MethodConfig, register_method
from .esd import TRAIN_METHODS, esd_parameter_names


@dataclass
class SalUnConfig(MethodConfig):
    prompts: list[str] = field(default_factory=list, metadata={
        "help": "Captions c_f of the forget images (default: the concept world's prompts of the concept)."})
    pseudo_concept: str | None = field(default=None, metadata={
        "help": "What the pseudo captions c_p put in the concept's place (default: none for CatIGMU Style targets, "
                "whose pseudo captions drop the style, CatIGMU's replacement otherwise)."})
    retain_prompts: list[str] = field(default_factory=list, metadata={
        "help": "Captions of the retain set (default: CatIGMU's preserve prompts of the target)."})
    num_images: int = field(default=200, metadata={"help": "Forget images (and as many retain images)."})
    mask_ratio: float = field(default=0.5, metadata={"help": "Share of the trained weights the saliency mask keeps."})
    mask_guidance: float = field(default=7.5, metadata={"help": "s of the mask's guided prediction."})
    train_method: str = field(default="full", metadata={
        "help": "Weights the mask is over and trained: 'full' (the README's), 'xattn', 'noxattn', 'selfattn'."})
    alpha: float = field(default=0.5, metadata={"help": "α, the weight of the retain loss."})
    learning_rate: float = field(default=1e-5, metadata={"help": "Adam learning rate."})
    num_train_epochs: int = field(default=5, metadata={"help": "Passes over the forget set."})
    train_batch_size: int = field(default=8, metadata={
        "help": "Forget (and retain) images per step over all processes; a multiple of the process count."})
    num_inference_steps: int = field(default=50, metadata={"help": "Steps of the generated images."})
    guidance_scale: float = field(default=7.5, metadata={"help": "Guidance of the generated images."})

    preserve_field = "retain_prompts"
    preserve_by_default = True
    # the best of the settings measured on the mini world (README, "Baselines II"): lr 5e-5 over 10 epochs of 24
    # images (1e-4: circle 0.04 but house -0.13; the paper's 1e-5: 0.96)
    mini_preset = {"num_images": 24, "num_train_epochs": 10, "learning_rate": 5e-5}

    def __post_init__(self):
        super().__post_init__()
        for name in ("prompts", "retain_prompts"):
            if isinstance(getattr(self, name), str):
                setattr(self, name, [getattr(self, name)])
        if self.train_method not in TRAIN_METHODS:
            raise ValueError(f"`train_method` must be one of {TRAIN_METHODS}, got {self.train_method!r}.")
        if not 0 < self.mask_ratio <= 1:
            raise ValueError(f"`mask_ratio` must be in (0, 1] (the share of weights trained), got {self.mask_ratio}.")
        if self.alpha > 0 and not self.retain_prompts:
            raise ValueError("`retain_prompts` is empty but `alpha` > 0; give retain prompts (--preserve) or set "
                             "alpha 0.")
        if not self.learning_rate > 0 or min(self.num_images, self.num_train_epochs, self.train_batch_size) < 1:
            raise ValueError("`learning_rate` must be > 0 and `num_images`, `num_train_epochs`, `train_batch_size` "
                             f"≥ 1; got {self.learning_rate}, {self.num_images}, {self.num_train_epochs}, "
                             f"{self.train_batch_size}.")


def saliency_mask(gradients: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """1 where |g| is among the top ``ratio`` of all entries (one threshold over every tensor), else 0."""
    flat = torch.cat([g.abs().flatten() for g in gradients.values()])
    keep = max(1, int(round(ratio * flat.numel())))
    threshold = torch.topk(flat, keep, sorted=True).values[-1]
    return {n: (g.abs() >= threshold).to(g.dtype) for n, g in gradients.items()}


def guided_prediction(e_c: torch.Tensor, e_0: torch.Tensor, scale: float) -> torch.Tensor:
    """(1 + s)·ε(c) − s·ε(∅), the prediction SalUn's saliency loss compares with the noise."""
    return (1 + scale) * e_c - scale * e_0


class SalUnUnlearner(GeneratedImagesUnlearner):
    """Saliency-masked fine-tuning (see module docstring); the result is a fused pipeline folder."""

    requires = ("ddpm_unet",)
    display_name = "SalUn"
    reference_code = ("OPTML-Group/Unlearn-Saliency@ac880a2: SD/train-scripts/generate_mask.py, random_label.py, "
                      "nsfw_removal.py")
    deviations = ("Forget images generated by the original model from the concept's captions and pseudo captions "
                  "from CatIGMU's interventions (the paper: a generated nudity set and 'a photo of a person wearing "
                  "clothes'; the next class for objects).",
                  "The retain set is the original model's images of CatIGMU's preserve prompts (the paper: images of "
                  "the other classes, or clothed people).",
                  "The mask's timesteps, the batches and the noise are seeded by (seed, step), so N processes and a "
                  "resumed run repeat the 1-process, uninterrupted run; latents are VAE posterior means.",
                  "Forget batches are drawn at random from the whole forget set each step; the authors' paper-era "
                  "loops (random_label.py, nsfw_removal.py at ac880a2) call next(iter(forget_dl)) on an unshuffled "
                  "loader, so every step trains on its first batch (fixed upstream in 716e618 and 47377e3, 2026).",
                  "Retain batches are drawn with replacement each step; the authors' loops take the retain loader's "
                  "first batch every step.",
                  "The saliency mask covers the weights being trained; the authors' generate_mask.py ranks every UNet "
                  "weight, so for train_method 'xattn' their threshold is global over all weights (identical for "
                  "'full').",
                  "One latent per forget image for both predictions; the authors encode the forget images twice, so the"
                  " noisy and pseudo-labelled latents come from two posterior samples.",
                  "The mask keeps |g| ≥ the round(ratio·N)-th largest; the authors keep exactly int(ratio·N) by rank "
                  "(ties or an odd N can keep one more here; 0 entries differ on the tiny SD1 pipeline).")

    config_class = SalUnConfig
    technique = "saliency-masked fine-tuning towards a pseudo caption"
    artifact_kind = "fused weights"
    multi_concept = True  # several forget classes in one forget set
    prepared_data_fields = ("concepts", "seed", "prompts", "pseudo_concept", "retain_prompts", "num_images",
                            "num_inference_steps", "guidance_scale")
    image_seed_offset = 71

    @classmethod
    def image_rows(cls, config: SalUnConfig, domain=None) -> tuple[list[str], list[str]]:
        """Forget images (``concept`` = the pseudo caption) then retain images (``concept`` = their own caption)."""
        from .ca import caption_pairs

        pairs = caption_pairs(config.concepts, config.prompts, config.pseudo_concept, config.num_images, domain)
        retain = [config.retain_prompts[i % len(config.retain_prompts)] for i in range(len(pairs))] \
            if config.retain_prompts else []
        return [p for p, _, _ in pairs] + retain, [a for _, a, _ in pairs] + retain

    def _unlearn(self, pipeline) -> list[str]:
        from tqdm.auto import tqdm

        from ..training import TrainingRun

        cfg: SalUnConfig = self.config
        family = family_of(pipeline)
        self.check_concepts(pipeline, self.image_rows(cfg, self.domain)[1])
        self.images = self.prepared_or_built(pipeline, self.images, self.accelerator, self.domain, self.progress)
        unet = family.denoiser(pipeline)
        run = TrainingRun({**cfg.to_dict(), "family": family.name}, self.accelerator, progress=self.progress,
                          resumable_changes=("num_train_epochs",), **self.train_kwargs)
        run.check_divisible("train_batch_size", cfg.train_batch_size)
        dev = run.device
        prompts, concepts = list(self.images["prompt"]), list(self.images["concept"])
        latents = family.latents(pipeline, list(self.images["image"]))
        forget = torch.tensor([i for i, (p, c) in enumerate(zip(prompts, concepts)) if p != c])
        retain = torch.tensor([i for i, (p, c) in enumerate(zip(prompts, concepts)) if p == c])
        if not len(forget):
            raise ValueError("The SalUn image set has no forget rows (rows whose pseudo caption differs from their "
                             "caption); rebuild it or give one.")
        uniq = list(dict.fromkeys([""] + prompts + concepts))
        conds = family.encode(pipeline, uniq)
        caption_row = torch.tensor([uniq.index(p) for p in prompts])
        pseudo_row = torch.tensor([uniq.index(c) for c in concepts])
        sched = family.training_scheduler(pipeline)
        num_train = family.num_train_timesteps(sched)
        names = esd_parameter_names(unet, cfg.train_method)
        unet.requires_grad_(False)
        params = dict(unet.named_parameters())
        trainable = {n: params[n] for n in names}
        for p in trainable.values():
            p.requires_grad_(True)
        unet.to(dev)

        # 1. the saliency mask, from the original weights (recomputed identically by a resumed run)
        grads = {n: torch.zeros_like(p, device="cpu") for n, p in trainable.items()}
        g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 999_983)
        bs = cfg.train_batch_size
        empty = conds[:1]
        for start in tqdm(range(0, len(forget), bs), desc="SalUn mask", disable=not self.progress):
            idx = forget[start:start + bs]
            t = torch.randint(0, num_train, (len(idx),), generator=g)
            noise = torch.randn((len(idx), *latents.shape[1:]), generator=g)
            x = family.noisy(sched, latents[idx], noise, t).to(dev)
            e_c = family.predict(unet, x, t.to(dev), conds[caption_row[idx]].to(dev))
            e_0 = family.predict(unet, x, t.to(dev), Conditioning.cat([empty] * len(idx)).to(dev))
            loss = -F.mse_loss(family.target(sched, latents[idx].to(dev), noise.to(dev), t.to(dev)),
                               guided_prediction(e_c, e_0, cfg.mask_guidance))
            loss.backward()
            for n, p in trainable.items():
                grads[n] += p.grad.detach().cpu()
                p.grad = None
        mask = {n: m.to(dev) for n, m in saliency_mask(grads, cfg.mask_ratio).items()}
        del grads
        kept = sum(int(m.sum()) for m in mask.values())

        # 2. masked training
        opt = torch.optim.Adam(list(trainable.values()), lr=cfg.learning_rate)
        acc = run.accelerator
        model, opt = acc.prepare(unet, opt)
        losses, first = run.resume_training(trainable, opt, "losses", [])
        share = run.share(bs)
        steps_per_epoch = math.ceil(len(forget) / bs)
        unet.train()
        try:
            for step in run.steps(first, cfg.num_train_epochs * steps_per_epoch, "SalUn"):
                gs = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
                order = torch.randperm(len(forget), generator=gs)
                f_idx = forget[order[torch.arange(bs) % len(forget)]]
                t = torch.randint(0, num_train, (bs,), generator=gs)
                noise = torch.randn((bs, *latents.shape[1:]), generator=gs)
                f_idx, t_f, n_f = f_idx[share], t[share].to(dev), noise[share]
                x_f = family.noisy(sched, latents[f_idx], n_f, t_f.cpu()).to(dev)
                e_f = family.predict(model, x_f, t_f, conds[caption_row[f_idx]].to(dev))
                with torch.no_grad():
                    e_p = family.predict(model, x_f, t_f, conds[pseudo_row[f_idx]].to(dev))
                loss = F.mse_loss(e_f, e_p)
                if cfg.alpha > 0 and len(retain):
                    r_idx = retain[torch.randint(len(retain), (bs,), generator=gs)][share]
                    t_r = torch.randint(0, num_train, (bs,), generator=gs)[share]
                    n_r = torch.randn((bs, *latents.shape[1:]), generator=gs)[share]
                    x_r = family.noisy(sched, latents[r_idx], n_r, t_r).to(dev)
                    e_r = family.predict(model, x_r, t_r.to(dev), conds[caption_row[r_idx]].to(dev))
                    loss = loss + cfg.alpha * F.mse_loss(
                        e_r, family.target(sched, latents[r_idx].to(dev), n_r.to(dev), t_r.to(dev)))
                acc.backward(loss)
                for n, p in trainable.items():
                    if p.grad is not None:
                        p.grad.mul_(mask[n])
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                acc.log({"loss": losses[-1]}, step=step + 1)
                run.checkpoint(step + 1, {"losses": losses}, trainable, opt.state_dict())
                run.after_step(step + 1)
        finally:
            unet.eval()
            unet.requires_grad_(False)
        total = sum(p.numel() for p in trainable.values())
        self.stats = {"first_loss": losses[0], "final_loss": losses[-1], "steps": len(losses),
                      "masked_share": kept / total, "forget_images": len(forget), "retain_images": len(retain)}
        return names


register_method("salun", SalUnUnlearner)
