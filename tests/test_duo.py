"""DUO: the loss is the card's formula, pairs are built and filtered by the detector, the LoRA round-trips."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from igmu_hf.diffusion import add_lora, reference_forward
from igmu_hf.methods.duo import SELF_ATTENTION, DUOConfig, DUOUnlearner, build_pairs, duo_loss


def _tiny_pipe(path):
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(path)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_duo_loss_equals_the_card_formula_computed_term_by_term(tiny_pipeline_dir):
    pipe = _tiny_pipe(tiny_pipeline_dir)
    cfg = DUOConfig(concepts=["circle"], beta=50.0, base_lambda=1e2, lora_rank=4, lora_alpha=4)
    add_lora(pipe.unet, SELF_ATTENTION, cfg.lora_rank, cfg.lora_alpha)
    with torch.no_grad():  # move the adapter off its zero start so policy and reference differ
        for n, p in pipe.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(n)))
    unet = pipe.unet
    b, shape = 3, (3, 4, 8, 8)
    x_pos, x_neg = torch.randn(shape), torch.randn(shape)
    cond, uncond = torch.randn(1, 32, 32), torch.randn(1, 32, 32)
    acp = pipe.scheduler.alphas_cumprod

    ref_forward = reference_forward(unet)
    loss, _ = duo_loss(unet, ref_forward, x_pos, x_neg, cond, uncond, cfg, torch.Generator().manual_seed(5),
                       pipe.scheduler)

    # the same draws, in the order the card lists them, and one UNet call per term
    g = torch.Generator().manual_seed(5)
    eps = torch.randn(shape, generator=g)
    t_pos = torch.randint(0, 750, (b,), generator=g)
    t_neg = torch.randint(0, 750, (b,), generator=g)
    z = torch.randn(shape, generator=g)
    c = cond.expand(b, -1, -1)

    def noisy(x, t):
        a = acp[t].view(-1, 1, 1, 1)
        return a.sqrt() * x + (1 - a).sqrt() * eps

    def mse(pred):
        return ((pred - eps) ** 2).mean(dim=(1, 2, 3))

    with torch.no_grad():
        pol_pos, pol_neg = unet(noisy(x_pos, t_pos), t_pos, c).sample, unet(noisy(x_neg, t_neg), t_neg, c).sample
        ref_pos, ref_neg = ref_forward(noisy(x_pos, t_pos), t_pos, c), ref_forward(noisy(x_neg, t_neg), t_neg, c)
        t999 = torch.full((b,), 999)
        pol_z, ref_z = unet(z, t999, uncond.expand(b, -1, -1)).sample, ref_forward(z, t999, uncond.expand(b, -1, -1))
    d = (mse(pol_pos) - mse(ref_pos)) - (mse(pol_neg) - mse(ref_neg))
    expected = -F.logsigmoid(-cfg.beta * d).mean() + cfg.base_lambda * cfg.beta / 100 * ((pol_z - ref_z) ** 2).mean()
    assert abs(d).max() > 1e-6, "policy and reference coincide: the check would be vacuous"
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)
    assert cfg.learning_rate == pytest.approx(3e-4 * 100 / 50) and cfg.reg_lambda == pytest.approx(1e2 * 50 / 100)


def test_pairs_keep_detected_unsafe_images_and_retry_edits(tiny_pipeline_dir):
    pipe = _tiny_pipe(tiny_pipeline_dir)
    calls = []

    def detector(images):  # fires on every other generation, and on the first edit of each pair
        calls.append(len(images))
        return [len(calls) % 3 != 2]

    cfg = DUOConfig(concepts=["circle"], num_pairs=2, num_inference_steps=2, max_edit_retries=2,
                    unsafe_prompts=["a circle"], safe_prompts=["a square"])
    pairs = build_pairs(pipe, detector, cfg, progress=False)
    assert len(pairs) == 2 and set(pairs.column_names) >= {"unsafe", "safe", "edit_retries", "safe_detected"}
    assert pairs[0]["unsafe"].size == (32, 32) and pairs[0]["safe_prompt"] == "a square"
    assert pairs["edit_retries"] == [0, 1] and pairs["safe_detected"] == [False, False]
    assert len(calls) == 5  # 2 generations kept + 3 edits, each judged once


def test_pairs_refuse_an_undetectable_pool(tiny_pipeline_dir):
    cfg = DUOConfig(concepts=["circle"], num_pairs=1, num_inference_steps=2, unsafe_prompts=["a circle"],
                    safe_prompts=["a square"])
    with pytest.raises(ValueError, match="detector fired on none"):
        build_pairs(_tiny_pipe(tiny_pipeline_dir), lambda ims: [False] * len(ims), cfg, progress=False)


def test_bad_config_and_unknown_lora_modules_say_what_to_do(tiny_pipeline_dir):
    with pytest.raises(ValueError, match="beta"):
        DUOConfig(concepts=["circle"], beta=0)
    with pytest.raises(ValueError, match="sdedit_strength"):
        DUOConfig(concepts=["circle"], sdedit_strength=1.5)
    pipe = _tiny_pipe(tiny_pipeline_dir)
    with pytest.raises(ValueError, match=r"match nothing.*attn1\.to_q"):
        add_lora(pipe.unet, ["attn9.to_q"], 4, 4)


def test_saved_lora_loads_into_a_stock_pipeline_and_draws_the_same_images(tiny_pipeline_dir, tmp_path):
    from diffusers import StableDiffusionPipeline

    from igmu_hf.hub import save_unlearned_pipeline

    pipe = _tiny_pipe(tiny_pipeline_dir)
    cfg = DUOConfig(concepts=["circle"], num_pairs=2, num_inference_steps=2, max_train_steps=3, lora_rank=4,
                    lora_alpha=4, base_lr=3.0, unsafe_prompts=["a circle"], safe_prompts=["a square"])
    result = DUOUnlearner(cfg, detector=lambda ims: [True] * len(ims), progress=False).unlearn(pipe)
    assert result.edited_parameter_count > 0 and result.extra["training"]["isfinite"]
    out = save_unlearned_pipeline(result, tmp_path / "duo", base_model=tiny_pipeline_dir)
    assert (out / "pytorch_lora_weights.safetensors").exists()

    def draw(p):
        return np.asarray(p("a circle", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                            output_type="np").images[0])

    fused = draw(result.pipeline)
    stock = _tiny_pipe(tiny_pipeline_dir)
    base = draw(stock)
    stock.load_lora_weights(str(out))
    assert np.abs(fused - base).max() > 1e-4, "the LoRA changed nothing: the round trip would be vacuous"
    # unfused, the adapter adds B·A·x beside W·x: equal up to float rounding, which this deliberately large LoRA
    # (base_lr 3) amplifies to a few 1e-3 (torch 2.14); fused, the loaded file gives our weights exactly
    np.testing.assert_allclose(draw(stock), fused, atol=1e-2)
    stock.fuse_lora()
    np.testing.assert_allclose(draw(stock), fused, atol=1e-5)
    np.testing.assert_allclose(draw(_tiny_pipe(str(out))), fused, atol=1e-5)
    assert isinstance(StableDiffusionPipeline.from_pretrained(out), StableDiffusionPipeline)


def _tiny_pairs(pipe):
    cfg = DUOConfig(concepts=["circle"], num_pairs=3, num_inference_steps=2, unsafe_prompts=["a circle"],
                    safe_prompts=["a square"])
    return build_pairs(pipe, lambda ims: [True] * len(ims), cfg, progress=False)


def test_interrupted_training_resumes_to_the_uninterrupted_adapter(tiny_pipeline_dir, tmp_path, crash_at):
    from igmu_hf.diffusion import lora_state_dict
    from igmu_hf.methods.duo import train_duo

    pairs = _tiny_pairs(_tiny_pipe(tiny_pipeline_dir))
    cfg = DUOConfig(concepts=["circle"], max_train_steps=6, train_batch_size=2, lora_rank=4, lora_alpha=4,
                    base_lr=1.0, base_lambda=1.0)
    full = _tiny_pipe(tiny_pipeline_dir)
    train_duo(full, pairs, cfg, progress=False)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(crash_at.Crash):
        train_duo(_tiny_pipe(tiny_pipeline_dir), pairs, cfg, progress=False, output_dir=str(ckpt),
                  checkpointing_steps=2, callback=crash_at(4))
    assert [p.name for p in sorted(ckpt.glob("checkpoint-*"))] == ["checkpoint-2", "checkpoint-4"]
    resumed = _tiny_pipe(tiny_pipeline_dir)
    stats = train_duo(resumed, pairs, cfg, progress=False, output_dir=str(ckpt), resume_from_checkpoint="latest")
    a, b = lora_state_dict(full.unet), lora_state_dict(resumed.unet)
    assert max(float(v.abs().max()) for k, v in a.items() if "lora.up" in k) > 1e-3  # the adapter moved
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    assert stats["steps"] == 6 and stats["isfinite"]

    changed = DUOConfig(**{**{k: v for k, v in cfg.to_dict().items() if k not in ("method", "defaults_version")},
                           "beta": 250.0})
    with pytest.raises(ValueError, match=r"different config.*beta: checkpoint=500\.0 now=250\.0"):
        train_duo(_tiny_pipe(tiny_pipeline_dir), pairs, changed, progress=False, output_dir=str(ckpt),
                  resume_from_checkpoint="latest")


def test_adapters_of_two_concepts_combine_with_set_adapters(tiny_pipeline_dir, tmp_path):
    from igmu_hf.diffusion import lora_state_dict
    from igmu_hf.methods.duo import train_duo

    folders = []
    for concept, prompts in (("circle", ["a circle", "a square"]), ("star", ["a star", "a triangle"])):
        pipe = _tiny_pipe(tiny_pipeline_dir)
        cfg = DUOConfig(concepts=[concept], num_pairs=2, num_inference_steps=2, max_train_steps=3, lora_rank=4,
                        lora_alpha=4, base_lr=3.0, unsafe_prompts=prompts[:1], safe_prompts=prompts[1:])
        train_duo(pipe, build_pairs(pipe, lambda ims: [True] * len(ims), cfg, progress=False), cfg, progress=False)
        folders.append(tmp_path / concept)
        pipe.save_lora_weights(folders[-1], unet_lora_layers=lora_state_dict(pipe.unet))

    def draw(p):
        return np.asarray(p("a circle", num_inference_steps=3, generator=torch.Generator().manual_seed(0),
                            output_type="np").images[0])

    stock = _tiny_pipe(tiny_pipeline_dir)
    stock.load_lora_weights(str(folders[0]), adapter_name="circle")
    stock.load_lora_weights(str(folders[1]), adapter_name="star")
    stock.set_adapters(["circle"], adapter_weights=[1.0])
    only_circle = draw(stock)
    stock.set_adapters(["circle", "star"], adapter_weights=[1.0, 1.0])
    both = draw(stock)
    single = _tiny_pipe(tiny_pipeline_dir)
    single.load_lora_weights(str(folders[0]))
    np.testing.assert_allclose(only_circle, draw(single), atol=1e-4)  # set_adapters selects, and
    assert np.abs(both - only_circle).max() > 1e-4  # the second concept's adapter acts on top of the first


def test_default_detector_fires_on_any_of_several_concepts(mini_pipeline):
    """DUO's pair filter for concepts=['circle', 'square'] keeps squares too (it was built from concepts[0] only)."""
    from igmu_hf.evaluation import MINI_GENERATION, generate_images
    from igmu_hf.methods.duo import default_detector

    squares = generate_images(mini_pipeline, ["a red square", "a blue square", "a square"], [0, 1, 2],
                              progress=False, **MINI_GENERATION)
    circles = generate_images(mini_pipeline, ["a red circle", "a green circle"], [0, 1], progress=False,
                              **MINI_GENERATION)
    only_circle, both = default_detector(["circle"]), default_detector(["circle", "square"])
    assert not any(only_circle(squares)) and all(only_circle(circles))
    assert all(both(squares)) and all(both(circles))


def test_preserve_reaches_duo_and_conditions_its_prior_term(tiny_pipeline_dir, tmp_path):
    """``igmu unlearn --preserve`` lands in DUO's config (it was dropped) and changes what the prior term keeps."""
    from igmu_hf.cli import run_unlearn
    from igmu_hf.diffusion import lora_state_dict
    from igmu_hf.methods.duo import train_duo

    kwargs = {"pair_filter": "none", "num_pairs": 2, "num_inference_steps": 2, "max_train_steps": 2,
              "lora_rank": 4, "lora_alpha": 4, "unsafe_prompts": ["a circle"], "safe_prompts": ["a square"]}
    folder, result = run_unlearn("duo", ["circle"], str(tmp_path / "duo"), tiny_pipeline_dir,
                                 preserve=["a red square"], method_kwargs=kwargs)
    run = json.loads((folder / "igmu_run.json").read_text())
    assert run["config"]["preserve_prompts"] == ["a red square"] == result.config.preserve_prompts

    pairs = _tiny_pairs(_tiny_pipe(tiny_pipeline_dir))
    adapters = []
    for preserve in ([], ["a red square", "a blue star"]):
        cfg = DUOConfig(concepts=["circle"], max_train_steps=3, train_batch_size=2, lora_rank=4, lora_alpha=4,
                        base_lr=1.0, base_lambda=10.0, preserve_prompts=preserve)
        pipe = _tiny_pipe(tiny_pipeline_dir)
        train_duo(pipe, pairs, cfg, progress=False)
        adapters.append(lora_state_dict(pipe.unet))
    assert max(float((adapters[0][k] - adapters[1][k]).abs().max()) for k in adapters[0]) > 1e-6
