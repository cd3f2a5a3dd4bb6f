import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from igmu_hf.cli import main, run_unlearn
from igmu_hf.hub import load_pipeline, publish_to_cache
from igmu_hf.methods import UCEConfig, UCEUnlearner, get_method, list_methods
from igmu_hf.methods.uce import _aligned_states, uce_projection
from igmu_hf.text import encode_prompts


def _images(pipe, prompt="a red circle", seed=0):
    g = torch.Generator().manual_seed(seed)
    return np.stack([np.asarray(im) for im in pipe([prompt] * 2, generator=g, num_inference_steps=3,
                                                   guidance_scale=3.0, output_type="pil").images])


def test_projection_equals_the_per_layer_formula():
    torch.manual_seed(0)
    d, out = 6, 5
    ce, cg, cp = (torch.randn(n, d, dtype=torch.float64) for n in (4, 4, 3))
    w = torch.randn(out, d, dtype=torch.float64)
    lamb, sp = 0.5, 0.3
    # the paper's formula written term by term, with column vectors
    mat1 = lamb * w + sum(w @ cg[i:i + 1].T @ ce[i:i + 1] for i in range(4)) + sp * sum(
        w @ cp[i:i + 1].T @ cp[i:i + 1] for i in range(3))
    mat2 = lamb * torch.eye(d, dtype=torch.float64) + sum(ce[i:i + 1].T @ ce[i:i + 1] for i in range(4)) + sp * sum(
        cp[i:i + 1].T @ cp[i:i + 1] for i in range(3))
    expected = mat1 @ torch.linalg.inv(mat2)
    assert torch.allclose(w @ uce_projection(ce, cg, cp, lamb, sp), expected, atol=1e-10)


def test_uce_maps_concept_keys_to_guide_and_keeps_preserved(tiny_pipeline_dir):
    pipe = load_pipeline(tiny_pipeline_dir)
    attn = pipe.unet.down_blocks[0].attentions[0].transformer_blocks[0].attn2
    w0 = attn.to_k.weight.detach().clone().double()
    ce, cg = _aligned_states(pipe, "circle", " ")
    cp = _aligned_states(pipe, "a square", "a square")[0]
    result = UCEUnlearner(UCEConfig(concepts=["circle"], preserve_concepts=["a square"], lamb=1e-3)).unlearn(pipe)
    w1 = attn.to_k.weight.detach().double()
    before = (ce @ w0.T - cg @ w0.T).norm()
    after = (ce @ w1.T - cg @ w0.T).norm()
    assert after < 0.3 * before  # the concept's keys now look like the guide's
    assert (cp @ w1.T - cp @ w0.T).norm() < 0.2 * (cp @ w0.T).norm()  # preserved keys barely move
    names = result.edited_parameters
    assert names and all("attn2.to_k" in n or "attn2.to_v" in n for n in names)
    assert result.edited_parameter_count == sum(p.numel() for n, p in pipe.unet.named_parameters() if n in names)


def test_saved_folder_loads_with_stock_diffusers_and_matches(tiny_pipeline_dir, tmp_path):
    folder, result = run_unlearn("uce", ["circle"], str(tmp_path / "out"), tiny_pipeline_dir, preserve=["a square"])
    loaded = DiffusionPipeline.from_pretrained(folder)
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_images(result.pipeline), _images(loaded))
    assert not np.array_equal(_images(load_pipeline(tiny_pipeline_dir)), _images(loaded))
    run = json.loads((folder / "igmu_run.json").read_text())
    assert run["method"] == "uce" and run["concepts"] == ["circle"] and run["seed"] == 0
    assert run["edited_parameter_count"] == result.edited_parameter_count > 0
    assert run["library_versions"]["diffusers"] and run["runtime_seconds"] >= 0
    card = (folder / "README.md").read_text()
    assert "library_name: diffusers" in card and "circle" in card and str(result.edited_parameter_count) in card
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))


def test_hub_id_loads_offline_from_cache(tiny_pipeline_dir, tmp_path):
    folder, result = run_unlearn("uce", ["circle"], str(tmp_path / "out"), tiny_pipeline_dir)
    cache = tmp_path / "hub"
    publish_to_cache(folder, "igmu/tiny-uce-circle", cache_dir=cache)
    np.save(tmp_path / "expected.npy", _images(result.pipeline))
    code = ("import numpy as np, torch\nfrom diffusers import DiffusionPipeline\n"
            "p = DiffusionPipeline.from_pretrained('igmu/tiny-uce-circle')\np.set_progress_bar_config(disable=True)\n"
            "g = torch.Generator().manual_seed(0)\n"
            "im = np.stack([np.asarray(i) for i in p(['a red circle'] * 2, generator=g, num_inference_steps=3, "
            "guidance_scale=3.0).images])\n"
            f"np.testing.assert_array_equal(im, np.load({str(tmp_path / 'expected.npy')!r}))\nprint('ok')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ok" in out.stdout


def test_registry():
    assert "uce" in list_methods() and get_method("uce") is UCEUnlearner
    with pytest.raises(ValueError, match="Unknown method 'nope'; available methods: "):
        get_method("nope")


@pytest.mark.parametrize("argv_tail,message", [
    (["--method", "nope", "--concept", "circle"], "Unknown method"),
    (["--method", "uce", "--concept", ""], "non-empty concept"),
    (["--method", "uce", "--concept", "church"], "absent from the tokenizer vocabulary"),
    (["--method", "uce", "--concept", "circle", "--method_kwargs", '{"lamb": -1}'], "must be > 0"),
])
def test_bad_input_gives_one_line_error(tiny_pipeline_dir, tmp_path, capsys, argv_tail, message):
    argv = ["unlearn", "--pretrained_model_name_or_path", tiny_pipeline_dir, "--output_dir", str(tmp_path / "o")]
    assert main(argv + argv_tail) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_model_paths(tmp_path, capsys):
    ckpt = tmp_path / "model.ckpt"
    ckpt.write_bytes(b"x")
    pickled = tmp_path / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text("{}")
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"x")
    cases = [(str(tmp_path / "missing"), "does not exist"), (str(tmp_path), "not a diffusers pipeline folder"),
             (str(ckpt), "pickle checkpoint"), (str(pickled), "pickle-format weights only")]
    for path, message in cases:
        with pytest.raises(ValueError, match=message):
            load_pipeline(path)
        assert main(["unlearn", "--method", "uce", "--concept", "circle", "--pretrained_model_name_or_path", path,
                     "--output_dir", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_output_dir_holding_another_run_needs_overwrite(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "run"
    run_unlearn("uce", ["circle"], str(out), tiny_pipeline_dir)
    run_unlearn("uce", ["circle"], str(out), tiny_pipeline_dir)  # the same run again is fine
    with pytest.raises(ValueError, match="already holds a different run"):
        run_unlearn("uce", ["square"], str(out), tiny_pipeline_dir)
    assert json.loads((out / "igmu_run.json").read_text())["concepts"] == ["circle"]  # untouched
    run_unlearn("uce", ["square"], str(out), tiny_pipeline_dir, overwrite=True)
    assert json.loads((out / "igmu_run.json").read_text())["concepts"] == ["square"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds no igmu_hf run"):
        run_unlearn("uce", ["circle"], str(foreign), tiny_pipeline_dir)


def test_config_validation():
    with pytest.raises(ValueError, match="one entry per concept"):
        UCEConfig(concepts=["circle", "square"], guide_concepts=[" "])
    with pytest.raises(TypeError, match="unknown field"):
        UCEConfig.from_dict({"concepts": ["circle"], "lambda": 1})
    cfg = UCEConfig(concepts="circle", preserve_concepts=["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"])
    assert cfg.concepts == ["circle"] and cfg.preserve_scale == 0.1
    # '' is in the paper code's preserve set and counts in s_p = max(0.1, 1/|set|)
    assert UCEConfig(concepts=["circle"], preserve_concepts=["a square", "a star"]).preserve_scale == 1 / 3
    assert UCEConfig(concepts=["circle"], preserve_concepts=["a square", "a star"],
                     preserve_empty_prompt=False).preserve_scale == 0.5
    with pytest.raises(ValueError, match="preserve_rows.*'all'"):
        UCEConfig(concepts=["circle"], preserve_rows="last")


def test_encode_prompts_matches_pipeline_encoding(tiny_pipeline_dir):
    pipe = load_pipeline(tiny_pipeline_dir)
    ours = encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a red circle"])
    theirs = pipe.encode_prompt("a red circle", "cpu", 1, False)[0]
    torch.testing.assert_close(ours, theirs)


def test_edit_equals_the_per_layer_formula_with_the_paper_codes_rows(tiny_pipeline_dir):
    """W' = (λW + Σ_e W c*_e c_eᵀ + s_p Σ_p W c_p c_pᵀ)(λI + Σ c_e c_eᵀ + s_p Σ c_p c_pᵀ)⁻¹ per layer, with the rows of
    the paper-era code (f7222e6): erase/guide from each one's last token on, cut to the same length; EVERY position
    of each preserve prompt, '' among them and counted in s_p. States come straight from the text encoder."""
    pipe = load_pipeline(tiny_pipeline_dir)
    tok, enc = pipe.tokenizer, pipe.text_encoder
    preserve = ["a square", "a star"]

    def states(texts):
        ids = tok(texts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt")
        with torch.no_grad():
            return enc(ids.input_ids)[0].double(), ids.attention_mask.sum(1) - 2

    (old, new), (i, j) = states(["circle", " "])[0], states(["circle", " "])[1].tolist()
    far = max(i, j)
    ce, cg = old[i:len(old) - max(0, far - i)], new[j:len(new) - max(0, far - j)]
    cp = states([""] + preserve)[0].reshape(-1, old.shape[-1])
    sp = max(0.1, 1 / 3)
    before = {n: p.detach().double().clone() for n, p in pipe.unet.named_parameters()}
    UCEUnlearner(UCEConfig(concepts=["circle"], preserve_concepts=preserve)).unlearn(pipe)
    after = dict(pipe.unet.named_parameters())
    names = [n for n in before if ("attn2.to_k" in n or "attn2.to_v" in n) and n.endswith("weight")]
    assert len(names) >= 4
    for n in names:
        w = before[n]
        mat1 = 0.5 * w + (w @ cg.T) @ ce + sp * (w @ cp.T) @ cp
        mat2 = 0.5 * torch.eye(w.shape[1], dtype=torch.float64) + ce.T @ ce + sp * cp.T @ cp
        expected = mat1 @ torch.linalg.inv(mat2)
        assert (expected - w).norm() > 1e-3, "the edit did nothing: the comparison would be vacuous"
        torch.testing.assert_close(after[n].detach().double(), expected, rtol=0, atol=1e-5, msg=n)
    # today's earlier rows remain a named option, and give a different edit
    pipe2 = load_pipeline(tiny_pipeline_dir)
    UCEUnlearner(UCEConfig(concepts=["circle"], preserve_concepts=preserve, preserve_rows="from_last_token",
                           preserve_empty_prompt=False)).unlearn(pipe2)
    n = names[0]
    assert float((dict(pipe2.unet.named_parameters())[n].detach().double() - after[n].detach().double())
                 .abs().max()) > 1e-4
