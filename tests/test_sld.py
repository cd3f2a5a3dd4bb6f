"""SLD (inference-time): the guidance step against the paper's equations and against the authors' implementation
(diffusers' deprecated StableDiffusionPipelineSafe) on the same tiny pipeline; the saved custom pipeline folder loads
with stock diffusers from a local hub cache by id, offline, and draws the same images; bad settings are refused."""

import numpy as np
import pytest
import torch

from igmu_hf.api import run_unlearn
from igmu_hf.hub import load_pipeline, publish_to_cache
from igmu_hf.pipelines.sld.pipeline_sld import SLD_PRESETS, SafeLatentDiffusionPipeline, safety_guidance


def _equations(u, p, s, nu, i, sld_guidance_scale, sld_warmup_steps, sld_threshold, sld_momentum_scale,
               sld_mom_beta):
    """Equations 3-8 of the SLD paper, element by element in plain Python."""
    g, new_nu = [], []
    for e_u, e_p, e_s, m in zip(u, p, s, nu):
        mu = 0.0 if e_p - e_s >= sld_threshold else min(abs(e_p - e_s) * sld_guidance_scale, 1.0)
        gamma = mu * (e_s - e_u) + sld_momentum_scale * m
        new_nu.append(sld_mom_beta * m + (1 - sld_mom_beta) * gamma)
        g.append((e_p - e_u) - (gamma if i >= sld_warmup_steps else 0.0))
    return g, new_nu


@pytest.mark.parametrize("preset", sorted(SLD_PRESETS))
def test_safety_guidance_is_the_papers_equations(preset):
    gen = torch.Generator().manual_seed(0)
    u, p, s, nu = (torch.randn(64, generator=gen, dtype=torch.float64) * 0.02 for _ in range(4))
    settings = SafeLatentDiffusionPipeline.sld_settings(preset)
    for step in (0, 8, 20):
        ours, ours_nu = safety_guidance(u, p, s, nu, step, **settings)
        ref, ref_nu = _equations(u.tolist(), p.tolist(), s.tolist(), nu.tolist(), step, **settings)
        np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours_nu.numpy(), ref_nu, rtol=0, atol=1e-12)


def test_same_images_as_the_authors_implementation(tiny_pipeline_dir):
    """diffusers' StableDiffusionPipelineSafe is the SLD authors' code (deprecated there, not built upon here)."""
    from diffusers.pipelines.deprecated.stable_diffusion_safe import StableDiffusionPipelineSafe

    base = load_pipeline(tiny_pipeline_dir)
    parts = {k: base.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    theirs = StableDiffusionPipelineSafe(**parts, safety_checker=None, feature_extractor=None,
                                         requires_safety_checker=False)
    ours = SafeLatentDiffusionPipeline(**parts, safety_concept="a church", sld_preset="strong")
    for pipe in (theirs, ours):
        pipe.set_progress_bar_config(disable=True)
    theirs.safety_concept = "a church"
    kwargs = dict(num_inference_steps=12, guidance_scale=7.5, output_type="np")
    a = ours(["a photo of a church", "a dog"], generator=torch.Generator().manual_seed(3), **kwargs).images
    b = theirs(["a photo of a church", "a dog"], generator=torch.Generator().manual_seed(3), **kwargs,
               **SLD_PRESETS["strong"]).images
    plain = base(["a photo of a church", "a dog"], generator=torch.Generator().manual_seed(3), **kwargs).images
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-5)
    assert np.abs(a - plain).max() > 1e-3  # the guidance changed the images


def test_saved_sld_pipeline_loads_offline_by_hub_id_with_stock_diffusers(tmp_path, monkeypatch):
    from diffusers import DiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder, result = run_unlearn("sld", ["circle"], str(tmp_path / "sld"), method_kwargs={"sld_preset": "max"})
    assert result.edited_parameter_count == 0 and result.artifact_kind == "inference-time only"
    run = load_pipeline(str(folder))
    assert isinstance(run, SafeLatentDiffusionPipeline) and run.config.safety_concept == "circle"
    publish_to_cache(folder, "igmu/mini-sld-circle", cache_dir=tmp_path / "hub")
    stock = DiffusionPipeline.from_pretrained("igmu/mini-sld-circle", cache_dir=tmp_path / "hub",
                                              trust_remote_code=True)
    assert type(stock).__name__ == "SafeLatentDiffusionPipeline" and stock.config.sld_guidance_scale == 5000
    stock.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=10, guidance_scale=5.0, output_type="np")
    prompts = ["a red circle", "a blue square"]
    a = result.pipeline(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    b = stock(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    c = run(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    from igmu_hf.metrics.efficiency import efficiency_from_run

    cost = efficiency_from_run(folder)["inference_cost"]
    assert cost["unet_rows_per_step"] == 3 and cost["stock_unet_rows_per_step"] == 2


def test_bad_sld_settings_and_families_are_refused():
    from igmu_hf.methods import SLDConfig, SLDUnlearner
    from igmu_hf.tiny_pipelines import tiny_pipeline

    with pytest.raises(ValueError, match="sld_preset"):
        SLDConfig(concepts=["circle"], sld_preset="extreme")
    with pytest.raises(ValueError, match="sld_mom_beta"):
        SLDConfig(concepts=["circle"], sld_mom_beta=2.0)
    with pytest.raises(ValueError, match="sld_guidance_scale"):
        SLDConfig(concepts=["circle"], sld_guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="SLD"):
        SLDUnlearner(SLDConfig(concepts=["church"])).unlearn(tiny_pipeline("sdxl"))
