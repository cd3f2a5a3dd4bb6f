"""Receler: fresh erasers are the identity (zero-initialised up-projection) and trained ones change only the eraser
component; the saved custom pipeline loads with stock diffusers (trust_remote_code) and with igmu_hf to the same
images; the concept mask is the normalised attention of the concept tokens; a killed run resumes to the
uninterrupted erasers; bad settings are refused."""

import numpy as np
import pytest
import torch

from igmu_hf.api import run_unlearn
from igmu_hf.hub import load_pipeline
from igmu_hf.methods import RecelerConfig, RecelerUnlearner
from igmu_hf.methods.receler import concept_masks, cross_attention_layers
from igmu_hf.pipelines.receler.pipeline_receler import RecelerErasers, RecelerPipeline


# all its tests run in one xdist worker, so its module fixtures (receler_run) are never built in both
pytestmark = pytest.mark.xdist_group("receler")


# the paper's mode: its adversarial embeddings are part of the state a killed run resumes
FAST = {"iterations": 5, "ddim_steps": 5, "lr": 3e-3, "adversarial_tokens": 4, "attack_steps": 2,
        "adversarial_prompt": "paper",
        "warmup_iterations": 2}
KWARGS = dict(num_inference_steps=8, guidance_scale=5.0, output_type="np")
PROMPTS = ["a red circle", "a blue square"]


def _draw(pipe):
    return pipe(PROMPTS, generator=[torch.Generator().manual_seed(i) for i in range(2)], **KWARGS).images


@pytest.fixture(scope="module")
def receler_run(tmp_path_factory):
    return run_unlearn("receler", ["circle"], str(tmp_path_factory.mktemp("rec") / "receler"), method_kwargs=FAST)


def test_fresh_erasers_are_the_identity(mini_pipeline):
    layers, dims = cross_attention_layers(mini_pipeline.unet)
    base = load_pipeline()
    parts = {k: base.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
    erased = RecelerPipeline(**parts, eraser=RecelerErasers(layers, dims, 16))
    erased.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_draw(erased), _draw(mini_pipeline))


def test_saved_pipeline_loads_with_stock_diffusers_and_igmu_hf_alike(receler_run, mini_pipeline):
    from diffusers import DiffusionPipeline

    folder, result = receler_run
    assert result.artifact_kind == "custom pipeline"
    assert all(n.startswith("eraser.") for n in result.edited_parameters)
    ours = load_pipeline(str(folder))
    for (k, a), b in zip(ours.unet.state_dict().items(), mini_pipeline.unet.state_dict().values()):
        assert torch.equal(a, b), k  # the UNet is the original's
    stock = DiffusionPipeline.from_pretrained(str(folder), trust_remote_code=True)
    stock.set_progress_bar_config(disable=True)
    assert type(stock).__name__ == "RecelerPipeline" and type(stock).__module__ != RecelerPipeline.__module__
    a, b = _draw(stock), _draw(ours)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - _draw(mini_pipeline)).max() > 1e-3  # the erasers act
    assert result.extra["training"]["inner_attack_seconds"] > 0


def test_concept_mask_is_the_thresholded_normalised_concept_attention():
    g = torch.Generator().manual_seed(0)
    heads, keys = 2, 6
    fine = torch.rand(heads, 16, keys, generator=g).softmax(-1)  # a 4x4 layer: the mask is made here
    coarse = torch.rand(heads, 4, keys, generator=g).softmax(-1)  # a 2x2 layer: it gets the mask resized
    positions = torch.zeros(1, keys, dtype=torch.bool)
    positions[0, [2, 3]] = True
    masks = concept_masks([fine, coarse], positions, 0.5, 4)
    means = [sum(float(fine[h, q, k]) for h in range(heads) for k in (2, 3)) / 4 for q in range(16)]
    lo, hi = min(means), max(means)
    expected = [float((m - lo) / (hi - lo) >= 0.5) for m in means]
    assert masks[0][0].tolist() == expected
    grid = [expected[r * 4:(r + 1) * 4] for r in range(4)]
    assert masks[1][0].tolist() == [grid[0][0], grid[0][2], grid[2][0], grid[2][2]]  # nearest: every other row/column


def test_a_killed_run_resumes_to_the_uninterrupted_erasers(receler_run, killed_and_resumed):
    _, result = receler_run
    cfg = RecelerConfig(concepts=["circle"], **FAST)
    resumed = killed_and_resumed(RecelerUnlearner, cfg, 3)
    for (k, a), b in zip(resumed.pipeline.eraser.state_dict().items(), result.pipeline.eraser.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)


def test_bad_settings_and_families_are_refused():
    from igmu_hf.tiny_pipelines import tiny_pipeline

    with pytest.raises(ValueError, match="mask_threshold"):
        RecelerConfig(concepts=["circle"], mask_threshold=1.5)
    with pytest.raises(ValueError, match="adversarial_tokens"):
        RecelerConfig(concepts=["circle"], adversarial_tokens=-1)
    with pytest.raises(ValueError, match="Receler"):
        RecelerUnlearner(RecelerConfig(concepts=["church"])).unlearn(tiny_pipeline("sdxl"))
    with pytest.raises(ValueError, match="no module"):
        RecelerErasers(["down_blocks.9.attn2"], [8], 4).attach(load_pipeline().unet)


def _unet_states(pipe, config):
    """Run Receler on ``pipe`` and return the text states of every UNet call, in order."""
    calls = []

    def record(module, args, kwargs):
        calls.append((args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]).detach().clone())

    hook = pipe.unet.register_forward_pre_hook(record, with_kwargs=True)
    try:
        RecelerUnlearner(config, progress=False).unlearn(pipe)
    finally:
        hook.remove()
    return calls


@pytest.mark.parametrize("mode", ["paper", "authors_code"])
def test_adversarial_prompt_modes_train_on_the_prompt_each_describes(mode):
    """'paper': the UNet sees the concept's states with k positions after the word replaced (attack_steps calls per
    iteration); 'authors_code': as train_receler.py runs, only the clean concept and empty prompts ever reach it,
    with one trained call per iteration (the DDIM trajectory, ε*(∅), ε*(c), then ε_E(c))."""
    from igmu_hf.families import family_of

    pipe = load_pipeline()
    cfg = RecelerConfig(concepts=["circle"], iterations=2, ddim_steps=5, adversarial_tokens=4, attack_steps=3,
                        adversarial_prompt=mode)
    clean = family_of(pipe).encode(pipe, ["", "circle"]).states
    calls = _unet_states(pipe, cfg)
    single = [s for s in calls if len(s) == 1]  # the trajectory's calls carry [∅; c] in one batch of 2
    is_clean = [any(torch.allclose(s[0], c, atol=1e-6) for c in clean) for s in single]
    if mode == "authors_code":
        assert all(is_clean) and len(single) == 2 * 3
    else:
        adversarial = [s for s, ok in zip(single, is_clean) if not ok]
        assert len(adversarial) == 2 * 3 and len(single) == 2 * (2 + 3)
        word = 2  # [BOS, circle, adv × 4, ...]: the rows after the word differ, the rest is the concept's
        for s in adversarial:
            torch.testing.assert_close(s[0, :word], clean[1, :word], rtol=0, atol=1e-6)
            torch.testing.assert_close(s[0, word + 4:], clean[1, word + 4:], rtol=0, atol=1e-6)
            assert not torch.allclose(s[0, word:word + 4], clean[1, word:word + 4], atol=1e-3)


def test_a_concepts_adversarial_embeddings_move_only_when_it_is_drawn():
    """Two concepts, one iteration: the concept not drawn keeps its initial embeddings (before: a shared Adam with
    zero gradients and weight decay moved every concept's rows each step); the drawn one moves."""
    kwargs = dict(concepts=["circle", "square"], iterations=1, ddim_steps=5, adversarial_tokens=4, attack_steps=2,
                  adversarial_prompt="paper")
    start = RecelerUnlearner(RecelerConfig(warmup_iterations=1, **kwargs), progress=False)
    start.unlearn(load_pipeline())  # attack off: the embeddings stay as initialised
    trained = RecelerUnlearner(RecelerConfig(**kwargs), progress=False)
    trained.unlearn(load_pipeline())
    moved = {c: not torch.equal(trained.adversarial[c], start.adversarial[c]) for c in kwargs["concepts"]}
    assert sorted(moved.values()) == [False, True], moved
