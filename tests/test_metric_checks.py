"""Bad input to an EvalIGMU metric gets a clear error naming the problem, never a silently wrong number: strings and
NaN as flags, duplicate ids, impossible run numbers, an empty run list, too few images, empty or over-long prompts."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from igmu_hf.mini import CLIP_PATH


ROOT = Path(__file__).resolve().parents[1]


def load(name, **kw):
    import evaluate

    return evaluate.load(str(ROOT / "metrics" / name), **kw)


def _images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.mark.parametrize("bad", [["False", True], [float("nan"), True], [2, False], [None, True]])
def test_asr_refuses_values_that_are_not_booleans(bad):
    asr = load("attack_success_rate")
    with pytest.raises(ValueError, match=r"`success` must hold booleans.*\[0\]="):
        asr.compute(success=bad, pre_attack_success=[False, False])
    from igmu_hf.metrics.robustness import asr_from_outcomes

    with pytest.raises(ValueError, match="must hold booleans|lacks `success`"):
        asr_from_outcomes([{"success": bad[0], "pre_attack_success": False}])


def test_asr_on_valid_records_counts_successes():
    success, pre = [True, False, True, False, True], [True, False, False, False, False]
    out = load("attack_success_rate").compute(success=success, pre_attack_success=pre)
    assert out == {"asr": 3 / 5, "pre_attack_asr": 1 / 5}


def test_lpips_refuses_duplicate_ids():
    ims = _images(3)
    with pytest.raises(ValueError, match=r"duplicate id\(s\) \['a'\]"):
        load("lpips").compute(predictions=ims, references=ims, prediction_ids=["a", "a", "b"],
                              reference_ids=["a", "b", "c"])


@pytest.mark.parametrize("run, match", [
    ('{"runtime_seconds": 3.0, "edited_parameter_count": 8, "total_parameter_count": 4}', "edited_parameter_count"),
    ('{"runtime_seconds": 3.0, "edited_parameter_count": 1, "total_parameter_count": 0}', "total_parameter_count"),
    ('{"runtime_seconds": -1.0, "edited_parameter_count": 1, "total_parameter_count": 4}', "runtime_seconds"),
])
def test_efficiency_refuses_impossible_runs(run, match):
    with pytest.raises(ValueError, match=match):
        load("efficiency").compute(predictions=[run])


def test_efficiency_of_no_run_is_an_error_not_a_division_by_zero():
    with pytest.raises(ValueError, match="no run"):
        load("efficiency").compute(predictions=[])


def test_fid_needs_two_images_and_flags_a_singular_covariance():
    from igmu_hf.metrics.fid import fid_from_features

    with pytest.raises(ValueError, match="at least 2 images"):
        load("fid", config_name="mini").compute(predictions=_images(1), references=_images(1, 1))
    out = load("fid", config_name="mini").compute(predictions=_images(3), references=_images(3, 1))
    assert out["singular_covariance"] is True and out["num_images"] == [3, 3]  # 3 images, far more feature dims
    rng = np.random.default_rng(0)
    assert fid_from_features(rng.normal(size=(40, 4)), rng.normal(size=(40, 4)), details=True)[
        "singular_covariance"] is False


def test_clip_score_refuses_empty_and_over_long_prompts():
    clip_score = load("clip_score", config_name="mini")
    with pytest.raises(ValueError, match="empty or non-string prompt"):
        clip_score.compute(predictions=_images(2), references=["a red circle", " "])
    from igmu_hf.metrics.clip_score import clip_text_embeddings, load_clip

    model, processor = load_clip(CLIP_PATH)
    too_long = " ".join(["circle"] * (processor.tokenizer.model_max_length + 5))
    with pytest.raises(ValueError, match="exceed the text encoder's"):
        clip_text_embeddings(["a red circle", too_long], model, processor)


def test_csdr_reports_how_many_pairs_it_kept():
    from igmu_hf.mini.domain import make_dataset

    drawings, captions, _ = make_dataset(4, seed=3)
    ims = [Image.fromarray(d) for d in drawings]
    out = load("csdr", config_name="mini").compute(predictions=ims, references=ims[::-1], prompts=captions)
    assert out["num_pairs"] + out["num_undefined"] == 4 and out["num_pairs"] >= 1


def test_a_module_published_to_the_modules_cache_loads_by_hub_id_offline(tmp_path):
    """``evaluate.load("igmu/csdr")`` offline reads ``$HF_MODULES_CACHE/evaluate_modules/metrics/igmu--csdr/<hash>/``."""
    import json
    import os
    import subprocess
    import sys

    from igmu_hf.hub import publish_metric_to_cache

    target = publish_metric_to_cache(ROOT / "metrics" / "csdr", "igmu/csdr", tmp_path / "modules")
    assert (target / "requirements.txt").read_text().strip().endswith("igmu_hf")
    code = ("import json, evaluate\nfrom PIL import Image\nfrom igmu_hf.mini.domain import make_dataset\n"
            "d, c, _ = make_dataset(4, seed=3)\nims = [Image.fromarray(x) for x in d]\n"
            "m = evaluate.load('igmu/csdr', config_name='mini')\n"
            "print(json.dumps({'module': type(m).__module__, **m.compute(predictions=ims, references=ims[::-1], "
            "prompts=c)}))\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["module"].startswith("evaluate_modules.metrics.igmu--csdr.")
    from igmu_hf.metrics.clip_score import csdr, load_clip
    from igmu_hf.mini.domain import make_dataset

    d, c, _ = make_dataset(4, seed=3)
    ims = [Image.fromarray(x) for x in d]
    model, processor = load_clip(CLIP_PATH)
    assert out["csdr"] == pytest.approx(csdr(ims[::-1], ims, c, model, processor)["csdr"], rel=1e-5)


def test_evaluate_modules_equal_independent_computations():
    """The modules against values computed here from scratch: the CLIP score from the CLIP model's own embeddings,
    FID with a Fréchet distance written in this test, ASR by counting the records."""
    import scipy.linalg
    import torch

    from igmu_hf.metrics.clip_score import load_clip
    from igmu_hf.mini.domain import make_dataset

    drawings, captions, _ = make_dataset(8, seed=5)
    ims = [Image.fromarray(d) for d in drawings]
    model, processor = load_clip(CLIP_PATH)
    with torch.no_grad():
        img = model.get_image_features(pixel_values=processor(images=ims, return_tensors="pt")["pixel_values"])
        img = getattr(img, "pooler_output", img)
        tok = processor(text=captions, return_tensors="pt", padding=True)
        txt = model.get_text_features(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])
        txt = getattr(txt, "pooler_output", txt)
    cos = (img / img.norm(dim=-1, keepdim=True) * (txt / txt.norm(dim=-1, keepdim=True))).sum(-1)
    by_hand = float((100 * cos.clamp(min=0)).mean())
    got = load("clip_score", config_name="mini").compute(predictions=ims, references=captions)["clip_score"]
    assert got == pytest.approx(by_hand, rel=1e-4)

    feats = (img / img.norm(dim=-1, keepdim=True)).double().numpy()
    a, b = feats[:4], feats[4:]

    def frechet(x, y):
        mx, my = x.mean(0), y.mean(0)
        cx, cy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        root = scipy.linalg.sqrtm(cx @ cy).real
        return float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * root))

    out = load("fid", config_name="mini").compute(predictions=ims[4:], references=ims[:4])
    assert out["fid"] == pytest.approx(frechet(b, a), rel=1e-3, abs=1e-4)

    success = [True, True, False, True, False, False]
    pre = [True, False, False, False, False, False]
    asr = load("attack_success_rate").compute(success=success, pre_attack_success=pre)
    assert asr["asr"] == sum(s or p for s, p in zip(success, pre)) / 6 and asr["pre_attack_asr"] == 1 / 6
