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


def _membrane_pipeline():
    """The tiny SD1 pipeline with SPM's rank-1 membrane, its up-projections set non-zero so ε_θ ≠ ε*."""
    from igmu_hf.diffusion import add_lora
    from igmu_hf.tiny_pipelines import tiny_pipeline

    pipe = tiny_pipeline("sd1")
    add_lora(pipe.unet, transformer_block_modules(pipe.unet), 1, 1, init_lora_weights=True, seed=0)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in pipe.unet.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return pipe


@pytest.mark.parametrize("empty_rows", [True, False])
def test_spm_loss_is_the_authors_formula_with_the_empty_anchoring_rows(empty_rows):
    """The loss written out from the authors' code: ESD's term on c, plus λ × the mean over the anchoring rows —
    with ∅ rows (their batch [∅, a1, ∅, a2, ∅, a3, ∅, a4], second half kept): λ(½ d(∅) + ¼ d(a3) + ¼ d(a4));
    without: λ · ¼ Σ d(a_i). Each term is one UNet call here, membrane on (ε_θ) or off (ε*)."""
    from igmu_hf.diffusion import adapters_disabled
    from igmu_hf.families import FAMILIES, Conditioning
    from igmu_hf.methods.spm import anchoring_rows, sample_anchors, spm_loss
    from igmu_hf.text import encode_prompts

    pipe, fam = _membrane_pipeline(), FAMILIES["sd1"]
    unet, lam, eta = pipe.unet, 1000.0, 1.0
    empty, c = (encode_prompts(pipe.tokenizer, pipe.text_encoder, [p]) for p in ("", "church"))
    anchors = sample_anchors(c, 4, torch.Generator().manual_seed(5))
    z = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([700])

    def on(states):
        return unet(z, t, states).sample

    def off(states):
        with adapters_disabled(unet), torch.no_grad():
            return unet(z, t, states).sample

    def d(states):
        return (on(states) - off(states)).pow(2).mean()

    e0, ep = off(empty), off(c)
    expected = (on(c) - (e0 - eta * (ep - e0))).pow(2).mean()
    if empty_rows:
        expected = expected + lam * (0.5 * d(empty) + 0.25 * d(anchors[2:3]) + 0.25 * d(anchors[3:4]))
    else:
        expected = expected + lam * 0.25 * sum(d(anchors[i:i + 1]) for i in range(4))
    ours = spm_loss(fam, unet, lambda x, tt, cond: off(cond.states) if len(cond) == 1 else
                    torch.cat([off(cond.states[i:i + 1]) for i in range(len(cond))]),
                    z, t, Conditioning(c), Conditioning(empty),
                    anchoring_rows(anchors, Conditioning(c), Conditioning(empty), empty_rows), eta, lam)
    assert float(expected.detach()) > 1e-3  # the membrane moves the prediction: the comparison is not of zeros
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=0)
    params = [p for n, p in unet.named_parameters() if p.requires_grad]
    g_ours = torch.cat([g.flatten() for g in torch.autograd.grad(ours, params)])
    g_expected = torch.cat([g.flatten() for g in torch.autograd.grad(expected, params)])
    assert float((g_ours - g_expected).norm() / g_expected.norm()) < 1e-4  # float32 sums in another order


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
    """On SDXL every anchor row the UNet sees carries the concept's pooled embedding (as diffusers' own
    ``encode_prompt`` computes it) beside the sampled anchor token states, which differ from the concept's; the
    ∅ rows of the authors' anchoring batch carry the empty prompt's states and pooled embedding."""
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
    with torch.no_grad():
        empty, _, empty_pooled, _ = pipe.encode_prompt("", device="cpu", do_classifier_free_guidance=False)
    for hidden, text_embeds in anchors:
        # the authors' rows for 3 anchors: [∅, a1, ∅, a2, ∅, a3][3:] = [a2, ∅, a3]
        torch.testing.assert_close(hidden[1], empty[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(text_embeds[1], empty_pooled[0], rtol=0, atol=1e-5)
        torch.testing.assert_close(text_embeds[0::2], pooled.expand(2, -1), rtol=0, atol=1e-5)
        assert not torch.allclose(hidden[0::2], states.expand(2, -1, -1), atol=1e-3)  # anchor tokens
    concept_rows = [t[i] for h, t in calls if len(h) < 3 for i in range(len(h))
                    if torch.allclose(h[i], states[0], atol=1e-5)]
    assert concept_rows and all(torch.allclose(t, pooled[0], atol=1e-5) for t in concept_rows)
    changed = [k for k, v in result.pipeline.unet.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and result.lora_state_dict and all(v.shape[0] == 1 for k, v in result.lora_state_dict.items()
                                                      if "lora_A" in k or "lora.down" in k)
