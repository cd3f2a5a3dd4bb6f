# Receler: Reliable Concept Erasing of Text-to-Image Diffusion Models via Lightweight Erasers (Huang et al., ECCV 2024).
#
# The Hub-side file of igmu_hf's Receler pipelines (self-contained: torch + diffusers). A saved folder carries it twice:
# at its root (the pipeline class, ``model_index.json``'s ``_class_name``) and in ``eraser/`` (the eraser component's
# class), so stock diffusers loads the folder with
#
#     DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)
#
# The UNet is the original's; the erasers (``eraser/diffusion_pytorch_model.safetensors``) are attached to it by
# forward hooks on every cross-attention module: o ← o + E(o), E = up ∘ GELU ∘ down, up zero-initialised.
"""Receler's erasers as a diffusers component, and the Stable Diffusion pipeline that applies them."""

from __future__ import annotations

import torch
from diffusers import ModelMixin, StableDiffusionPipeline
from diffusers.configuration_utils import ConfigMixin, register_to_config


class Eraser(torch.nn.Module):
    """One lightweight eraser: ``up(GELU(down(o)))`` with ``up`` zero-initialised (the identity at the start)."""

    def __init__(self, dim: int, mid_dim: int):
        super().__init__()
        self.down = torch.nn.Linear(dim, mid_dim)
        self.act = torch.nn.GELU()
        self.up = torch.nn.Linear(mid_dim, dim)
        torch.nn.init.zeros_(self.up.weight)
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, o: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(o)))


class RecelerErasers(ModelMixin, ConfigMixin):
    """The erasers of every cross-attention module named in ``layers`` (its output width in ``dims``).

    ``attach(unet)`` hooks them in; ``enabled = False`` turns them off (the original model); with ``record = True``
    each eraser's output E(o) is appended to ``outputs`` (training's concept-mask penalty)."""

    @register_to_config
    def __init__(self, layers: list[str], dims: list[int], mid_dim: int = 128):
        super().__init__()
        if len(layers) != len(dims) or not layers:
            raise ValueError("`layers` and `dims` must name the same, non-zero number of cross-attention modules.")
        self.erasers = torch.nn.ModuleList(Eraser(d, mid_dim) for d in dims)
        self.enabled, self.record = True, False
        self.outputs: list[torch.Tensor] = []
        self._handles: list = []

    def attach(self, unet) -> None:
        """Hook the erasers onto ``unet``'s cross-attention modules (replacing earlier hooks of this object)."""
        self.detach()
        for name, eraser in zip(self.config.layers, self.erasers):
            try:
                module = unet.get_submodule(name)
            except AttributeError:
                raise ValueError(f"The UNet has no module {name!r}; these erasers were trained for another "
                                 f"architecture.") from None
            self._handles.append(module.register_forward_hook(self._hook(eraser)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, eraser: Eraser):
        def hook(module, args, output):
            if not self.enabled:
                return output
            delta = eraser(output)
            if self.record:
                self.outputs.append(delta)
            return output + delta

        return hook


class RecelerPipeline(StableDiffusionPipeline):
    """Stable Diffusion with Receler's erasers on its UNet's cross-attention outputs."""

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, eraser, safety_checker=None,
                 feature_extractor=None, image_encoder=None, requires_safety_checker: bool = False):
        super().__init__(vae, text_encoder, tokenizer, unet, scheduler, safety_checker, feature_extractor,
                         image_encoder, requires_safety_checker)
        self.register_modules(eraser=eraser)
        eraser.attach(unet)
