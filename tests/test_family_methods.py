"""Methods and attacks on tiny pipelines of every family: DUO end to end through the CLI (LoRA reloads into the
family's stock pipeline), UCE on SD2/SDXL against the closed form computed from the pipeline's own encoding, and
one-line refusals where a method cannot run (UCE on SD3, Dark Miner and the attacks on SDXL)."""

import json

import numpy as np
import pytest
import torch

from igmu_hf.cli import main
from igmu_hf.tiny_pipelines import tiny_pipeline


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for family in ("sd2", "sdxl", "sd3"):
        tiny_pipeline(family, with_t5=family == "sd3").save_pretrained(root / family)
        out[family] = str(root / family)
    return out


def _draw(pipe, prompt="a church"):
    return pipe(prompt, num_inference_steps=4, generator=torch.Generator().manual_seed(3), output_type="np").images[0]


@pytest.mark.parametrize("family", ["sd2", "sdxl", "sd3"])
def test_duo_runs_end_to_end_and_its_lora_loads_into_the_stock_pipeline(family, family_dirs, tmp_path, capsys):
    from diffusers import DiffusionPipeline

    out = tmp_path / f"duo-{family}"
    kwargs = {"pair_filter": "none", "num_pairs": 4, "max_train_steps": 5, "num_inference_steps": 4,
              "base_lr": 3.0}
    rc = main(["unlearn", "--method", "duo", "--concept", "church", "--pretrained_model_name_or_path",
               family_dirs[family], "--output_dir", str(out), "--method_kwargs", json.dumps(kwargs)])
    assert rc == 0, capsys.readouterr().err
    run = json.loads((out / "igmu_run.json").read_text())
    assert run["model_family"] == family and run["config"]["pair_filter"] == "none"
    assert run["training"]["pair_filter"] == "none" and run["training"]["pairs"] == 4
    assert '"pair_filter": "none"' in (out / "README.md").read_text()  # the card records the unfiltered pairs
    if family == "sd3":  # DUO's SD3 recipe: LoRA on the joint attention's image projections
        assert all(".attn.to_" in n for n in run["edited_parameters"]) and \
            {n.split(".attn.")[1] for n in run["edited_parameters"]} == {"to_q.weight", "to_k.weight", "to_v.weight",
                                                                         "to_out.0.weight"}
    fused = DiffusionPipeline.from_pretrained(out)
    stock = DiffusionPipeline.from_pretrained(family_dirs[family])
    fused.set_progress_bar_config(disable=True)
    stock.set_progress_bar_config(disable=True)
    assert type(stock).__name__ == type(fused).__name__
    before = _draw(stock)
    stock.load_lora_weights(str(out))
    with_lora, saved = _draw(stock), _draw(fused)
    moved = np.abs(saved - before).max()
    assert moved > 1e-3, "the LoRA changed nothing: the round trip would be vacuous"
    assert np.abs(with_lora - saved).max() < moved / 20


def test_duo_takes_pairs_given_as_a_dataset(family_dirs):
    from datasets import Dataset, Features, Image
    from PIL import Image as PILImage

    from igmu_hf.hub import load_pipeline
    from igmu_hf.methods import DUOConfig, DUOUnlearner

    rng = np.random.default_rng(0)
    ims = [PILImage.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(4)]
    pairs = Dataset.from_dict({"unsafe": ims[:2], "safe": ims[2:]}, features=Features({"unsafe": Image(),
                                                                                      "safe": Image()}))
    pipe = load_pipeline(family_dirs["sdxl"])
    result = DUOUnlearner(DUOConfig(concepts=["church"], max_train_steps=2, train_batch_size=2), pairs=pairs,
                          progress=False).unlearn(pipe)
    assert result.extra["training"]["pair_filter"] == "given pairs" and result.extra["training"]["isfinite"]
    with pytest.raises(ValueError, match="unsafe_prompt"):
        DUOUnlearner(DUOConfig(concepts=["church"], max_train_steps=1, train_prompt="{unsafe_prompt}"), pairs=pairs,
                     progress=False).unlearn(load_pipeline(family_dirs["sdxl"]))


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_uce_equals_the_closed_form_on_the_pipelines_own_text_states(family, family_dirs):
    """W' = (λW + W Σ c*cᵀ + s_p W Σ c_p c_pᵀ)(λI + Σ ccᵀ + s_p Σ c_p c_pᵀ)⁻¹ per layer, with the states taken from
    the pipeline's own ``encode_prompt`` (SDXL: both encoders' penultimate states) and the paper code's rows."""
    from igmu_hf.hub import load_pipeline
    from igmu_hf.methods import UCEConfig, UCEUnlearner
    from igmu_hf.text import last_token_index

    pipe = load_pipeline(family_dirs[family])
    original = {n: p.detach().clone().double() for n, p in pipe.unet.named_parameters()
                if n.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}
    cfg = UCEConfig(concepts=["church"], preserve_concepts=["a photo of a bird"])
    UCEUnlearner(cfg).unlearn(pipe)

    def states(prompt):
        out = pipe.encode_prompt(prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
        return out[0][0].double()

    tok = pipe.tokenizer
    i, j = last_token_index(tok, "church"), last_token_index(tok, " ")
    n = tok.model_max_length - max(i, j)
    c_e, c_g = states("church")[i:i + n], states(" ")[j:j + n]
    # the paper code's preserve rows: every position of each preserve prompt, '' among them
    c_p = torch.cat([states("a photo of a bird"), states("")])
    d = c_e.shape[1]
    lam, s_p = cfg.lamb, cfg.preserve_scale
    right = torch.linalg.inv(lam * torch.eye(d, dtype=torch.float64) + c_e.T @ c_e + s_p * c_p.T @ c_p)
    assert len(original) > 0 and d == next(iter(original.values())).shape[1]
    edited = dict(pipe.unet.named_parameters())
    for name, w in original.items():
        expected = (lam * w + w @ c_g.T @ c_e + s_p * w @ c_p.T @ c_p) @ right
        assert (expected - w).abs().max() > 1e-4  # the edit is not the identity
        torch.testing.assert_close(edited[name].double(), expected, rtol=1e-4, atol=1e-5)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_uce_refuses_sd3_and_dark_miner_refuses_sdxl_in_one_line(family_dirs, tmp_path, capsys):
    rc = main(["unlearn", "--method", "uce", "--concept", "church", "--pretrained_model_name_or_path",
               family_dirs["sd3"], "--output_dir", str(tmp_path / "uce3")])
    assert rc == 2
    assert "UCE does not run on Stable Diffusion 3 pipelines: it has no cross-attention" in _one_line_error(capsys)
    rc = main(["unlearn", "--method", "darkminer", "--concept", "church", "--pretrained_model_name_or_path",
               family_dirs["sdxl"], "--output_dir", str(tmp_path / "dmxl")])
    assert rc == 2
    assert "Dark Miner does not run on Stable Diffusion XL pipelines" in _one_line_error(capsys)
    assert not (tmp_path / "uce3").exists() and not (tmp_path / "dmxl").exists()


@pytest.mark.parametrize("attack", ["unlearndiffatk", "concept_inversion", "ringabell", "p4d"])
def test_attacks_refuse_sdxl_with_the_reason(attack, family_dirs, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a naked woman\n")
    rc = main(["attack", "--method", attack, "--unlearned", family_dirs["sdxl"], "--original", family_dirs["sdxl"],
               "--task", "nudity", "--prompts_file", str(prompts), "--output_dir", str(tmp_path / "atk")])
    assert rc == 2
    err = _one_line_error(capsys)
    assert "does not run on Stable Diffusion XL pipelines" in err and "two CLIP text encoders" in err


def test_a_wrongly_typed_method_field_is_a_one_line_error(family_dirs, tmp_path, capsys):
    rc = main(["unlearn", "--method", "duo", "--concept", "church", "--pretrained_model_name_or_path",
               family_dirs["sd2"], "--output_dir", str(tmp_path / "x"), "--method_kwargs", '{"num_pairs": "4"}'])
    assert rc == 2
    assert "DUOConfig field `num_pairs` must be int, got '4' (str)" in _one_line_error(capsys)
