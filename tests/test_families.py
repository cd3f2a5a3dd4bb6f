"""ModelFamily on tiny pipelines of every family: the family reproduces what the pipeline itself computes, and its
training formulas equal diffusers' schedulers' own."""

import pytest
import torch

from igmu_hf.families import FamilyNotSupportedError, family_of
from igmu_hf.tiny_pipelines import clip_tokenizer, tiny_pipeline


@pytest.fixture(scope="module")
def pipes():
    return {f: tiny_pipeline(f, with_t5=f == "sd3") for f in ("sd1", "sd2", "sdxl", "sd3")}


def test_real_clip_tokenizer_ids():
    tok = clip_tokenizer()
    assert len(tok) == 49408
    # ids of openai/clip-vit-large-patch14's tokenizer (SD1.x): BOS 49406, "a photo of" 320 1125 539, EOS 49407
    assert tok("a photo of").input_ids == [49406, 320, 1125, 539, 49407]
    assert tok("Van Gogh", add_special_tokens=False).input_ids == [2451, 19697]


def test_family_is_read_from_the_pipeline(pipes):
    assert {f: family_of(p).name for f, p in pipes.items()} == {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl",
                                                                 "sd3": "sd3"}
    assert family_of(pipes["sd3"]).denoiser(pipes["sd3"]) is pipes["sd3"].transformer

    class NotAPipeline:
        components = {"unet": None}

    with pytest.raises(FamilyNotSupportedError, match="not a supported model family"):
        family_of(NotAPipeline())


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl", "sd3"])
def test_encode_and_predict_match_the_pipelines_own_denoiser_call(pipes, family):
    """The family's conditioning + denoiser call give exactly the output the pipeline computed while generating."""
    pipe = pipes[family]
    fam = family_of(pipe)
    den = fam.denoiser(pipe)
    seen = []

    def hook(module, args, kwargs, out):
        seen.append(([a.clone() for a in args], {k: v.clone() if torch.is_tensor(v) else v for k, v in kwargs.items()},
                     (out[0] if isinstance(out, tuple) else out.sample).clone()))

    handle = den.register_forward_hook(hook, with_kwargs=True)
    try:
        pipe("a church", num_inference_steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    args, kwargs, out = seen[0]
    x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
    t = args[1] if len(args) > 1 else kwargs["timestep"]
    t = (t if torch.is_tensor(t) else torch.tensor(t)).reshape(-1).expand(len(x))
    with torch.no_grad():
        pred = fam.predict(den, x, t, fam.encode(pipe, ["a church"]))
    torch.testing.assert_close(pred, out)


def test_training_formulas_equal_diffusers_schedulers():
    from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler

    from igmu_hf.families import FAMILIES

    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    t = torch.tensor([5, 400, 990])
    ddpm = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                         prediction_type="v_prediction")
    sd2 = FAMILIES["sd2"]
    torch.testing.assert_close(sd2.noisy(ddpm, x0, eps, t), ddpm.add_noise(x0, eps, t))
    torch.testing.assert_close(sd2.target(ddpm, x0, eps, t), ddpm.get_velocity(x0, eps, t))
    x_t = sd2.noisy(ddpm, x0, eps, t)
    torch.testing.assert_close(sd2.to_epsilon(ddpm, sd2.target(ddpm, x0, eps, t), x_t, t), eps)

    flow = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sd3 = FAMILIES["sd3"]
    ts = flow.timesteps[torch.tensor([0, 500, 999])]
    expected = torch.cat([flow.scale_noise(x0[i:i + 1], ts[i:i + 1], eps[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(sd3.noisy(flow, x0, eps, ts), expected)
    torch.testing.assert_close(sd3.target(flow, x0, eps, ts), eps - x0)
    torch.testing.assert_close(sd3.to_epsilon(flow, eps - x0, sd3.noisy(flow, x0, eps, ts), ts), eps,
                               atol=1e-5, rtol=1e-5)
    drawn = sd3.draw_timesteps(flow, 256, torch.Generator().manual_seed(1), max_timestep=750)
    assert set(drawn.tolist()) <= set(flow.timesteps.tolist())  # on the training schedule
    assert drawn.min() > flow.timesteps[750] - 1e-3  # u < 0.75: the first 750 of the descending schedule


@pytest.mark.parametrize("family", ["sdxl", "sd3"])
def test_sampling_timesteps_are_the_pipeline_schedulers(pipes, family):
    pipe = pipes[family]
    pipe("a church", num_inference_steps=3, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(family_of(pipe).sampling_timesteps(pipe, 3), pipe.scheduler.timesteps)


def test_capabilities_refuse_in_one_line(pipes):
    with pytest.raises(FamilyNotSupportedError, match="Stable Diffusion XL") as err:
        family_of(pipes["sdxl"]).require("single_text_encoder", "Dark Miner")
    assert "\n" not in str(err.value)
    family_of(pipes["sd2"]).require("single_text_encoder", "Dark Miner")  # SD2 has one encoder: no error
