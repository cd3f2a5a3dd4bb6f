"""CA and DoCo: the caption pairs follow CatIGMU's interventions; training pulls ε(x_t, c*) onto ε(x_t, c) on images
it never saw; DoCo's surgery removes exactly the conflicting component, only the chosen weights move, and a killed run
(discriminator included) resumes to the uninterrupted weights; bad settings are refused."""

import pytest
import torch

from igmu_hf.hub import load_pipeline
from igmu_hf.methods import CAConfig, CAUnlearner, DoCoConfig, DoCoUnlearner
from igmu_hf.methods.ca import caption_pairs
from igmu_hf.methods.doco import PatchDiscriminator, project_conflicting

FAST_CA = {"num_images": 6, "max_train_steps": 30, "learning_rate": 2e-5, "num_inference_steps": 10,
           "train_batch_size": 4}
FAST_DOCO = {"num_images": 4, "max_train_steps": 6, "learning_rate": 2e-5, "num_inference_steps": 8,
             "discriminator_layers": 1, "discriminator_channels": 8}


def test_caption_pairs_replace_objects_and_drop_styles():
    circle = caption_pairs(["circle"], ["a red circle on a ocean background"], None, 2)
    assert circle == [("a red circle on a ocean background", "a red square on a ocean background", "circle")] * 2
    sketch = caption_pairs(["sketch"], ["a blue star, sketch style"], None, 1)
    assert sketch == [("a blue star, sketch style", "a blue star", "sketch")]
    assert caption_pairs(["circle"], ["a red circle"], "star", 1)[0][1] == "a red star"
    with pytest.raises(ValueError, match="does not mention"):
        caption_pairs(["circle"], ["a red square"], None, 1)


def _gap(pipe, pairs, seed=123):
    """mean ‖ε(x_t, c*) − ε(x_t, c)‖² on fresh noise over images of the anchor captions (independent of training)."""
    from igmu_hf.evaluation import generate_images
    from igmu_hf.families import family_of

    family = family_of(pipe)
    images = generate_images(pipe, [a for _, a, _ in pairs], list(range(500, 500 + len(pairs))), progress=False,
                             num_inference_steps=8)
    x0 = family.latents(pipe, images)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g)
    t = torch.randint(100, 900, (len(x0),), generator=g)
    sched = family.training_scheduler(pipe)
    x = family.noisy(sched, x0, noise, t)
    with torch.no_grad():
        a = family.predict(family.denoiser(pipe), x, t, family.encode(pipe, [p for p, _, _ in pairs]))
        b = family.predict(family.denoiser(pipe), x, t, family.encode(pipe, [c for _, c, _ in pairs]))
    return float(((a - b) ** 2).mean())


def test_ca_pulls_the_target_caption_onto_the_anchor_and_trains_its_group():
    cfg = CAConfig(concepts=["circle"], **FAST_CA)
    assert (cfg.parameter_group, cfg.learning_rate) == ("crossattn_kv", 2e-5)  # the authors' cross-attn K/V
    nudity = CAConfig(concepts=["nudity"])
    assert (nudity.parameter_group, nudity.learning_rate, nudity.max_train_steps) == ("full", 2e-7, 400)
    pairs = caption_pairs(["circle"], [], None, 4)
    before_pipe = load_pipeline()
    before = _gap(before_pipe, pairs)
    result = CAUnlearner(cfg, progress=False).unlearn(load_pipeline())
    after = _gap(result.pipeline, pairs)
    assert after < 0.5 * before, (before, after)
    changed = {n for (n, a), b in zip(result.pipeline.unet.state_dict().items(), before_pipe.unet.state_dict().values())
               if not torch.equal(a, b)}
    assert changed and all(".attn2.to_k." in n or ".attn2.to_v." in n for n in changed)
    assert result.extra["training"]["steps"] == 30


def test_surgery_removes_only_the_conflicting_component():
    g_p = torch.tensor([1.0, 0.0, 0.0])
    out, conflict = project_conflicting(torch.tensor([-2.0, 1.0, 3.0]), g_p)
    assert conflict and torch.allclose(out, torch.tensor([0.0, 1.0, 3.0]))
    same, conflict = project_conflicting(torch.tensor([2.0, 1.0, 3.0]), g_p)
    assert not conflict and torch.equal(same, torch.tensor([2.0, 1.0, 3.0]))
    g = torch.Generator().manual_seed(0)
    u, p = torch.randn(50, generator=g), torch.randn(50, generator=g)
    u = u - 2 * (u @ p).abs() / (p @ p) * p  # make them conflict
    out, conflict = project_conflicting(u, p)
    assert conflict and abs(float(out @ p)) < 1e-4  # no component along p is left
    assert abs(float(torch.nn.functional.cosine_similarity(out - u, p, dim=0))) > 1 - 1e-5  # only p's was removed


def test_patch_discriminator_scores_patches_of_latents():
    d = PatchDiscriminator(8, 8, 1)
    assert d(torch.randn(2, 8, 8, 8)).shape[:2] == (2, 1)
    assert PatchDiscriminator(4, 64, 3)(torch.randn(1, 4, 64, 64)).shape == (1, 1, 6, 6)  # pix2pix's 70×70 PatchGAN


def test_doco_resumes_to_the_uninterrupted_run_and_moves_only_cross_attention(killed_and_resumed):
    cfg = DoCoConfig(concepts=["circle"], **FAST_DOCO)
    full = DoCoUnlearner(cfg, progress=False).unlearn(load_pipeline())
    resumed = killed_and_resumed(DoCoUnlearner, cfg, 3)
    original = load_pipeline().unet.state_dict()
    moved = []
    for (k, a), b in zip(resumed.pipeline.unet.state_dict().items(), full.pipeline.unet.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
        if not torch.equal(a, original[k]):
            moved.append(k)
    assert moved and all("attn2." in k for k in moved)
    stats = full.extra["training"]
    assert stats["discriminator_final_loss"] > 0 and 0 <= stats["conflicting_steps"] <= 6
    assert resumed.extra["training"]["conflicting_steps"] == stats["conflicting_steps"]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="parameter_group"):
        CAConfig(concepts=["circle"], parameter_group="everything")
    with pytest.raises(ValueError, match="unknown to CatIGMU"):
        CAConfig(concepts=["zorblax"])
    with pytest.raises(ValueError, match="prior_loss_weight"):
        DoCoConfig(concepts=["circle"], prior_loss_weight=0)
    with pytest.raises(ValueError, match="does not mention"):
        CAUnlearner(CAConfig(concepts=["circle"], prompts=["a red square"], num_images=1)).unlearn(load_pipeline())
