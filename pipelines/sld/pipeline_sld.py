"""Safe Latent Diffusion (SLD; Schramowski et al., CVPR 2023) as a diffusers pipeline: Stable Diffusion whose
classifier-free guidance is steered away from a safety concept at inference time. No weight is changed.

This file is self-contained (torch + diffusers only) so it can travel with a saved pipeline folder: a folder whose
``model_index.json`` names ``["pipeline_sld", "SafeLatentDiffusionPipeline"]`` loads with stock diffusers,
``DiffusionPipeline.from_pretrained(folder_or_hub_id, trust_remote_code=True)``, or explicitly with
``custom_pipeline=<this file>``. igmu_hf imports the same file as ``igmu_hf.pipelines.sld.pipeline_sld``.

Written here because diffusers' own ``StableDiffusionPipelineSafe`` is deprecated and untested; the guidance follows
the authors' implementation in it (equations 3-8 of the paper): with ε_u, ε_p, ε_S the noise predictions for the
empty prompt, the prompt and the safety concept at step i,

    μ      = clamp(|ε_p − ε_S| · s_S, max=1), set to 0 where ε_p − ε_S ≥ λ   (eq. 6, elementwise)
    γ      = μ · (ε_S − ε_u) + s_m · ν_i                                          (eqs. 4, 7)
    ν_i+1  = β_m · ν_i + (1 − β_m) · γ                                             (eq. 8; updated from step 0)
    ε      = ε_u + s_g · ((ε_p − ε_u) − γ · [i ≥ δ])                               (eq. 3; δ = warm-up steps)

Safety guidance runs only with classifier-free guidance and s_S > 1, as in the authors' code; it costs one more
UNet row per step (3 instead of 2).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion import StableDiffusionPipelineOutput


# The authors' default safety concept (I2P's inappropriate categories).
DEFAULT_SAFETY_CONCEPT = (
    "an image showing hate, harassment, violence, suffering, humiliation, harm, suicide, sexual, nudity, bodily "
    "fluids, blood, obscene gestures, illegal activity, drug use, theft, vandalism, weapons, child abuse, brutality, "
    "cruelty")

# The paper's hyper-parameter sets (warm-up δ, scale s_S, threshold λ, momentum s_m, momentum β_m).
SLD_PRESETS: dict[str, dict[str, float]] = {
    "weak": {"sld_warmup_steps": 15, "sld_guidance_scale": 20, "sld_threshold": 0.0, "sld_momentum_scale": 0.0,
             "sld_mom_beta": 0.0},
    "medium": {"sld_warmup_steps": 10, "sld_guidance_scale": 1000, "sld_threshold": 0.01, "sld_momentum_scale": 0.3,
               "sld_mom_beta": 0.4},
    "strong": {"sld_warmup_steps": 7, "sld_guidance_scale": 2000, "sld_threshold": 0.025, "sld_momentum_scale": 0.5,
               "sld_mom_beta": 0.7},
    "max": {"sld_warmup_steps": 0, "sld_guidance_scale": 5000, "sld_threshold": 1.0, "sld_momentum_scale": 0.5,
            "sld_mom_beta": 0.7},
}
SLD_FIELDS = tuple(SLD_PRESETS["medium"])


def safety_guidance(eps_uncond: torch.Tensor, eps_text: torch.Tensor, eps_safety: torch.Tensor,
                    momentum: torch.Tensor | None, step: int, sld_guidance_scale: float, sld_warmup_steps: int,
                    sld_threshold: float, sld_momentum_scale: float, sld_mom_beta: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of SLD: ``(guidance, new momentum)``, where ``guidance`` replaces ``ε_p − ε_u`` in
    ``ε = ε_u + s_g · guidance`` (the module docstring's equations)."""
    guidance = eps_text - eps_uncond
    if momentum is None:
        momentum = torch.zeros_like(guidance)
    diff = eps_text - eps_safety
    scale = torch.clamp(diff.abs() * sld_guidance_scale, max=1.0)
    scale = torch.where(diff >= sld_threshold, torch.zeros_like(scale), scale)
    gamma = (eps_safety - eps_uncond) * scale + sld_momentum_scale * momentum
    momentum = sld_mom_beta * momentum + (1 - sld_mom_beta) * gamma
    if step >= sld_warmup_steps:
        guidance = guidance - gamma
    return guidance, momentum


class SafeLatentDiffusionPipeline(StableDiffusionPipeline):
    """Stable Diffusion with safety guidance away from ``safety_concept``. The SLD settings are part of the
    pipeline's config (``model_index.json``), so a saved folder generates as it was configured; every call may
    override them (``sld_preset=`` or the single fields)."""

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, safety_checker=None, feature_extractor=None,
                 image_encoder=None, requires_safety_checker: bool = False,
                 safety_concept: str = DEFAULT_SAFETY_CONCEPT, sld_preset: str = "medium",
                 sld_warmup_steps: int | None = None, sld_guidance_scale: float | None = None,
                 sld_threshold: float | None = None, sld_momentum_scale: float | None = None,
                 sld_mom_beta: float | None = None):
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        settings = self.sld_settings(sld_preset, sld_warmup_steps=sld_warmup_steps,
                                     sld_guidance_scale=sld_guidance_scale, sld_threshold=sld_threshold,
                                     sld_momentum_scale=sld_momentum_scale, sld_mom_beta=sld_mom_beta)
        if not isinstance(safety_concept, str) or not safety_concept.strip():
            raise ValueError("`safety_concept` must be a non-empty text, e.g. 'nudity'.")
        self.register_to_config(safety_concept=safety_concept, sld_preset=sld_preset, **settings)

    @staticmethod
    def sld_settings(preset: str | None = "medium", **overrides: Any) -> dict[str, float]:
        """The five SLD fields: ``preset``'s, with the non-None ``overrides`` on top (checked)."""
        if preset not in SLD_PRESETS:
            raise ValueError(f"`sld_preset` must be one of {sorted(SLD_PRESETS)}, got {preset!r}.")
        unknown = set(overrides) - set(SLD_FIELDS)
        if unknown:
            raise ValueError(f"Unknown SLD field(s) {sorted(unknown)}; fields: {list(SLD_FIELDS)}.")
        out = {**SLD_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        for k, v in out.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or abs(v) == float("inf") or v < 0:
                raise ValueError(f"`{k}` must be a finite number ≥ 0, got {v!r}.")
        if out["sld_mom_beta"] > 1:
            raise ValueError(f"`sld_mom_beta` must be in [0, 1], got {out['sld_mom_beta']}.")
        return {k: int(v) if k == "sld_warmup_steps" else float(v) for k, v in out.items()}

    def unet_rows_per_step(self, guidance_scale: float = 7.5, sld_guidance_scale: float | None = None) -> int:
        """UNet batch rows per image and step: 3 with safety guidance (prompt, empty, safety concept), 2 with plain
        classifier-free guidance, 1 without."""
        s_s = self.config.sld_guidance_scale if sld_guidance_scale is None else sld_guidance_scale
        return 1 if guidance_scale <= 1.0 else 3 if s_s > 1.0 else 2

    @torch.no_grad()
    def __call__(self, prompt: str | list[str] | None = None, height: int | None = None, width: int | None = None,
                 num_inference_steps: int = 50, guidance_scale: float = 7.5,
                 negative_prompt: str | list[str] | None = None, num_images_per_prompt: int = 1, eta: float = 0.0,
                 generator: torch.Generator | list[torch.Generator] | None = None, latents: torch.Tensor | None = None,
                 prompt_embeds: torch.Tensor | None = None, negative_prompt_embeds: torch.Tensor | None = None,
                 output_type: str = "pil", return_dict: bool = True, safety_concept: str | None = None,
                 sld_preset: str | None = None, sld_warmup_steps: int | None = None,
                 sld_guidance_scale: float | None = None, sld_threshold: float | None = None,
                 sld_momentum_scale: float | None = None, sld_mom_beta: float | None = None, **unused: Any):
        """Generate as ``StableDiffusionPipeline`` does, with safety guidance. SLD arguments left None come from the
        pipeline's config (or from ``sld_preset`` when given)."""
        if unused:
            raise TypeError(f"SafeLatentDiffusionPipeline got unsupported argument(s) {sorted(unused)}.")
        base = {k: self.config[k] for k in SLD_FIELDS} if sld_preset is None else {}
        settings = self.sld_settings(sld_preset or self.config.sld_preset, **{
            **base, "sld_warmup_steps": sld_warmup_steps, "sld_guidance_scale": sld_guidance_scale,
            "sld_threshold": sld_threshold, "sld_momentum_scale": sld_momentum_scale, "sld_mom_beta": sld_mom_beta})
        safety_concept = safety_concept or self.config.safety_concept
        height = height or self.unet.config.sample_size * self.vae_scale_factor
        width = width or self.unet.config.sample_size * self.vae_scale_factor
        self.check_inputs(prompt, height, width, None, negative_prompt, prompt_embeds, negative_prompt_embeds)
        if prompt is not None:
            batch_size = 1 if isinstance(prompt, str) else len(prompt)
        else:
            batch_size = prompt_embeds.shape[0]
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        with_sld = do_cfg and settings["sld_guidance_scale"] > 1.0
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(
            prompt, device, num_images_per_prompt, do_cfg, negative_prompt, prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds)
        rows = [negative_prompt_embeds, prompt_embeds] if do_cfg else [prompt_embeds]
        if with_sld:
            safety_embeds, _ = self.encode_prompt(safety_concept, device, 1, False)
            rows.append(safety_embeds.expand(prompt_embeds.shape[0], -1, -1))
        embeds = torch.cat(rows)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = self.prepare_latents(batch_size * num_images_per_prompt, self.unet.config.in_channels, height,
                                       width, embeds.dtype, device, generator, latents)
        extra_step_kwargs = self.prepare_extra_step_kwargs(generator, eta)
        momentum = None
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            model_input = self.scheduler.scale_model_input(torch.cat([latents] * len(rows)), t)
            eps = self.unet(model_input, t, encoder_hidden_states=embeds).sample
            if do_cfg:
                parts = eps.chunk(len(rows))
                if with_sld:
                    guidance, momentum = safety_guidance(parts[0], parts[1], parts[2], momentum, i, **settings)
                else:
                    guidance = parts[1] - parts[0]
                eps = parts[0] + guidance_scale * guidance
            latents = self.scheduler.step(eps, t, latents, **extra_step_kwargs).prev_sample

        if output_type == "latent":
            image = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
            image = self.image_processor.postprocess(image, output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return image, None
        return StableDiffusionPipelineOutput(images=image, nsfw_content_detected=None)
