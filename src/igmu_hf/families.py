"""Model families: what differs between SD1.x, SD2.x, SDXL and SD3, chosen once from the pipeline.

Methods, attacks and metrics ask the family (``family_of(pipe)``) instead of reading ``pipe.unet``, the text
encoder or ``alphas_cumprod`` themselves:

- prompt encoding (one CLIP encoder; SDXL's two with penultimate states, pooled embedding and time ids; SD3's two
  CLIP + optional T5) -> :class:`Conditioning`;
- the denoiser (``unet`` or ``transformer``) and one call of it on ``(x_t, t, conditioning)``;
- the training side: timestep draws, noisy input and target (ε, v-prediction, flow matching), loss weighting;
- sampling timesteps of the pipeline's own scheduler, img2img (``AutoPipelineForImage2Image.from_pipe``);
- LoRA export (``save_lora_weights`` of the family's stock pipeline class) and the names of self-, cross- and
  joint-attention projections;
- capabilities, so a method that cannot run on a family refuses with the reason in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch


class FamilyNotSupportedError(ValueError):
    """A method or attack cannot run on this model family; the message says why and what to use instead."""


@dataclass
class Conditioning:
    """The text conditioning of a batch of prompts, as the family's denoiser takes it.

    ``states`` (N, L, D) are the per-token states (SD1/SD2: the encoder's last layer; SDXL: both encoders'
    penultimate layers concatenated; SD3: CLIP states padded and stacked with T5's along the sequence);
    ``pooled`` (N, P) SDXL/SD3's pooled embedding; ``time_ids`` (N, 6) SDXL's size/crop conditioning.
    """

    states: torch.Tensor
    pooled: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.states)

    def _map(self, fn) -> "Conditioning":
        return Conditioning(fn(self.states), *(None if t is None else fn(t) for t in (self.pooled, self.time_ids)))

    def __getitem__(self, index) -> "Conditioning":
        return self._map(lambda t: t[index])

    def to(self, *args, **kwargs) -> "Conditioning":
        return self._map(lambda t: t.to(*args, **kwargs))

    def expand(self, n: int) -> "Conditioning":
        """``n`` rows: a single-row conditioning is repeated, an ``n``-row one returned as is."""
        if len(self) == n:
            return self
        if len(self) != 1:
            raise ValueError(f"Cannot expand a conditioning of {len(self)} rows to {n}.")
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def repeat(self, n: int) -> "Conditioning":
        return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    @staticmethod
    def cat(items: list["Conditioning"]) -> "Conditioning":
        first = items[0]
        return Conditioning(torch.cat([c.states for c in items]),
                            None if first.pooled is None else torch.cat([c.pooled for c in items]),
                            None if first.time_ids is None else torch.cat([c.time_ids for c in items]))


def as_conditioning(cond) -> Conditioning:
    """A :class:`Conditioning` from itself or from bare per-token states (SD1.x/SD2.x callers)."""
    return cond if isinstance(cond, Conditioning) else Conditioning(cond)


class ModelFamily:
    """Base: one CLIP text encoder, a ``UNet2DConditionModel``, DDPM-style noise (SD1.x)."""

    name: ClassVar[str] = "sd1"
    display: ClassVar[str] = "Stable Diffusion 1.x"
    pipeline_class: ClassVar[str] = "StableDiffusionPipeline"
    denoiser_name: ClassVar[str] = "unet"
    lora_layers_argument: ClassVar[str] = "unet_lora_layers"
    # attention projections by role (module-name suffixes peft's target_modules take)
    attention: ClassVar[dict[str, tuple[str, ...]]] = {
        "self": ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0"),
        "cross": ("attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0"),
        "cross_kv": ("attn2.to_k", "attn2.to_v"),
        "value": ("attn1.to_v", "attn2.to_v"),
        "joint": (),
    }
    # what the family offers: "single_text_encoder" (free token embeddings of one CLIP encoder: mining, prompt
    # attacks), "cross_attention_kv" (K/V projections whose input is the text encoder's output: UCE-style edits),
    # "ddpm_unet" (a UNet with cross-attention trained on the DDPM forward process and sampled with DDIM: ESD's
    # trajectory and its attn2 / non-attn2 split, the attention-map methods)
    capabilities: ClassVar[frozenset[str]] = frozenset({"single_text_encoder", "cross_attention_kv", "ddpm_unet"})
    reasons: ClassVar[dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    # ---- components ----
    def denoiser(self, pipe):
        return getattr(pipe, self.denoiser_name)

    def require(self, capability: str, who: str) -> None:
        """Raise :class:`FamilyNotSupportedError` (one line: who, why, what instead) if the family lacks it."""
        if capability not in self.capabilities:
            raise FamilyNotSupportedError(f"{who} does not run on {self.display} pipelines: "
                                          f"{self.reasons.get(capability, capability + ' is missing')}.")

    def modules(self, role: str) -> list[str]:
        """Module-name suffixes of the attention projections of ``role`` (``self``, ``cross``, ``cross_kv``,
        ``value``, ``joint``)."""
        if role not in self.attention:
            raise ValueError(f"Unknown attention role {role!r}; roles: {sorted(self.attention)}.")
        return list(self.attention[role])

    # ---- text ----
    @torch.no_grad()
    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        """The conditioning of ``prompts`` exactly as the pipeline computes it for generation."""
        from .text import encode_prompts

        return Conditioning(encode_prompts(pipe.tokenizer, pipe.text_encoder, list(prompts)))

    # ---- the denoiser ----
    def predict(self, denoiser, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The denoiser's output (ε, v or flow velocity, as it was trained) at ``(x, t)`` given ``cond`` (a
        :class:`Conditioning`, or bare states for one-encoder families)."""
        return denoiser(x, t, as_conditioning(cond).states.to(x.dtype)).sample

    # ---- training side ----
    def prediction_type(self, scheduler) -> str:
        return getattr(scheduler.config, "prediction_type", "epsilon") or "epsilon"

    def num_train_timesteps(self, scheduler) -> int:
        return int(scheduler.config.num_train_timesteps)

    def draw_timesteps(self, scheduler, n: int, generator: torch.Generator, max_timestep: int | None = None
                       ) -> torch.Tensor:
        """``n`` training timesteps, uniform over ``[0, max_timestep)`` (default: the whole schedule)."""
        return torch.randint(0, max_timestep or self.num_train_timesteps(scheduler), (n,), generator=generator)

    def prior_timestep(self, scheduler) -> int:
        """The 'T' of output-preserving terms on pure noise (DUO's prior term): the last training timestep."""
        return self.num_train_timesteps(scheduler) - 1

    def _alphas(self, scheduler, t, like):
        a = scheduler.alphas_cumprod.to(like.device)[t.to(like.device).long()]
        return a.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)

    def noisy(self, scheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x₀ + √(1−ᾱ_t)·ε (the DDPM forward process every SD1/SD2/SDXL UNet was trained on)."""
        from .diffusion import add_noise

        return add_noise(x0, t.to(x0.device), eps, scheduler.alphas_cumprod)

    def target(self, scheduler, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser is trained to output: ε, or v = √ᾱ_t·ε − √(1−ᾱ_t)·x₀ for v-prediction."""
        kind = self.prediction_type(scheduler)
        if kind == "epsilon":
            return eps
        if kind == "v_prediction":
            a = self._alphas(scheduler, t, x0)
            return a.sqrt() * eps - (1 - a).sqrt() * x0
        raise FamilyNotSupportedError(f"Training target for prediction_type {kind!r} is not supported; use a "
                                      f"scheduler with 'epsilon' or 'v_prediction'.")

    def loss_weight(self, scheduler, t: torch.Tensor) -> torch.Tensor:
        """Per-sample weight of the denoising loss (1 for ε and v)."""
        return torch.ones(len(t))

    def to_epsilon(self, scheduler, pred: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise estimate implied by a prediction (attacks and mining compare noise)."""
        kind = self.prediction_type(scheduler)
        if kind == "epsilon":
            return pred
        a = self._alphas(scheduler, t, x_t)
        return a.sqrt() * pred + (1 - a).sqrt() * x_t  # from v

    # ---- images ----
    @torch.no_grad()
    def latents(self, pipe, images, batch_size: int = 32) -> torch.Tensor:
        """VAE latents of PIL ``images`` as the denoiser sees them (posterior mean, shift and scale)."""
        from .diffusion import encode_images

        return encode_images(pipe, images, batch_size)

    def sampling_timesteps(self, pipe, num_inference_steps: int) -> torch.Tensor:
        """The timesteps the pipeline's own scheduler samples with ``num_inference_steps`` steps."""
        sched = type(pipe.scheduler).from_config(pipe.scheduler.config)
        sched.set_timesteps(num_inference_steps)
        return sched.timesteps.clone()

    def training_scheduler(self, pipe):
        """A fresh copy of the pipeline's scheduler (sampling may have changed the pipeline's own)."""
        return type(pipe.scheduler).from_config(pipe.scheduler.config)

    def img2img(self, pipe):
        """The img2img pipeline over the same components (``AutoPipelineForImage2Image.from_pipe``)."""
        from diffusers import AutoPipelineForImage2Image

        out = AutoPipelineForImage2Image.from_pipe(pipe)
        out.set_progress_bar_config(disable=True)
        return out

    def generation_call(self, cond: Conditioning, uncond: Conditioning) -> dict[str, Any]:
        """Pipeline-call keyword arguments that generate from precomputed conditionings."""
        return {"prompt_embeds": cond.states, "negative_prompt_embeds": uncond.states}

    # ---- LoRA ----
    def lora_state_dict(self, denoiser) -> dict[str, torch.Tensor]:
        """The denoiser's LoRA in diffusers' format (what ``save_lora_weights`` writes, ``load_lora_weights`` reads)."""
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        peft_format = get_peft_model_state_dict(denoiser)
        converted = convert_state_dict_to_diffusers(peft_format)
        if any(".lora_A." in k or ".lora_B." in k for k in converted):
            # diffusers converts only attention projections: a LoRA on other layers (SPM's proj_in/ff) would be saved
            # half converted, and load_lora_weights would skip the converted half. peft's keys load as they are.
            return peft_format
        return converted

    def save_lora(self, directory, state_dict: dict[str, torch.Tensor]) -> None:
        """Write ``pytorch_lora_weights.safetensors`` that the family's stock pipeline loads with
        ``load_lora_weights``."""
        import diffusers

        getattr(diffusers, self.pipeline_class).save_lora_weights(
            directory, **{self.lora_layers_argument: state_dict}, safe_serialization=True)

    def info(self) -> dict[str, str]:
        return {"name": self.name, "display": self.display, "pipeline_class": self.pipeline_class}


class SD2Family(ModelFamily):
    """SD2.x: one OpenCLIP text encoder (its penultimate layer is the model's last), v-prediction at 768 px."""

    name = "sd2"
    display = "Stable Diffusion 2.x"


class SDXLFamily(ModelFamily):
    """SDXL: two CLIP encoders (penultimate states concatenated, pooled embedding of the second), time ids."""

    name = "sdxl"
    display = "Stable Diffusion XL"
    pipeline_class = "StableDiffusionXLPipeline"
    capabilities = frozenset({"cross_attention_kv", "ddpm_unet"})
    reasons = {"single_text_encoder": "it conditions on two CLIP text encoders (concatenated penultimate states "
                                      "plus a pooled embedding), and this works on free token embeddings of one "
                                      "encoder; use an SD1.x or SD2.x pipeline"}

    @torch.no_grad()
    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        states, _, pooled, _ = pipe.encode_prompt(list(prompts), device=pipe.unet.device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return Conditioning(states, pooled, self._time_ids(pipe, pooled).expand(len(states), -1))

    def _time_ids(self, pipe, pooled):
        # (original size, crop top-left, target size) at the pipeline's default resolution, as it generates
        size = pipe.default_sample_size * pipe.vae_scale_factor
        return torch.tensor([[size, size, 0, 0, size, size]], dtype=pooled.dtype, device=pooled.device)

    def predict(self, denoiser, x, t, cond):
        return denoiser(x, t, cond.states.to(x.dtype), added_cond_kwargs={
            "text_embeds": cond.pooled.to(x.dtype), "time_ids": cond.time_ids.to(x.dtype)}).sample

    def generation_call(self, cond, uncond):
        return {"prompt_embeds": cond.states, "negative_prompt_embeds": uncond.states,
                "pooled_prompt_embeds": cond.pooled, "negative_pooled_prompt_embeds": uncond.pooled}


class SD3Family(ModelFamily):
    """SD3: MMDiT ``transformer`` with joint attention, two CLIP encoders + optional T5, rectified flow."""

    name = "sd3"
    display = "Stable Diffusion 3"
    pipeline_class = "StableDiffusion3Pipeline"
    denoiser_name = "transformer"
    lora_layers_argument = "transformer_lora_layers"
    # joint attention: to_q/k/v/out.0 project the image stream (DUO's SD3 LoRA), add_*_proj the text stream
    attention = {"self": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0"), "cross": (), "cross_kv": (),
                 "value": ("attn.to_v", "attn.add_v_proj"),
                 "joint": ("attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
                           "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out")}
    capabilities = frozenset()
    reasons = {
        "single_text_encoder": "it conditions on two CLIP encoders and an optional T5 through joint attention, and "
                               "this works on free token embeddings of one CLIP encoder; use an SD1.x or SD2.x pipeline",
        "ddpm_unet": "it is a rectified-flow MMDiT without cross-attention, and this method is defined on a DDPM "
                     "UNet's DDIM trajectory and its cross-attention (attn2) layers; use DUO on SD3",
        "cross_attention_kv": "it has no cross-attention; its joint-attention text projections (add_k_proj/add_v_proj) "
                              "take per-block, AdaLN-modulated context states, not the text encoders' output, so a "
                              "closed-form edit of text-to-K/V maps does not apply; use DUO (LoRA on joint attention)"}

    @torch.no_grad()
    def encode(self, pipe, prompts: list[str]) -> Conditioning:
        states, _, pooled, _ = pipe.encode_prompt(list(prompts), None, None, device=pipe.transformer.device,
                                                  num_images_per_prompt=1, do_classifier_free_guidance=False)
        return Conditioning(states, pooled)

    def predict(self, denoiser, x, t, cond):
        return denoiser(hidden_states=x, timestep=t, encoder_hidden_states=cond.states.to(x.dtype),
                        pooled_projections=cond.pooled.to(x.dtype)).sample

    def prediction_type(self, scheduler) -> str:
        return "flow"

    def _train_timesteps(self, scheduler) -> torch.Tensor:
        from diffusers import FlowMatchEulerDiscreteScheduler

        # the training schedule (descending, shifted sigmas × 1000) of a fresh scheduler: sampling replaces
        # `timesteps` of the pipeline's own
        return FlowMatchEulerDiscreteScheduler.from_config(scheduler.config).timesteps

    def draw_timesteps(self, scheduler, n, generator, max_timestep=None):
        """DUO's SD3 code (naver-ai/DUO ``train/unlearn-sd3.py``): u ~ U[0, max_timestep/1000), the index
        ⌊u·1000⌋ into the (descending, shifted) training timesteps."""
        steps = self._train_timesteps(scheduler)
        u = torch.rand(n, generator=generator) * (max_timestep or self.num_train_timesteps(scheduler)) / 1000
        idx = (u * self.num_train_timesteps(scheduler)).long().clamp(0, len(steps) - 1)
        return steps[idx]

    def prior_timestep(self, scheduler):
        # unlearn-sd3.py draws the prior term's u = 1: index 999 of the descending schedule
        return float(self._train_timesteps(scheduler)[-1])

    def _sigmas(self, scheduler, t, like):
        return (t.to(like.device, torch.float32) / self.num_train_timesteps(scheduler)).view(
            -1, *([1] * (like.dim() - 1))).to(like.dtype)

    def noisy(self, scheduler, x0, eps, t):
        """Rectified flow: x_t = (1 − σ)·x₀ + σ·ε with σ = t/1000."""
        s = self._sigmas(scheduler, t, x0)
        return (1 - s) * x0 + s * eps

    def target(self, scheduler, x0, eps, t):
        """The flow velocity ε − x₀."""
        return eps - x0

    def loss_weight(self, scheduler, t, weighting_scheme: str = "logit_normal"):
        """diffusers' ``compute_loss_weighting_for_sd3`` (1 for 'logit_normal', the DUO SD3 default)."""
        from diffusers.training_utils import compute_loss_weighting_for_sd3

        return compute_loss_weighting_for_sd3(weighting_scheme, t.float() / self.num_train_timesteps(scheduler))

    def to_epsilon(self, scheduler, pred, x_t, t):
        s = self._sigmas(scheduler, t, x_t)
        return x_t + (1 - s) * pred  # x_t = (1−σ)x₀ + σε and v = ε − x₀  =>  ε = x_t + (1−σ)v

    def generation_call(self, cond, uncond):
        return {"prompt_embeds": cond.states, "negative_prompt_embeds": uncond.states,
                "pooled_prompt_embeds": cond.pooled, "negative_pooled_prompt_embeds": uncond.pooled}

    def lora_state_dict(self, denoiser):
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(denoiser)  # the transformer's keys are already diffusers' (SD3 scripts)


FAMILIES: dict[str, ModelFamily] = {f.name: f for f in (ModelFamily(), SD2Family(), SDXLFamily(), SD3Family())}


def family_of(pipe) -> ModelFamily:
    """The family of a loaded pipeline, decided from its components (once; no name matching).

    SD3: an ``SD3Transformer2DModel`` denoiser. SDXL: a UNet with ``addition_embed_type='text_time'`` and a second
    text encoder. SD2.x: one text encoder and a v-prediction scheduler or an OpenCLIP-width (1024) cross-attention.
    SD1.x: the rest with one CLIP encoder. Anything else is refused with what was found.
    """
    components = getattr(pipe, "components", {})
    transformer, unet = components.get("transformer"), components.get("unet")
    if transformer is not None and type(transformer).__name__ == "SD3Transformer2DModel":
        return FAMILIES["sd3"]
    if unet is not None and components.get("text_encoder") is not None:
        if getattr(unet.config, "addition_embed_type", None) == "text_time" and components.get("text_encoder_2"):
            return FAMILIES["sdxl"]
        if components.get("text_encoder_2") is None:
            v = getattr(components["scheduler"].config, "prediction_type", "epsilon") == "v_prediction"
            return FAMILIES["sd2"] if v or unet.config.cross_attention_dim == 1024 else FAMILIES["sd1"]
    denoiser = type(transformer or unet).__name__ if (transformer or unet) is not None else "none"
    raise FamilyNotSupportedError(
        f"{type(pipe).__name__} (denoiser {denoiser}) is not a supported model family; igmu_hf supports SD1.x, SD2.x, "
        f"SDXL and SD3 pipelines.")
