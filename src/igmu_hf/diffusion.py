"""Diffusion-side helpers every trainer shares: VAE latents of images, forward noising, the frozen reference UNet.

The reference ε* of an adapter method is the same UNet with its adapters disabled (as DUO's and Dark Miner's authors' code does), never a copy.
"""

from contextlib import contextmanager

import torch


@torch.no_grad()
def encode_images(pipeline, images, batch_size: int = 32) -> torch.Tensor:
    """VAE latents ((posterior mean − shift factor) × scaling factor, float32 on CPU) of PIL ``images``, as the
    pipeline scales them (SD3's VAE has a shift factor, SD1/SD2/SDXL's none)."""
    vae, proc = pipeline.vae, pipeline.image_processor
    if not len(images):
        raise ValueError("`images` is empty; there is nothing to encode.")
    out = []
    for i in range(0, len(images), batch_size):
        x = proc.preprocess([im.convert("RGB") for im in images[i:i + batch_size]]).to(vae.device, vae.dtype)
        mean = vae.encode(x).latent_dist.mean
        shift = getattr(vae.config, "shift_factor", None)
        out.append((mean - shift if shift is not None else mean) * vae.config.scaling_factor)
    return torch.cat(out).float().cpu()


def add_noise(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (DDPM forward process, ε-prediction parameterisation of SD)."""
    a = alphas_cumprod.to(x0.device)[t].view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


@contextmanager
def adapters_disabled(unet):
    """Run ``unet`` as the original model ε* inside the block (peft adapters off, back on afterwards)."""
    unet.disable_adapters()
    try:
        yield unet
    finally:
        unet.enable_adapters()


def reference_forward(unet, family=None):
    """ε* as a function ``(x, t, c) -> prediction``: the same denoiser with its LoRA adapters disabled (no copy);
    ``c`` is a :class:`~igmu_hf.families.Conditioning` (or bare states), ``family`` the denoiser's (default SD1.x)."""
    from .families import FAMILIES

    family = family or FAMILIES["sd1"]

    def forward(x, t, c):
        with adapters_disabled(unet):
            return family.predict(unet, x, t, c)

    return forward


def add_lora(unet, target_modules: list[str], rank: int, alpha: int, init_lora_weights="gaussian",
             adapter_name: str = "default", seed: int | None = None) -> None:
    """Freeze ``unet`` (any denoiser: UNet or SD3 transformer) and give it a peft LoRA adapter on
    ``target_modules`` (clear error if one matches nothing).

    With ``seed`` the adapter's random initialisation depends on it alone (the global RNG is left untouched).
    """
    from peft import LoraConfig

    names = [n for n, _ in unet.named_modules()]
    missing = [t for t in target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        examples = sorted({".".join(n.split(".")[-2:]) for n in names
                           if n.split(".")[-1].startswith(("to_", "add_")) or n.endswith("to_out.0")})
        raise ValueError(f"LoRA target module(s) {missing} match nothing in the {type(unet).__name__}; modules that "
                         f"exist include {examples}.")
    unet.requires_grad_(False)
    from .seeding import seeded

    with seeded(seed):
        unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=init_lora_weights,
                                    target_modules=list(target_modules)), adapter_name=adapter_name)


def lora_state_dict(denoiser, family=None) -> dict[str, torch.Tensor]:
    """The denoiser's LoRA in its family's diffusers format (default SD1.x's UNet format)."""
    from .families import FAMILIES

    return (family or FAMILIES["sd1"]).lora_state_dict(denoiser)


def fuse_lora_into_unet(unet, family=None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fuse the denoiser's LoRA into its weights and remove the adapter; returns (the LoRA in the family's
    diffusers format, the names of the base weights that changed)."""
    lora = lora_state_dict(unet, family)
    edited = sorted(n.replace(".base_layer.weight", ".weight") for n, _ in unet.named_parameters()
                    if n.endswith(".base_layer.weight"))
    unet.fuse_lora()
    unet.unload_lora()
    return lora, edited


@torch.no_grad()
def ddim_sample_steps(family, denoiser, scheduler, latents: torch.Tensor, cond, uncond, guidance_scale: float,
                      num_steps: int, first: int = 0) -> torch.Tensor:
    """Run ``num_steps`` steps of the DDIM (η = 0) trajectory from ``latents`` with classifier-free guidance, starting
    at the grid's timestep of index ``first`` (``scheduler`` has had ``set_timesteps``); the partly denoised latents
    (ESD's z_t and the methods built on it)."""
    from .families import Conditioning

    n = len(latents)
    both = Conditioning.cat([uncond.expand(n), cond.expand(n)]).to(latents.device)
    x = latents
    for t in scheduler.timesteps[first:first + num_steps]:
        pred = family.predict(denoiser, torch.cat([x, x]), t.expand(2 * n).to(x.device), both)
        pu, pc = pred.chunk(2)
        x = scheduler.step(pu + guidance_scale * (pc - pu), t, x, eta=0.0).prev_sample
    return x
