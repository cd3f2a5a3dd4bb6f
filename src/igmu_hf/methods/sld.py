"""SLD: Safe Latent Diffusion (Schramowski et al., CVPR 2023), an inference-time method: no weight changes; the
pipeline becomes :class:`~igmu_hf.pipelines.sld.pipeline_sld.SafeLatentDiffusionPipeline`, which steers classifier-free
guidance away from a safety concept (equations in ``pipelines/sld/pipeline_sld.py``).

The saved folder is a custom pipeline: ``pipeline_sld.py`` travels in it and ``model_index.json`` names
``["pipeline_sld", "SafeLatentDiffusionPipeline"]``, so stock diffusers loads it with ``trust_remote_code=True``;
igmu_hf loads it with its own copy of the class (no code from the folder runs). The efficiency aspect records the
extra UNet rows it costs per image.
"""

from dataclasses import dataclass, field
from typing import ClassVar

from .base import MethodConfig, Unlearner, register_method


@dataclass
class SLDConfig(MethodConfig):
    sld_preset: str = field(default="medium", metadata={
        "help": "The paper's hyper-parameter set: weak, medium (the authors' code default), strong or max."})
    safety_concept: str | None = field(default=None, metadata={
        "help": "Text guided away from (default: the concepts joined by ', '; for nudity the authors' I2P text)."})
    sld_warmup_steps: int | None = field(default=None, metadata={"help": "δ: steps before safety guidance applies "
                                                                         "(None: the preset's)."})
    sld_guidance_scale: float | None = field(default=None, metadata={"help": "s_S (None: the preset's)."})
    sld_threshold: float | None = field(default=None, metadata={"help": "λ (None: the preset's)."})
    sld_momentum_scale: float | None = field(default=None, metadata={"help": "s_m (None: the preset's)."})
    sld_mom_beta: float | None = field(default=None, metadata={"help": "β_m (None: the preset's)."})

    field_ranges: ClassVar[dict] = {"sld_warmup_steps": (0, None, True), "sld_mom_beta": (0, 1, True)}

    def __post_init__(self):
        super().__post_init__()
        self.settings()  # a bad preset or field is refused here

    def settings(self) -> dict[str, float]:
        from ..pipelines.sld.pipeline_sld import SafeLatentDiffusionPipeline

        return SafeLatentDiffusionPipeline.sld_settings(
            self.sld_preset, sld_warmup_steps=self.sld_warmup_steps, sld_guidance_scale=self.sld_guidance_scale,
            sld_threshold=self.sld_threshold, sld_momentum_scale=self.sld_momentum_scale,
            sld_mom_beta=self.sld_mom_beta)

    def safety_text(self) -> str:
        from ..judges import is_nudity
        from ..pipelines.sld.pipeline_sld import DEFAULT_SAFETY_CONCEPT

        if self.safety_concept:
            return self.safety_concept
        if any(is_nudity(c) for c in self.concepts):
            return DEFAULT_SAFETY_CONCEPT
        return ", ".join(self.concepts)


class SLDUnlearner(Unlearner):
    """Wrap the pipeline in SLD's safety-guided pipeline class (see module docstring)."""

    config_class = SLDConfig
    technique = "inference-time safety guidance (no weight change)"
    artifact_kind = "inference-time only"
    multi_concept = True  # the safety concept is a text listing several
    requires = ("single_text_encoder", "ddpm_unet")  # a StableDiffusionPipeline (SD1.x / SD2.x)
    display_name = "SLD"
    reference_code = ("ml-research/safe-latent-diffusion (the authors' implementation, contributed to diffusers as "
                      "StableDiffusionPipelineSafe, deprecated there): the safety-guidance step and the four presets")
    deviations = ("The safety concept defaults to the erased concept(s) (the authors' I2P text for nudity), so SLD is "
                  "comparable with the other methods on any task; the paper always guides away from the I2P text.",
                  "No image safety checker: only the guidance is evaluated.")

    def _unlearn(self, pipeline) -> list[str]:
        return []

    def wrap_pipeline(self, pipeline):
        from ..pipelines.sld.pipeline_sld import SafeLatentDiffusionPipeline

        components = {k: v for k, v in pipeline.components.items() if k in (
            "vae", "text_encoder", "tokenizer", "unet", "scheduler", "safety_checker", "feature_extractor",
            "image_encoder")}
        sld = SafeLatentDiffusionPipeline(**components, requires_safety_checker=False,
                                          safety_concept=self.config.safety_text(), sld_preset=self.config.sld_preset,
                                          **{k: getattr(self.config, k) for k in self.config.settings()})
        sld.set_progress_bar_config(disable=True)
        return sld

    def extra_metadata(self, pipeline) -> dict:
        rows = pipeline.unet_rows_per_step()
        return {"custom_pipeline": ["pipeline_sld", "SafeLatentDiffusionPipeline"],
                "inference_cost": {"unet_rows_per_step": rows, "stock_unet_rows_per_step": 2,
                                   "extra_unet_passes_per_image_per_step": rows - 2}}


register_method("sld", SLDUnlearner)
