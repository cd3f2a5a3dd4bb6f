"""SalUn and SPM: SalUn's mask keeps the largest saliencies and training changes no weight outside it; SPM's
membrane is rank 1 on the transformer blocks' Linear and Conv layers, its timestep is the authors', and its LoRA file
loaded by stock diffusers into the original pipeline draws the unlearned model's images; killed runs resume to the
uninterrupted weights; bad settings are refused."""

import numpy as np
import pytest
import torch

from igmu_hf.api import run_unlearn
from igmu_hf.hub import load_pipeline
from igmu_hf.methods import SalUnConfig, SalUnUnlearner, SPMConfig, SPMUnlearner
from igmu_hf.methods.salun import saliency_mask
from igmu_hf.methods.spm import spm_timestep, transformer_block_modules


# all its tests run in one xdist worker, so its module fixtures (salun_run, spm_run) are never built in both
pytestmark = pytest.mark.xdist_group("salun_spm")


FAST_SALUN = {"num_images": 4, "num_train_epochs": 2, "train_batch_size": 2, "learning_rate": 1e-4,
              "num_inference_steps": 8}
FAST_SPM = {"iterations": 6, "ddim_steps": 6, "lr": 1e-2, "anchor_batch_size": 2}


def test_saliency_mask_keeps_the_largest_gradients_under_one_threshold():
    g = torch.Generator().manual_seed(0)
    grads = {"a": torch.randn(10, 7, generator=g), "b": torch.randn(31, generator=g) * 3}
    mask = saliency_mask(grads, 0.3)
    values = np.concatenate([grads[k].abs().flatten().numpy() for k in grads])
    kept = np.concatenate([mask[k].flatten().numpy() for k in grads]).astype(bool)
    assert kept.sum() == round(0.3 * values.size)
    assert values[kept].min() > values[~kept].max()


@pytest.fixture(scope="module")
def salun_run():
    cfg = SalUnConfig(concepts=["circle"], retain_prompts=["a red square", "a blue star"], **FAST_SALUN)
    return cfg, SalUnUnlearner(cfg, progress=False).unlearn(load_pipeline())


def test_salun_changes_no_weight_outside_half_of_the_unet(salun_run):
    _, result = salun_run
    original = load_pipeline().unet.state_dict()
    after = result.pipeline.unet.state_dict()
    changed = sum(int((after[k] != original[k]).sum()) for k in original)
    total = sum(v.numel() for v in original.values())
    stats = result.extra["training"]
    assert abs(stats["masked_share"] - 0.5) < 0.01
    assert 0 < changed <= stats["masked_share"] * total
    assert stats["steps"] == 2 * 2 and stats["forget_images"] == 4 and stats["retain_images"] == 4


def test_salun_resumes_to_the_uninterrupted_weights(salun_run, killed_and_resumed):
    cfg, full = salun_run
    resumed = killed_and_resumed(SalUnUnlearner, cfg, 2)
    for (k, a), b in zip(resumed.pipeline.unet.state_dict().items(), full.pipeline.unet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_spm_timestep_is_the_authors_index_into_a_1000_step_schedule():
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(num_train_timesteps=1000)
    sched.set_timesteps(1000)
    for k in (1, 7, 49):
        assert spm_timestep(k, 50, 1000) == int(sched.timesteps[int(k * 1000 / 50)])


def test_spm_anchors_are_random_states_at_the_targets_scale():
    from igmu_hf.methods.spm import sample_anchors

    target = torch.randn(1, 32, 128, generator=torch.Generator().manual_seed(1))
    anchors = sample_anchors(target, 50, torch.Generator().manual_seed(2))
    ratios = anchors.flatten(1).norm(dim=1) / target.norm()
    assert anchors.shape == (50, 32, 128) and float(ratios.min()) >= 0.8 - 1e-5 and float(ratios.max()) <= 1.2 + 1e-5
    cos = torch.nn.functional.cosine_similarity(anchors.flatten(1), target.flatten(1))
    assert float(cos.abs().max()) < 0.1  # directions unrelated to the target's


@pytest.fixture(scope="module")
def spm_run(tmp_path_factory):
    return run_unlearn("spm", ["circle"], str(tmp_path_factory.mktemp("spm") / "spm"), method_kwargs=FAST_SPM)


def test_spm_membrane_is_a_rank_one_lora_stock_diffusers_loads(spm_run, mini_pipeline):
    folder, result = spm_run
    assert result.artifact_kind == "LoRA adapter"
    downs = {k: v for k, v in result.lora_state_dict.items() if "lora_A" in k or "lora.down" in k}
    assert downs and all(v.shape[0] == 1 for v in downs.values())
    targets = transformer_block_modules(mini_pipeline.unet)
    assert any(t.endswith("proj_in") for t in targets) and any(t.endswith("ff.net.2") for t in targets)
    assert len(downs) == len(targets)  # every Linear/Conv of the transformer blocks, nothing else
    original = load_pipeline()
    original.load_lora_weights(str(folder))
    kwargs = dict(num_inference_steps=8, guidance_scale=5.0, output_type="np")
    prompts = ["a red circle", "a blue square"]
    a = original(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    b = load_pipeline(str(folder))(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)],
                                   **kwargs).images
    c = mini_pipeline(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-4)
    assert np.abs(b - c).max() > 1e-3


def test_spm_resumes_to_the_uninterrupted_membrane(spm_run, killed_and_resumed):
    _, result = spm_run
    cfg = SPMConfig(concepts=["circle"], **FAST_SPM)
    resumed = killed_and_resumed(SPMUnlearner, cfg, 4)
    for k, v in result.lora_state_dict.items():
        torch.testing.assert_close(resumed.lora_state_dict[k], v, rtol=0, atol=1e-6, msg=k)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mask_ratio"):
        SalUnConfig(concepts=["circle"], retain_prompts=["a square"], mask_ratio=1.5)
    with pytest.raises(ValueError, match="retain_prompts"):
        SalUnConfig(concepts=["circle"])
    with pytest.raises(ValueError, match="train_method"):
        SalUnConfig(concepts=["circle"], retain_prompts=["a square"], train_method="some")
    with pytest.raises(ValueError, match="ddim_steps"):
        SPMConfig(concepts=["circle"], ddim_steps=1)
    with pytest.raises(ValueError, match="anchor_strength"):
        SPMConfig(concepts=["circle"], anchor_strength=-1.0)


def test_spm_trains_on_sdxl_with_the_concepts_pooled_embedding():
    """On SDXL every anchor batch the UNet sees carries the concept's pooled embedding (as diffusers' own
    ``encode_prompt`` computes it) beside the sampled anchor token states, which differ from the concept's."""
    from igmu_hf.tiny_pipelines import tiny_pipeline

    pipe = tiny_pipeline("sdxl")
    with torch.no_grad():
        states, _, pooled, _ = pipe.encode_prompt("church", device="cpu", do_classifier_free_guidance=False)
    calls = []

    def record(module, args, kwargs):
        hidden = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]  # UNet(sample, t, states, ...)
        calls.append((hidden.detach().clone(),
                      kwargs["added_cond_kwargs"]["text_embeds"].detach().clone()))

    hook = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    try:
        result = SPMUnlearner(SPMConfig(concepts=["church"], iterations=2, ddim_steps=3, anchor_batch_size=3,
                                        lr=1e-2), progress=False).unlearn(pipe)
    finally:
        hook.remove()
    anchors = [(h, t) for h, t in calls if len(h) == 3]  # batch 3 = the anchor batch (the ESD pair is 2 rows)
    assert len(anchors) == 2 * 2  # per iteration: the frozen original and the trained UNet
    for hidden, text_embeds in anchors:
        torch.testing.assert_close(text_embeds, pooled.expand(3, -1), rtol=0, atol=1e-5)
        assert not torch.allclose(hidden, states.expand(3, -1, -1), atol=1e-3)  # anchor tokens, not the concept's
    concept_rows = [t[i] for h, t in calls if len(h) < 3 for i in range(len(h))
                    if torch.allclose(h[i], states[0], atol=1e-5)]
    assert concept_rows and all(torch.allclose(t, pooled[0], atol=1e-5) for t in concept_rows)
    changed = [k for k, v in result.pipeline.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and result.lora_state_dict and all(v.shape[0] == 1 for k, v in result.lora_state_dict.items()
                                                      if "lora_A" in k or "lora.down" in k)
