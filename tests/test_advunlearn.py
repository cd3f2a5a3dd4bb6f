"""AdvUnlearn: only the text encoder changes, and that text_encoder/ folder alone in the original pipeline draws the
unlearned model's images; the inner attack composes prompts as the tokenizer would and lowers its objective; a run
killed mid-way resumes to the uninterrupted weights; bad settings are refused."""

import numpy as np
import pytest
import torch

from igmu_hf.api import run_unlearn
from igmu_hf.hub import load_pipeline


# all its tests run in one xdist worker, so its module fixtures (adv_run) are never built in both
pytestmark = pytest.mark.xdist_group("advunlearn")


FAST = {"iterations": 5, "warmup_iterations": 2, "attack_steps": 2, "ddim_steps": 5, "lr": 1e-3,
        "retain_batch_size": 2}


@pytest.fixture(scope="module")
def adv_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("adv") / "advunlearn"
    folder, result = run_unlearn("advunlearn", ["circle"], str(out), method_kwargs=FAST)
    return folder, result


def test_the_text_encoder_alone_is_the_unlearned_model(adv_run, mini_pipeline):
    from transformers import CLIPTextModel

    folder, result = adv_run
    assert result.artifact_kind == "text-encoder weights"
    assert set(result.extra["edited_components"]) == {"text_encoder", "unet"}  # the UNet counts in the total only
    assert all(n.startswith("text_encoder.") for n in result.edited_parameters)
    unlearned = load_pipeline(str(folder))
    for (k, a), b in zip(unlearned.unet.state_dict().items(), mini_pipeline.unet.state_dict().values()):
        assert torch.equal(a, b), k  # the UNet is the original's
    original = load_pipeline()
    original.text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    kwargs = dict(num_inference_steps=10, guidance_scale=5.0, output_type="np")
    prompts = ["a red circle", "a blue square"]
    a = original(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    b = unlearned(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    c = mini_pipeline(prompts, generator=[torch.Generator().manual_seed(i) for i in range(2)], **kwargs).images
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3  # and it is not the original model


def test_inner_attack_composes_prompts_and_lowers_its_objective(mini_pipeline):
    from igmu_hf.attacks.soft_prompt import prefixed_states, soft_prefix_attack
    from igmu_hf.text import encode_prompts

    tok, te = mini_pipeline.tokenizer, mini_pipeline.text_encoder
    red = te.get_input_embeddings().weight[tok("red", add_special_tokens=False).input_ids].detach()
    torch.testing.assert_close(prefixed_states(tok, te, red, "circle"), encode_prompts(tok, te, ["red circle"]),
                               rtol=0, atol=1e-6)
    target = encode_prompts(tok, te, ["blue circle"])
    before = [p.detach().clone() for p in te.parameters()]
    prefix, losses = soft_prefix_attack(tok, te, "circle", lambda s, step: ((s - target) ** 2).mean(), red, 20, 0.05)
    assert losses[-1] < 0.5 * losses[0]
    assert all(torch.equal(a, b) for a, b in zip(before, te.parameters()))  # the encoder is not updated
    assert all(p.grad is None for p in te.parameters())


def test_a_killed_run_resumes_to_the_uninterrupted_weights(adv_run, killed_and_resumed):
    from igmu_hf.methods import AdvUnlearnConfig, AdvUnlearnUnlearner
    from igmu_hf.taxonomy import categorize

    _, result = adv_run
    cfg = AdvUnlearnConfig(concepts=["circle"], retain_prompts=result.config.retain_prompts, **FAST)
    resumed = killed_and_resumed(AdvUnlearnUnlearner, cfg, 4)
    for (k, a), b in zip(resumed.pipeline.text_encoder.state_dict().items(),
                         result.pipeline.text_encoder.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=k)
    assert result.config.retain_prompts == categorize("circle").preserve_prompts  # CatIGMU's, by default
    assert resumed.extra["training"]["inner_attack_seconds"] > 0


def test_bad_settings_and_families_are_refused():
    from igmu_hf.methods import AdvUnlearnConfig, AdvUnlearnUnlearner
    from igmu_hf.tiny_pipelines import tiny_pipeline

    with pytest.raises(ValueError, match="attack_method"):
        AdvUnlearnConfig(concepts=["circle"], retain_prompts=["a square"], attack_method="fgsm")
    with pytest.raises(ValueError, match="retain_prompts"):
        AdvUnlearnConfig(concepts=["circle"])
    with pytest.raises(ValueError, match="attack_lr"):
        AdvUnlearnConfig(concepts=["circle"], retain_prompts=["a square"], attack_lr=float("inf"))
    with pytest.raises(ValueError, match="AdvUnlearn"):
        AdvUnlearnUnlearner(AdvUnlearnConfig(concepts=["church"], retain_loss_weight=0)).unlearn(
            tiny_pipeline("sdxl"))


def test_the_authors_inner_attack_sums_its_gradients_and_returns_the_prefix_before_its_last_step():
    """attack_util.py as it runs: no zero_grad, so step i moves on Σ_{j≤i} g_j; the prefix built before the last
    update is returned. Recomputed with torch's Adam by hand on the same objective."""
    from igmu_hf.attacks.soft_prompt import prefixed_states, soft_prefix_attack
    from igmu_hf.tiny_pipelines import tiny_pipeline

    pipe = tiny_pipeline("sd1")
    tok, te = pipe.tokenizer, pipe.text_encoder
    te.requires_grad_(False)
    init = torch.randn(2, te.config.hidden_size, generator=torch.Generator().manual_seed(0))
    target = torch.randn(1, 77, te.config.hidden_size, generator=torch.Generator().manual_seed(1))

    def objective(states, step):
        return (states - target).pow(2).mean()

    ours, losses = soft_prefix_attack(tok, te, "church", objective, init, 4, 0.05, accumulate_gradients=True,
                                      return_before_last_update=True)
    prefix = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([prefix], lr=0.05)
    iterates = []
    for _ in range(4):  # their loop: backward without zero_grad, then step
        objective(prefixed_states(tok, te, prefix, "church"), 0).backward()
        iterates.append(prefix.detach().clone())
        opt.step()
    torch.testing.assert_close(ours, iterates[-1], rtol=1e-5, atol=1e-6)
    plain, _ = soft_prefix_attack(tok, te, "church", objective, init, 4, 0.05)
    assert not torch.allclose(plain, ours, atol=1e-4) and len(losses) == 4
