"""CA and DoCo: the caption pairs follow CatIGMU's interventions; training pulls ε(x_t, c*) onto ε(x_t, c) on images
it never saw; DoCo's surgery removes exactly the conflicting component, only the chosen weights move, and a killed run
(discriminator included) resumes to the uninterrupted weights; bad settings are refused."""

import pytest
import torch

from igmu_hf.hub import load_pipeline
from igmu_hf.methods import CAConfig, CAUnlearner, DoCoConfig, DoCoUnlearner
from igmu_hf.methods.ca import caption_pairs
from igmu_hf.methods.doco import AuthorsDiscriminator, PatchDiscriminator, project_conflicting

FAST_CA = {"num_images": 6, "max_train_steps": 40, "learning_rate": 2e-5, "num_inference_steps": 10,
           "train_batch_size": 4}
FAST_DOCO = {"num_images": 4, "max_train_steps": 6, "learning_rate": 2e-5, "num_inference_steps": 8,
             "discriminator_layers": 1, "discriminator_channels": 8, "warm_up": 2, "train_batch_size": 4}


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
    assert result.extra["training"]["steps"] == 40


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
    with pytest.raises(ValueError, match="discriminator_layers ≤ 2"):  # 4 blocks on the mini world's 8×8 latents
        DoCoUnlearner(DoCoConfig(concepts=["circle"], discriminator_layers=4), progress=False).unlearn(load_pipeline())
    with pytest.raises(ValueError, match="does not mention"):
        CAUnlearner(CAConfig(concepts=["circle"], prompts=["a red square"], num_images=1)).unlearn(load_pipeline())


def test_authors_discriminator_is_their_four_stride_two_blocks():
    d = AuthorsDiscriminator(4)
    convs = [m for m in d if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [
        (4, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 2), (512, 1, 1)]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d) == 3
    assert d(torch.randn(2, 4, 64, 64)).shape == (2, 1, 3, 3)


def test_doco_authors_step_is_the_formula_of_their_train_py():
    """One step after the warm-up, computed independently: fake = x̂₀(ε_θ(x_t, c*)), real = x̂₀(ε_orig(x_t, c)) from
    an untouched copy of the original; L_adv = mean softplus(D(fake)) (BCE towards their real label 0), L_p the
    ε-MSE on the anchor caption, L_D = mean softplus(−D(sg fake)) + mean softplus(D(real)); g_p, g_a each clipped to
    norm 1, g_a − λ·cos·ĝ_p per tensor where cos < 0; AdamW's first step θ(1 − lr·wd) − lr·g/(|g| + ε); D's
    first Adam step from ∇L_D + ∇_D L_adv (their backward leaves the latter in D)."""
    import torch.nn.functional as F

    from igmu_hf.methods.ca import ca_parameter_names

    pipe, original = load_pipeline(), load_pipeline().unet
    cfg = DoCoConfig(concepts=["circle"], num_images=4, num_inference_steps=8, train_batch_size=4, warm_up=0,
                     learning_rate=1e-3, scale_lr=False, discriminator_layers=1, discriminator_channels=8)
    un = DoCoUnlearner(cfg, progress=False)
    setup = un.setup_training(pipe, ca_parameter_names(pipe.unet, __import__("igmu_hf.families", fromlist=["x"])
                                                       .family_of(pipe), cfg.parameter_group))
    unet, disc, sched = setup["unet"], setup["discriminator"], setup["scheduler"]
    names = list(setup["trainable"])
    theta0 = {n: p.detach().clone() for n, p in setup["trainable"].items()}
    disc0 = {n: p.detach().clone() for n, p in disc.named_parameters()}
    d = un.draw(1, setup)
    c_t = setup["conds"][setup["target_rows"][d["idx"]]].states
    c_a = setup["conds"][setup["anchor_rows"][d["idx"]]].states
    a = sched.alphas_cumprod[d["t"]].view(-1, 1, 1, 1)

    def x0(eps):
        return (d["x_t"] - (1 - a).sqrt() * eps) / a.sqrt()

    ref = copy_disc(disc)
    fake = x0(unet(d["x_t"], d["t"], c_t).sample)
    with torch.no_grad():
        real = x0(original(d["x_t"], d["t"], c_a).sample)
    adv = F.softplus(ref(fake)).mean()
    prior = (unet(d["x_t"], d["t"], c_a).sample - d["noise"]).pow(2).mean()
    params = [setup["trainable"][n] for n in names]

    def clipped(loss):
        g = torch.autograd.grad(loss, params, retain_graph=True)
        norm = torch.cat([x.flatten() for x in g]).norm()
        return [x * min(1.0, 1.0 / (float(norm) + 1e-6)) for x in g]

    g_p, g_a = clipped(prior), clipped(adv)
    expected = {}
    for n, p0, ga, gp in zip(names, (theta0[n] for n in names), g_a, g_p):
        cos = float((ga / (ga.norm() + 1e-8)).flatten() @ (gp / (gp.norm() + 1e-8)).flatten())
        g = ga - cos * gp / (gp.norm() + 1e-8) if cos < 0 else ga
        expected[n] = p0 * (1 - 1e-3 * 1e-2) - 1e-3 * g / (g.abs() + 1e-8)
    d_params = list(ref.parameters())
    l_d = F.softplus(-ref(fake.detach())).mean() + F.softplus(ref(real)).mean()
    g_d = [x + y for x, y in zip(torch.autograd.grad(l_d, d_params), torch.autograd.grad(adv, d_params))]
    expected_d = {n: p0 - 1e-4 * g / (g.abs() + 1e-8) for (n, p0), g in zip(disc0.items(), g_d)}

    state = un.initial_state()
    un.train_step(1, setup, state)
    def rel(new, old, want):  # ‖Δ − Δ_expected‖ / ‖Δ_expected‖ (Adam's g/|g| is touchy where |g| ~ ε)
        return float(((new.detach() - old) - (want - old)).norm() / (want - old).norm())

    for n in names:
        assert rel(setup["trainable"][n], theta0[n], expected[n]) < 1e-3, n
    for n, p in disc.named_parameters():
        assert rel(p, disc0[n], expected_d[n]) < 1e-3, n
    assert state["discriminator_losses"][0] == pytest.approx(float(l_d), rel=1e-5)
    assert state["losses"][0] == pytest.approx(float(adv), rel=1e-5)


def copy_disc(disc):
    """A copy of the discriminator with the same weights and batch-norm state (the step updates the original's)."""
    import copy

    return copy.deepcopy(disc)


def test_first_token_kv_detached_cuts_only_the_first_tokens_gradient():
    """The authors' CustomDiffusion processor detaches <|startoftext|>'s key and value: with the hooks, the images are
    the same, and the K/V weights' gradient equals the one computed with each projection's first row made from a
    detached copy of its weight (the token-0 term of Σ_j (∂L/∂k_j) x_jᵀ removed), unlike the plain gradient."""
    from igmu_hf.methods.ca import first_token_kv_detached
    from igmu_hf.tiny_pipelines import tiny_pipeline

    unet = tiny_pipeline("sd1").unet
    g = torch.Generator().manual_seed(0)
    x, states = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, 32, generator=g)
    kv = {n: m for n, m in unet.named_modules() if n.endswith(("attn2.to_k", "attn2.to_v"))}
    weights = [m.weight for m in kv.values()]

    def grads():
        out = unet(x, torch.tensor([500]), states).sample
        return out, torch.autograd.grad(out.pow(2).mean(), weights)

    plain_out, plain = grads()
    hooks = first_token_kv_detached(unet)
    try:
        hooked_out, hooked = grads()
    finally:
        for h in hooks:
            h.remove()

    def first_row_frozen(module, args, out):
        (inp,) = args
        return torch.cat([inp[:, :1] @ module.weight.detach().T, out[:, 1:]], dim=1)

    handles = [m.register_forward_hook(first_row_frozen) for m in kv.values()]
    try:
        _, expected = grads()
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(hooked_out, plain_out, rtol=0, atol=0)
    assert len(weights) == 8 and all(torch.allclose(a, b, rtol=1e-5, atol=1e-9) for a, b in zip(hooked, expected))
    assert any(not torch.allclose(a, b, rtol=1e-3, atol=1e-9) for a, b in zip(hooked, plain))


def test_ca_authors_loss_is_their_masked_mean():
    """Their train.py: ((mse · mask).sum over (C, h, w) / mask.sum over (1, h, w)).mean() with a one-channel mask
    of the latent's interior (1-pixel border out): C× the plain mean there."""
    from igmu_hf.methods.ca import ca_loss

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    mask = torch.zeros(3, 1, 8, 8)
    mask[:, :, 1:7, 1:7] = 1
    theirs = (((a - b) ** 2 * mask).sum([1, 2, 3]) / mask.sum([1, 2, 3])).mean()
    torch.testing.assert_close(ca_loss(a, b, authors=True), theirs, rtol=1e-6, atol=0)
    torch.testing.assert_close(ca_loss(a, b), ((a - b) ** 2).mean(), rtol=1e-6, atol=0)
