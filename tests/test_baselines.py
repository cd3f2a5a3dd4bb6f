"""Baselines I (ESD, RECE, ConceptPrune, FMN) on tiny pipelines: each loss or closed-form edit against its paper's
formula computed independently (by diffusers' own pipeline, by a least-squares solve, by explicit loops, by the
attention written out), resume equal to the uninterrupted run, families run or refuse, bad input in one line."""

import pytest
import torch

from igmu_hf.hub import load_pipeline
from igmu_hf.tiny_pipelines import tiny_pipeline


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("baseline-families")
    out = {}
    for family in ("sd1", "sd2", "sdxl", "sd3"):
        tiny_pipeline(family, with_t5=family == "sd3").save_pretrained(root / family)
        out[family] = str(root / family)
    return out


# ---------------------------------------------------------------- ESD
def test_esd_first_loss_equals_the_formula_on_the_pipelines_own_trajectory(family_dirs):
    """The first step's loss, recomputed with diffusers' StableDiffusionPipeline for z (on the paper code's ldm grid,
    whose ``t_start=-1`` drops the highest DDIM timestep, stopped after its number of steps) and the UNet called
    directly: ‖ε(z,t,c) − [ε*(z,t,∅) − η(ε*(z,t,c) − ε*(z,t,∅))]‖²."""
    from diffusers import DDIMScheduler

    class LdmGrid(DDIMScheduler):  # the ldm sampler's timesteps[:t_start] with t_start = -1: the top one dropped
        def set_timesteps(self, *args, **kwargs):
            super().set_timesteps(*args, **kwargs)
            self.timesteps = self.timesteps[1:]

    from igmu_hf.methods import ESDConfig, ESDUnlearner
    from igmu_hf.methods.esd import esd_draws, steps_until

    cfg = ESDConfig(concepts=["church"], train_method="xattn", iterations=1, ddim_steps=10, negative_guidance=2.0,
                    seed=3)
    pipe = load_pipeline(family_dirs["sd1"])
    shape = (pipe.unet.config.in_channels, pipe.unet.config.sample_size, pipe.unet.config.sample_size)
    [(word, t_enc, t, start)] = esd_draws(cfg, 0, shape, 1000)
    ref = load_pipeline(family_dirs["sd1"])
    ref.scheduler = LdmGrid.from_config(ref.scheduler.config)
    ref.set_progress_bar_config(disable=True)
    n_steps, seen = steps_until(t_enc, cfg.ddim_steps), {}

    def capture(p, i, ts, kw):
        if i + 1 == n_steps:
            seen["z"] = kw["latents"].clone()
        return kw

    ref("church", latents=start, num_inference_steps=cfg.ddim_steps, guidance_scale=cfg.start_guidance,
        callback_on_step_end=capture, callback_on_step_end_tensor_inputs=["latents"], output_type="latent")
    cond, uncond = ref.encode_prompt("church", "cpu", 1, True, "")
    with torch.no_grad():
        tt = torch.tensor([t])
        e_p = ref.unet(seen["z"], tt, cond).sample
        e_0 = ref.unet(seen["z"], tt, uncond).sample
        expected = float(((e_p - (e_0 - 2.0 * (e_p - e_0))) ** 2).mean())
    result = ESDUnlearner(cfg, progress=False).unlearn(pipe)
    assert result.extra["training"]["first_loss"] == pytest.approx(expected, rel=1e-4)
    assert expected > 1e-6


def test_esd_timesteps_and_trajectory_lengths_follow_the_paper_code():
    from igmu_hf.methods.esd import esd_timesteps, steps_until

    # the paper's ldm sampler runs S − 1 steps (t_start=-1 drops the top one) and breaks after the step of index
    # till_T − 1 (all S − 1 for till_T 0 and 1)
    assert [steps_until(t, 50) for t in (0, 1, 2, 25, 49)] == [49, 49, 48, 25, 1]
    g = torch.Generator().manual_seed(0)
    for t_enc in (0, 7, 49):
        ts = {esd_timesteps(t_enc, 50, 1000, g) for _ in range(200)}
        assert min(ts) >= 20 * t_enc and max(ts) < 20 * t_enc + 20 and len(ts) > 5


def test_esd_x_and_esd_u_train_the_papers_parameter_sets(family_dirs):
    from igmu_hf.methods.esd import esd_parameter_names

    unet = load_pipeline(family_dirs["sd1"]).unet
    all_names = [n for n, _ in unet.named_parameters()]
    x = esd_parameter_names(unet, "xattn")
    u = esd_parameter_names(unet, "noxattn")
    assert x == [n for n in all_names if "attn2" in n]
    excluded = [n for n in all_names if n not in u]
    assert excluded and all("attn2" in n or n.startswith(("time_embedding.", "conv_out.", "conv_norm_out."))
                            for n in excluded)
    assert any(n.startswith("time_embedding.") for n in excluded) and any("attn1" in n for n in u)


def test_esd_default_variant_follows_catigmu():
    from igmu_hf.methods import ESDConfig

    assert ESDConfig(concepts=["Van Gogh style"]).train_method == "xattn"  # styles: ESD-x
    assert ESDConfig(concepts=["nudity"]).train_method == "noxattn"  # nudity, objects: ESD-u
    assert ESDConfig(concepts=["church"]).train_method == "noxattn"


def test_esd_resumes_to_the_uninterrupted_weights(family_dirs, tmp_path, crash_at):
    from igmu_hf.methods import ESDConfig, ESDUnlearner

    cfg = ESDConfig(concepts=["church"], train_method="xattn", iterations=6, ddim_steps=4, lr=1e-3)
    full = ESDUnlearner(cfg, progress=False).unlearn(load_pipeline(family_dirs["sd1"])).pipeline
    ckpt = tmp_path / "ckpt"
    with pytest.raises(crash_at.Crash):
        ESDUnlearner(cfg, progress=False, output_dir=str(ckpt), checkpointing_steps=2,
                     callback=crash_at(3)).unlearn(load_pipeline(family_dirs["sd1"]))
    resumed = ESDUnlearner(cfg, progress=False, output_dir=str(ckpt), checkpointing_steps=2,
                           resume_from_checkpoint="latest").unlearn(load_pipeline(family_dirs["sd1"])).pipeline
    base = dict(load_pipeline(family_dirs["sd1"]).unet.named_parameters())
    a, b = dict(full.unet.named_parameters()), dict(resumed.unet.named_parameters())
    assert max(float((a[n] - base[n]).detach().abs().max()) for n in a) > 1e-4  # training moved the weights
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-6, msg=n)


# ---------------------------------------------------------------- RECE
def test_rece_adversarial_embedding_is_the_regularised_least_squares_solution():
    """c' = argmin Σ‖W c' − W₀ c‖² + λ‖c'‖², solved here by lstsq on the stacked system."""
    from igmu_hf.methods.rece import adversarial_embedding

    torch.manual_seed(0)
    d, lam = 6, 1e-2
    ws = [torch.randn(5, d, dtype=torch.float64) for _ in range(3)]
    w0s = [w + 0.3 * torch.randn_like(w) for w in ws]
    c = torch.randn(4, d, dtype=torch.float64)
    got = adversarial_embedding(c, ws, w0s, lam)
    a = torch.cat([*ws, lam ** 0.5 * torch.eye(d, dtype=torch.float64)])
    for r in range(len(c)):
        b = torch.cat([*(w0 @ c[r] for w0 in w0s), torch.zeros(d, dtype=torch.float64)])
        torch.testing.assert_close(got[r], torch.linalg.lstsq(a, b[:, None]).solution[:, 0], rtol=0, atol=1e-9)


def test_rece_is_uce_then_adversarial_edits_and_moves_the_adversarial_keys_to_the_guide(family_dirs):
    from igmu_hf.families import family_of
    from igmu_hf.methods import RECEConfig, RECEUnlearner, UCEUnlearner

    two = RECEUnlearner(RECEConfig(concepts=["church"], epochs=2)).unlearn(load_pipeline(family_dirs["sd1"]))
    adv2 = two.extra_tensors["adversarial_embeddings.safetensors"]["embeddings"]
    assert adv2.shape[:2] == (2, 1) and two.extra["rece"]["epochs"] == 2
    assert float((adv2[1] - adv2[0]).abs().max()) > 1e-3  # each epoch finds a new embedding against the edited model
    cfg = RECEConfig(concepts=["church"], epochs=1)
    pipe = load_pipeline(family_dirs["sd1"])
    uce_only = UCEUnlearner(cfg.uce_config()).unlearn(load_pipeline(family_dirs["sd1"])).pipeline
    result = RECEUnlearner(cfg).unlearn(pipe)
    adv = result.extra_tensors["adversarial_embeddings.safetensors"]["embeddings"]
    guide = family_of(pipe).encode(pipe, [" "]).states[0].double()
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    w_uce = dict(uce_only.unet.named_parameters())[name].detach().double()
    w_rece = dict(pipe.unet.named_parameters())[name].detach().double()
    c1 = adv[0, 0].double()  # the first epoch's adversarial embedding, found against the UCE model
    before = (c1 @ w_uce.T - guide @ w_uce.T).norm()
    after = (c1 @ w_rece.T - guide @ w_uce.T).norm()
    assert after < 0.2 * before  # its keys now look like the guide's
    assert result.edited_parameters == [n for n, _ in pipe.unet.named_parameters()
                                        if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))]


# ---------------------------------------------------------------- ConceptPrune
def test_conceptprune_mask_equals_the_rowwise_wanda_rule_written_out():
    from igmu_hf.methods.conceptprune import skilled_mask

    torch.manual_seed(0)
    w = torch.randn(7, 50)
    base, target = torch.rand(3, 50), torch.rand(3, 50)
    got = skilled_mask(w, base, target, 0.1)
    k = 5
    expected = torch.zeros(7, 50, dtype=torch.bool)
    for t in range(3):
        for i in range(7):
            scores = [(abs(float(w[i, j])) * float(target[t, j]), j) for j in range(50)]
            for s, j in sorted(scores, reverse=True)[:k]:
                if s > abs(float(w[i, j])) * float(base[t, j]):
                    expected[i, j] = True
    assert torch.equal(got, expected) and expected.any()


def test_conceptprune_norms_and_pruning_on_a_tiny_pipeline(family_dirs):
    """A_t equals the column norms of the row-normalised ff.net.2 inputs recorded by a hook written here; only the
    masked weights change, and the edited count is the number zeroed."""
    from igmu_hf.methods import ConceptPruneConfig, ConceptPruneUnlearner
    from igmu_hf.methods.conceptprune import activation_norms, ffn_output_layers

    pipe = load_pipeline(family_dirs["sd1"])
    pipe.set_progress_bar_config(disable=True)
    layers = ffn_output_layers(pipe.unet)
    name, layer = next(iter(layers.items()))
    got = activation_norms(pipe, ["a church in a park"], layers, timesteps=2, num_inference_steps=4,
                           guidance_scale=7.5, seed=0)[name]
    rows, step = {0: [], 1: [], 2: [], 3: []}, {"i": 0}
    h = layer.register_forward_pre_hook(lambda m, a: rows[step["i"]].append(a[0].reshape(-1, a[0].shape[-1])))

    def count(p, i, t, kw):
        step["i"] = i + 1
        return kw

    pipe("a church in a park", num_inference_steps=4, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
         output_type="latent", callback_on_step_end=count)
    h.remove()
    for t in range(2):
        x = torch.cat(rows[t]).double()
        x = x / x.norm(dim=1, keepdim=True)
        torch.testing.assert_close(got[t], x.norm(dim=0), rtol=1e-6, atol=1e-8)

    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    cfg = ConceptPruneConfig(concepts=["church"], base_prompts=["a park", "a street"],
                             target_prompts=["a church in a park", "a church in a street"], skill_ratio=0.1,
                             timesteps=2, num_inference_steps=4)
    result = ConceptPruneUnlearner(cfg).unlearn(pipe)
    zeroed = 0
    for n, m in layers.items():
        changed = m.weight.detach() != before[n]
        assert torch.all(m.weight.detach()[changed] == 0)
        zeroed += int(changed.sum())
    assert 0 < zeroed == result.edited_parameter_count
    assert result.extra["conceptprune"]["tensors_touched"] > zeroed


# ---------------------------------------------------------------- FMN
def test_fmn_loss_is_the_norm_of_the_attention_at_the_concept_positions(family_dirs):
    """Attention probabilities recomputed from each attn2's own q/k projections: softmax(q kᵀ / √d) per head."""
    from igmu_hf.families import family_of
    from igmu_hf.methods.fmn import AttentionProbabilities, concept_positions, fmn_loss

    pipe = load_pipeline(family_dirs["sd1"])
    fam = family_of(pipe)
    cond = fam.encode(pipe, ["a photo of church"])
    pos = concept_positions(pipe.tokenizer, "a photo of church", "church")
    ids = pipe.tokenizer("a photo of church").input_ids
    assert pos.nonzero()[:, 0].tolist() == [len(ids) - 2, len(ids) - 1]  # "church" and the end-of-text position
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda m, a, kw, n=n: inputs.__setitem__(n, a[0] if a else
                                                                                   kw["hidden_states"]),
                                         with_kwargs=True)
             for n, m in pipe.unet.named_modules() if n.endswith("attn2")]
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    rec = AttentionProbabilities(pipe.unet)
    with torch.no_grad():
        fam.predict(pipe.unet, x, torch.tensor([500]), cond)
    rec.restore()
    for h in hooks:
        h.remove()
    got = fmn_loss(rec.probs, pos[None])
    picked = []
    for n, m in pipe.unet.named_modules():
        if n.endswith("attn2"):
            q, k = m.to_q(inputs[n]), m.to_k(cond.states)
            heads, dh = m.heads, q.shape[-1] // m.heads
            q = q.reshape(1, -1, heads, dh).transpose(1, 2)
            k = k.reshape(1, -1, heads, dh).transpose(1, 2)
            p = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1)
            picked.append(p[..., pos].reshape(-1))
    assert float(got) == pytest.approx(float(torch.cat(picked).detach().norm()), rel=1e-5)
    assert len(picked) == len(rec.layers) > 1


def test_fmn_trains_and_lowers_its_loss(family_dirs):
    from igmu_hf.methods import FMNConfig, FMNUnlearner

    cfg = FMNConfig(concepts=["church"], num_images=2, max_train_steps=8, learning_rate=1e-3, num_inference_steps=3)
    result = FMNUnlearner(cfg, progress=False).unlearn(load_pipeline(family_dirs["sd1"]))
    t = result.extra["training"]
    assert t["final_loss"] < t["first_loss"] and t["images"] == 2


# ---------------------------------------------------------------- families and bad input
@pytest.mark.parametrize("family", ["sd2", "sdxl"])
@pytest.mark.parametrize("method,kwargs", [
    ("esd", {"train_method": "xattn", "iterations": 2, "ddim_steps": 3}),
    ("rece", {}),
    ("conceptprune", {"num_inference_steps": 3, "timesteps": 2, "skill_ratio": 0.1}),
    ("fmn", {"num_images": 1, "max_train_steps": 2, "num_inference_steps": 3}),
    ("mace", {"num_images": 1, "max_train_steps": 2, "num_inference_steps": 3, "aug_length": 2}),
])
def test_baselines_run_on_sd2_and_sdxl(family, method, kwargs, family_dirs, tmp_path):
    from diffusers import DiffusionPipeline

    from igmu_hf.api import run_unlearn

    folder, result = run_unlearn(method, ["church"], str(tmp_path / method), family_dirs[family],
                                 method_kwargs=kwargs)
    assert result.edited_parameter_count > 0 and result.extra["model_family"] == family
    card = (folder / "README.md").read_text()  # the card names the authors' code and every deviation from it
    from igmu_hf.methods import get_method

    cls = get_method(method)
    assert cls.reference_code.split("@")[0] in card and cls.deviations
    assert all(d[:50] in card for d in cls.deviations)
    reloaded = DiffusionPipeline.from_pretrained(folder)  # every weight of every model component, not one
    components = [k for k, v in reloaded.components.items() if isinstance(v, torch.nn.Module)]
    assert "unet" in components and "text_encoder" in components
    for component in components:
        saved, live = getattr(reloaded, component).state_dict(), getattr(result.pipeline, component).state_dict()
        assert saved.keys() == live.keys(), component
        for key, value in live.items():
            torch.testing.assert_close(saved[key], value, rtol=0, atol=0, msg=f"{component}.{key}")
    # the naming convention of `edited_parameters`: the denoiser's names bare, other components' prefixed
    saved_names = {**{n: "unet" for n, _ in reloaded.unet.named_parameters()},
                   **{f"{c}.{n}": c for c in components if c != "unet"
                      for n, _ in getattr(reloaded, c).named_parameters()}}
    missing = [k for k in result.edited_parameters if k not in saved_names]
    assert not missing, f"edited parameters that name no saved parameter: {missing[:3]}"


@pytest.mark.parametrize("method", ["esd", "rece", "fmn", "mace"])
def test_sd3_is_refused_with_the_reason(method, family_dirs, tmp_path):
    from igmu_hf.api import run_unlearn
    from igmu_hf.families import FamilyNotSupportedError

    with pytest.raises(FamilyNotSupportedError, match="Stable Diffusion 3.*DUO"):
        run_unlearn(method, ["church"], str(tmp_path / method), family_dirs["sd3"],
                    method_kwargs={"train_method": "xattn"} if method == "esd" else None)


@pytest.mark.parametrize("method,kwargs,message", [
    ("esd", {"train_method": "attn"}, "train_method.*ESD-x"),
    ("esd", {"negative_guidance": 0.0}, r"negative_guidance.*η"),
    ("rece", {"regular_scale": 0.0}, "regular_scale.*> 0"),
    ("conceptprune", {"skill_ratio": 1.5}, r"skill_ratio` is 1.5; it must be in \[0, 1\]"),
    ("conceptprune", {"base_prompts": ["a park"]}, "both"),
    ("fmn", {"num_images": 0}, "num_images` is 0; it must be ≥ 1"),
    ("fmn", {"instance_prompt": "a photo"}, "'{}'"),
    ("mace", {"lamb": 0.0}, "lamb.*> 0"),
    ("mace", {"mapping_concepts": ["a", "b"]}, "one entry per concept"),
])
def test_bad_config_is_one_line(method, kwargs, message):
    from igmu_hf.methods import get_method

    with pytest.raises(ValueError, match=message):
        get_method(method).config_class(concepts=["church"], **kwargs)


@pytest.mark.parametrize("method", ["esd", "rece", "fmn", "mace", "conceptprune"])
def test_a_word_the_mini_tokenizer_cannot_spell_is_refused(method, tmp_path):
    from igmu_hf.api import run_unlearn

    with pytest.raises(ValueError, match="unicorn"):
        run_unlearn(method, ["unicorn"], str(tmp_path / method), method_kwargs={"train_method": "xattn"}
                    if method == "esd" else None)


# ---------------------------------------------------------------- MACE
def test_mace_refinement_rows_are_the_tokens_around_the_concept(family_dirs):
    from igmu_hf.methods.mace import matching_indices, refinement_rows

    assert matching_indices([0, 5, 6, 7, 9], [0, 5, 8, 8, 7, 9]) == ([0, 1, 3, 4], [0, 1, 4, 5])
    tok = load_pipeline(family_dirs["sd1"]).tokenizer
    old, new = "a photo of church", "a photo of ground"
    n_old = len(tok(old).input_ids)  # BOS a photo of church EOS
    so, sn = torch.arange(77.0)[:, None].repeat(1, 2), 100 + torch.arange(77.0)[:, None].repeat(1, 2)
    c_old, c_new = refinement_rows(tok, so, sn, old, new)
    keep = [i for i in range(77) if i != n_old - 2]  # every position but the concept's token
    assert c_old[:, 0].tolist() == keep and c_new[:, 0].tolist() == [100 + i for i in keep]


def test_mace_fusion_equals_the_closed_form_over_every_concepts_prompts(family_dirs):
    """W* = (λW + Σ_i Σ_c (W + ΔW_i) c cᵀ)(λI + Σ_i Σ_c c cᵀ)⁻¹ per layer, states from the text encoder directly."""
    from igmu_hf.methods import MACEConfig, MACEUnlearner

    cfg = MACEConfig(concepts=["church", "tower"], prompt_templates=["a photo of {}", "a {} at night"],
                     aug_length=2, lamb=0.5, num_images=1, max_train_steps=3, learning_rate=0.05,
                     num_inference_steps=3)
    pipe = load_pipeline(family_dirs["sd1"])
    unl = MACEUnlearner(cfg, progress=False)
    result = unl.unlearn(pipe)
    assert result.extra["training"]["losses"]["church"]["final"] is not None and len(unl.deltas) == 2
    tok, enc = pipe.tokenizer, pipe.text_encoder
    grams = []
    for c in cfg.concepts:
        ids = tok([t.format(c) for t in cfg.prompt_templates], padding="max_length", max_length=77,
                  return_tensors="pt").input_ids
        with torch.no_grad():
            x = enc(ids)[0].double().reshape(-1, enc.config.hidden_size)
        grams.append(x.T @ x)
    d = grams[0].shape[0]
    after = dict(pipe.unet.named_parameters())
    moved = 0.0
    for name in result.edited_parameters:
        w = unl.refined[name]
        mat1 = 0.5 * w + sum((w + delta[name]) @ g for delta, g in zip(unl.deltas, grams))
        mat2 = 0.5 * torch.eye(d, dtype=torch.float64) + sum(grams)
        expected = mat1 @ torch.linalg.inv(mat2)
        moved = max(moved, float((expected - w).abs().max()))
        torch.testing.assert_close(after[name].detach().double(), expected, rtol=0, atol=1e-5, msg=name)
    assert moved > 1e-4, "the LoRAs changed nothing: the fusion check would be vacuous"


def test_mace_token_mask_marks_every_end_token_as_the_authors_dataset():
    """MACE's default (the authors' dataset.py): the concept's tokens and every end-of-text token of the padded
    prompt — on SD1's CLIP tokenizer, which pads with it, the padding too; on a tokenizer padding with '!' (SD2's),
    only the one end-of-text. every_end_token=False keeps the first end-of-text position only."""
    from igmu_hf.methods import MACEConfig
    from igmu_hf.methods.fmn import concept_positions
    from igmu_hf.tiny_pipelines import clip_tokenizer

    sd1, sd2 = clip_tokenizer(), clip_tokenizer(pad_token="!")
    ids = sd1("a photo of church", padding="max_length", max_length=sd1.model_max_length).input_ids
    n = len(sd1("a photo of church").input_ids)
    eos = [i for i, t in enumerate(ids) if t == sd1.eos_token_id]
    assert len(eos) == sd1.model_max_length - n + 1  # the end-of-text and every padding position
    assert MACEConfig(concepts=["church"]).every_end_token
    for tok, marked in ((sd1, [n - 2, *eos]), (sd2, [n - 2, n - 1])):
        pos = concept_positions(tok, "a photo of church", "church", True, every_end_token=True)
        assert pos.nonzero()[:, 0].tolist() == marked
        assert concept_positions(tok, "a photo of church", "church", True).nonzero()[:, 0].tolist() == [n - 2, n - 1]


def test_mace_importance_sampling_peaks_between_200_and_400():
    from igmu_hf.methods.mace import importance_weights

    w = importance_weights(1000)
    assert float(w.sum()) == pytest.approx(1.0) and 200 <= int(w.argmax()) <= 400
    assert float(w[200:401].sum()) > 0.8 and float(w[:100].sum()) < 1e-3


@pytest.mark.parametrize("method", ["fmn", "mace"])
def test_attention_methods_resume_to_the_uninterrupted_weights(method, family_dirs, tmp_path, crash_at):
    from igmu_hf.methods import get_method

    cls = get_method(method)
    kwargs = {"num_images": 1, "max_train_steps": 4, "num_inference_steps": 3, "learning_rate": 1e-3}
    if method == "mace":
        kwargs.update(aug_length=2, learning_rate=0.05)
    cfg = cls.config_class(concepts=["church", "tower"] if method == "mace" else ["church"], **kwargs)
    from accelerate import Accelerator

    images = cls.build_prepared_data(load_pipeline(family_dirs["sd1"]), cfg, Accelerator(), progress=False)
    full = cls(cfg, images=images, progress=False).unlearn(load_pipeline(family_dirs["sd1"]))
    ckpt = tmp_path / "ckpt"
    # FMN dies in its 3rd step; MACE in the second concept's LoRA (its steps count from 1 per concept)
    calls = {"n": 0}

    def callback(step):
        calls["n"] += 1
        if calls["n"] == (3 if method == "fmn" else cfg.max_train_steps + 2):
            raise crash_at.Crash

    with pytest.raises(crash_at.Crash):
        cls(cfg, images=images, progress=False, output_dir=str(ckpt), checkpointing_steps=1,
            callback=callback).unlearn(load_pipeline(family_dirs["sd1"]))
    resumed = cls(cfg, images=images, progress=False, output_dir=str(ckpt), checkpointing_steps=1,
                  resume_from_checkpoint="latest").unlearn(load_pipeline(family_dirs["sd1"]))
    base = dict(load_pipeline(family_dirs["sd1"]).unet.named_parameters())
    a, b = dict(full.pipeline.unet.named_parameters()), dict(resumed.pipeline.unet.named_parameters())
    assert max(float((a[n] - base[n]).detach().abs().max()) for n in a) > 1e-4
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=0, atol=1e-6, msg=n)



def test_an_empty_given_image_set_is_refused(family_dirs):
    from datasets import Dataset

    from igmu_hf.methods import FMNConfig, FMNUnlearner

    empty = Dataset.from_dict({"image": [], "prompt": [], "concept": [], "seed": []})
    with pytest.raises(ValueError, match="FMN images set is empty"):
        FMNUnlearner(FMNConfig(concepts=["church"]), images=empty, progress=False).unlearn(
            load_pipeline(family_dirs["sd1"]))
