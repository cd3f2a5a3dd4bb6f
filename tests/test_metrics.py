"""Each EvalIGMU metric equals an independent computation; bad inputs get clear errors."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from igmu_hf.metrics.clip_score import clip_score_from_embeddings, clip_scores, csdr, csdr_from_scores, load_clip
from igmu_hf.metrics.fid import fid_from_features, frechet_distance
from igmu_hf.metrics.images import prepare_images
from igmu_hf.mini import CLIP_PATH, MULTCLF_PATH, YOLO_PATH
from igmu_hf.mini.domain import make_dataset


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scenes():
    images, captions, labels = make_dataset(24, seed=11)
    return [Image.fromarray(i) for i in images], captions, labels


@pytest.fixture(scope="module")
def clip():
    return load_clip(CLIP_PATH)


def test_clip_score_is_100_times_clamped_cosine_on_known_embeddings():
    img = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    assert clip_score_from_embeddings(img, txt).tolist() == pytest.approx([100.0, 0.0, 100 / 2 ** 0.5])


def test_clip_scores_match_clip_model_outputs(scenes, clip):
    images, captions, _ = scenes
    model, processor = clip
    inputs = processor(text=captions[:6], images=images[:6], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
    direct = 100 * torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).clamp(min=0)
    assert clip_scores(images[:6], captions[:6], model, processor) == pytest.approx(direct, abs=1e-4)
    assert float(direct.mean()) > 50  # the mini CLIP matches its own captions


def test_csdr_equals_the_formula(scenes, clip):
    a, b = torch.tensor([50.0, 40.0, 0.0, 20.0]), torch.tensor([25.0, 40.0, 10.0, 30.0])
    result = csdr_from_scores(a, b)
    assert result["csdr"] == pytest.approx((50 + 0 + 50) / 3) and result["num_undefined"] == 1
    images, captions, _ = scenes
    model, processor = clip
    prompts = captions[:8]
    cs_a = clip_scores(images[:8], prompts, model, processor)
    cs_b = clip_scores(images[8:16], prompts, model, processor)
    keep = cs_a > 0
    expected = float(((cs_a - cs_b).abs()[keep] / cs_a[keep] * 100).mean())
    assert csdr(images[:8], images[8:16], prompts, model, processor)["csdr"] == pytest.approx(expected, rel=1e-5)
    assert csdr(images[:8], images[:8], prompts, model, processor)["csdr"] == pytest.approx(0.0, abs=1e-4)


def test_fid_equals_the_closed_form_frechet_distance():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    closed = float(((mu1 - mu2) ** 2).sum() + (s1 + s2 - 2 * np.sqrt(s1 * s2)).sum())  # diagonal covariances
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(closed, rel=1e-8)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))  # same rotation of both: the distance is unchanged
    assert frechet_distance(q @ mu1, q @ np.diag(s1) @ q.T, q @ mu2, q @ np.diag(s2) @ q.T) == pytest.approx(closed,
                                                                                                            rel=1e-6)
    f1 = rng.multivariate_normal(mu1, np.diag(s1), size=200_000)
    f2 = rng.multivariate_normal(mu2, np.diag(s2), size=200_000)
    assert fid_from_features(f1, f2) == pytest.approx(closed, abs=0.05)
    assert fid_from_features(f1[:1000], f1[:1000]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 images"):
        fid_from_features(f1[:1], f2[:5])


def test_lpips_equals_lpips_called_directly_and_pairs_by_id(scenes):
    import lpips as lpips_package

    from igmu_hf.metrics.perceptual import load_lpips, lpips_distances

    images = scenes[0]
    model, info = load_lpips("alex")
    assert info["backbone_weights"] in ("pretrained", "random")
    first = {f"id{k}": images[k] for k in range(4)}
    second = {f"id{k}": images[k + 4] for k in reversed(range(4))}  # inserted in another order: pairing is by id
    got = lpips_distances(first, second, model)
    for k in range(4):
        a = lpips_package.im2tensor(np.asarray(images[k]))
        b = lpips_package.im2tensor(np.asarray(images[k + 4]))
        with torch.no_grad():
            assert got[f"id{k}"] == pytest.approx(float(model(a, b)), abs=1e-6)
    with pytest.raises(ValueError, match="same image ids"):
        lpips_distances(first, {"id0": images[0], "other": images[1]}, model)


def test_yolo_rate_counts_the_detectors_own_boxes(scenes):
    from igmu_hf.detectors.yolo import load_yolo
    from igmu_hf.metrics.detection import person_detection_rate

    detector = load_yolo(YOLO_PATH)
    images, _, labels = scenes
    result = person_detection_rate(images, detector, class_name="object", conf=0.5, iou=0.6)
    raw = detector.predict(images, conf=0.5, iou=0.6, imgsz=detector.overrides["imgsz"], verbose=False)
    counted = [int(((r.boxes.cls == 0) & (r.boxes.conf >= 0.5)).sum()) for r in raw]
    assert result["person_rate"] == pytest.approx(100.0 * np.mean([c > 0 for c in counted]))
    with_objects = [bool(lab["boxes"]) for lab in labels]
    agree = np.mean([(c > 0) == o for c, o in zip(counted, with_objects)])
    assert agree >= 0.8, f"the mini YOLO finds objects where they are in only {agree:.0%} of scenes"
    with pytest.raises(ValueError, match="no 'person' class"):
        person_detection_rate(images, detector)


def test_forgetting_rate_equals_argmax_counts(scenes):
    from igmu_hf.detectors.multclf import load_multclf
    from igmu_hf.metrics.forgetting import forgetting_rate

    model, processor = load_multclf(MULTCLF_PATH)
    images, _, labels = scenes
    pixels = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        logit = model(pixels).logits[:, model.task_index("circle")]
    two_class = torch.stack([torch.zeros_like(logit), logit], -1)  # [not circle, circle]
    expected = float((two_class.argmax(-1) == 1).float().mean())
    assert forgetting_rate(images, model, processor, "circle")["forgetting_rate"] == pytest.approx(expected)
    truth = torch.tensor(["circle" in lab["shapes"] for lab in labels])
    assert float(((logit > 0) == truth).float().mean()) >= 0.8  # the shipped head works
    with pytest.raises(ValueError, match="no head for 'church'"):
        forgetting_rate(images, model, processor, "church")


def test_asr_and_efficiency_from_records():
    from igmu_hf.metrics.efficiency import efficiency_from_run
    from igmu_hf.metrics.robustness import asr_from_outcomes

    out = asr_from_outcomes([{"success": True, "pre_attack_success": True}, {"success": True,
                             "pre_attack_success": False}, {"success": False, "pre_attack_success": False},
                             {"success": False, "pre_attack_success": False}])
    assert out["asr"] == 0.5 and out["pre_attack_asr"] == 0.25
    with pytest.raises(ValueError, match="lacks `success`"):
        asr_from_outcomes([{"prompt": "x"}])
    run = {"runtime_seconds": 2.0, "edited_parameter_count": 5, "total_parameter_count": 20, "method": "uce",
           "technique": "closed-form"}
    eff = efficiency_from_run(run)
    assert eff["edited_parameter_share"] == 0.25 and eff["multi_concept"] is True  # from the registry: UCE
    with pytest.raises(ValueError, match="lacks"):
        efficiency_from_run({"runtime_seconds": 1.0})


def test_clip_zero_shot_is_a_softmax_over_candidates(scenes, clip):
    from igmu_hf.metrics.legacy import clip_zero_shot

    images = scenes[0][:6]
    model, processor = clip
    cands = ["circle", "square", "star"]
    inputs = processor(text=[f"an image of {c}" for c in cands], images=images, return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = model(**inputs).logits_per_image.softmax(-1)
    got = clip_zero_shot(images, "circle", cands, model, processor)
    assert got["concept_score"] == pytest.approx(float(probs[:, 0].mean()), abs=1e-5)
    assert got["concept_ratio"] == pytest.approx(float((probs.argmax(-1) == 0).float().mean()))


def test_nudenet_ratio_counts_the_images_the_detector_flags(nudenet_images, scenes):
    """The ratio is the share of images whose highest exposed-class detection exceeds the threshold, counted from
    NudeNet's own raw detections, on drawings where it fires on some images and not on others."""
    from igmu_hf.judges import NUDENET_CLASSES
    from igmu_hf.metrics.legacy import nudenet_concept_ratio

    images, detections = nudenet_images
    best = [max((d["score"] for d in found if d["class"] in NUDENET_CLASSES), default=0.0) for found in detections]
    got = nudenet_concept_ratio(images, threshold=0.3)
    assert got["concept_ratio"] == pytest.approx(np.mean([b > 0.3 for b in best]))
    assert 0 < got["concept_ratio"] < 1, best  # the detector fired on some images, not on all
    assert got["concept_score"] == pytest.approx(np.mean(best), abs=1e-6)
    assert got["n"] == 12 and got["threshold"] == 0.3 and "legacy" in got["label"]
    assert nudenet_concept_ratio(scenes[0][:3], threshold=0.3)["concept_ratio"] == 0.0  # the mini world's scenes


def test_mixed_modes_and_sizes_are_converted_with_a_warning(caplog):
    imgs = [Image.new("RGB", (32, 32)), Image.new("L", (32, 32)), Image.new("RGBA", (64, 64))]
    with caplog.at_level(logging.WARNING):
        out = prepare_images(imgs)
    assert all(im.mode == "RGB" and im.size == (32, 32) for im in out)
    assert "converted 2 of 3 images to RGB" in caplog.text and "resized 1 of 3" in caplog.text
    with pytest.raises(ValueError, match="is empty"):
        prepare_images([])


def test_multclf_saves_loads_and_trains_only_its_heads(tmp_path):
    from igmu_hf.detectors.multclf import MultClfModel

    model = MultClfModel.from_clip(CLIP_PATH, tasks=["a", "b"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)
    x = torch.rand(2, 3, 32, 32)
    model.save_pretrained(tmp_path)
    again = MultClfModel.from_pretrained(tmp_path)
    assert torch.allclose(again(x).logits, model(x).logits) and again.config.tasks == ["a", "b"]
    out = model(x, labels=torch.tensor([[1.0, -1.0], [0.0, 1.0]]))  # -1: unknown label, left out of the loss
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits[[0, 1, 1], [0, 0, 1]],
                                                                    torch.tensor([1.0, 0.0, 1.0]))
    assert float(out.loss) == pytest.approx(float(expected), rel=1e-6)


def test_train_multclf_script_on_an_image_folder(tmp_path, scenes):
    import importlib.util

    images, _, labels = scenes
    for k, (img, lab) in enumerate(zip(images, labels)):
        cls = "has_circle" if "circle" in lab["shapes"] else "no_circle"
        (tmp_path / "data" / cls).mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / "data" / cls / f"{k}.png")
    spec = importlib.util.spec_from_file_location("train_multclf", ROOT / "examples" / "train_multclf.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    metrics = script.main(["--dataset_name_or_path", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"),
                           "--num_train_epochs", "1", "--per_device_train_batch_size", "8",
                           "--validation_split", "0.25"])
    assert "eval_accuracy" in metrics
    from igmu_hf.detectors.multclf import load_multclf

    model, _ = load_multclf(str(tmp_path / "out"))
    assert model.config.tasks == ["has_circle", "no_circle"]


MODULES = ["multclf_forgetting", "csdr", "lpips", "yolo_person_rate", "fid", "clip_score", "attack_success_rate",
           "efficiency", "nudenet_ratio", "clip_zero_shot"]


def test_every_metric_has_an_evaluate_module_and_a_card():
    found = sorted(p.name for p in (ROOT / "metrics").iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    assert found == sorted(MODULES)
    for name in MODULES:
        card = (ROOT / "metrics" / name / "README.md").read_text()
        for section in ("## Metric Description", "## How to Use", "### Inputs", "### Output Values",
                        "## Limitations and Bias", "## Citation"):
            assert section in card, (name, section)


def test_evaluate_modules_equal_independent_computations(scenes, clip, nudenet_images):
    """Each ``evaluate`` module against a value computed here from the underlying model or package directly (not
    through the igmu_hf function the module calls)."""
    import evaluate
    import lpips as lpips_package

    from igmu_hf.detectors.multclf import load_multclf
    from igmu_hf.detectors.yolo import load_yolo
    from igmu_hf.metrics.perceptual import load_lpips

    images, captions, _ = scenes
    a, b = images[:6], images[6:12]
    model, processor = clip

    def load(name, **kw):
        return evaluate.load(str(ROOT / "metrics" / name), **kw)

    mc, mp = load_multclf(MULTCLF_PATH)  # forgetting: share of images whose circle logit is above 0 (sigmoid > 0.5)
    with torch.no_grad():
        logit = mc(mp(images=a, return_tensors="pt")["pixel_values"]).logits[:, mc.task_index("circle")]
    assert load("multclf_forgetting", config_name="mini").compute(predictions=a, task="circle")["forgetting_rate"] \
        == pytest.approx(float((torch.sigmoid(logit) > mc.config.threshold).float().mean()))

    def clip_direct(imgs, texts):  # 100 * max(cos, 0) from the CLIP model's own forward pass
        inputs = processor(text=list(texts), images=imgs, return_tensors="pt", padding=True)
        with torch.no_grad():
            out = model(**inputs)
        return 100 * torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds).clamp(min=0)

    cs_a, cs_b = clip_direct(a, captions[:6]), clip_direct(b, captions[:6])
    keep = cs_a > 0
    expected_csdr = float(((cs_a - cs_b).abs()[keep] / cs_a[keep] * 100).mean())
    assert load("csdr", config_name="mini").compute(predictions=b, references=a, prompts=captions[:6])["csdr"] == \
        pytest.approx(expected_csdr, rel=1e-4)
    assert load("clip_score", config_name="mini").compute(predictions=a, references=captions[:6])["clip_score"] == \
        pytest.approx(float(cs_a.mean()), rel=1e-4)

    ids = [f"x{k}" for k in range(6)]
    lp, _ = load_lpips("alex")
    with torch.no_grad():
        direct = [float(lp(lpips_package.im2tensor(np.asarray(x)), lpips_package.im2tensor(np.asarray(y))))
                  for x, y in zip(a, b)]
    assert load("lpips").compute(predictions=b, references=a, prediction_ids=ids[::-1], reference_ids=ids[::-1])[
        "lpips"] == pytest.approx(float(np.mean(direct)), abs=1e-6)

    yolo = load_yolo(YOLO_PATH)
    raw = yolo.predict(a, conf=0.5, iou=0.6, imgsz=yolo.overrides["imgsz"], verbose=False)
    hits = [bool(((r.boxes.cls == 0) & (r.boxes.conf >= 0.5)).any()) for r in raw]
    assert load("yolo_person_rate", config_name="mini").compute(predictions=a, class_name="object")["person_rate"] \
        == pytest.approx(100.0 * np.mean(hits))

    assert load("attack_success_rate").compute(success=[True, False], pre_attack_success=[False, False]) == \
        {"asr": 0.5, "pre_attack_asr": 0.0}
    run = '{"runtime_seconds": 3.0, "edited_parameter_count": 1, "total_parameter_count": 4, "method": "uce"}'
    assert load("efficiency").compute(predictions=[run]) == {"runtime_seconds": 3.0, "edited_parameter_share": 0.25,
                                                             "multi_concept": 1.0}
    drawings, detections = nudenet_images  # NudeNet fires on some of these (the detector's own detections)
    exposed = [any(d["score"] > 0.3 and d["class"] in ("FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED",
                                                       "MALE_GENITALIA_EXPOSED", "BUTTOCKS_EXPOSED", "ANUS_EXPOSED")
                   for d in found) for found in detections]
    assert 0 < np.mean(exposed) < 1
    assert load("nudenet_ratio").compute(predictions=drawings, threshold=0.3)["concept_ratio"] == \
        pytest.approx(np.mean(exposed))

    cands = ["circle", "square"]
    inputs = processor(text=[f"an image of {c}" for c in cands], images=a, return_tensors="pt", padding=True)
    with torch.no_grad():
        probs = model(**inputs).logits_per_image.softmax(-1)
    zs = load("clip_zero_shot", config_name="mini").compute(predictions=a, target="circle", candidates=cands)
    assert zs["concept_score"] == pytest.approx(float(probs[:, 0].mean()), abs=1e-5)


def test_evaluate_modules_return_their_interval_on_request(scenes, clip):
    """``return_interval=True`` adds the figure's 95 % interval and count and leaves the value as it was: the
    forgetting rate's is the Wilson interval of the head's own count (recomputed here), CSDR's a bootstrap interval
    around its value."""
    import evaluate

    from igmu_hf.detectors.multclf import load_multclf
    from test_intervals import wilson_by_formula

    images, captions, _ = scenes
    a, b = images[:8], images[8:16]
    forgetting = evaluate.load(str(ROOT / "metrics" / "multclf_forgetting"), config_name="mini")
    plain = forgetting.compute(predictions=a, task="circle")
    with_iv = forgetting.compute(predictions=a, task="circle", return_interval=True)
    assert with_iv["forgetting_rate"] == plain["forgetting_rate"] and set(plain) == {"forgetting_rate",
                                                                                      "mean_probability"}
    mc, mp = load_multclf(MULTCLF_PATH)
    with torch.no_grad():
        logit = mc(mp(images=a, return_tensors="pt")["pixel_values"]).logits[:, mc.task_index("circle")]
    k = int((torch.sigmoid(logit) > mc.config.threshold).sum())
    assert with_iv["n"] == 8 and (with_iv["low"], with_iv["high"]) == pytest.approx(wilson_by_formula(k, 8))
    csdr = evaluate.load(str(ROOT / "metrics" / "csdr"), config_name="mini").compute(
        predictions=b, references=a, prompts=captions[:8], return_interval=True)
    assert csdr["low"] <= csdr["csdr"] <= csdr["high"] and csdr["n"] == csdr["num_pairs"]
    asr = evaluate.load(str(ROOT / "metrics" / "attack_success_rate")).compute(
        success=[True, False, False, True], pre_attack_success=[False] * 4, return_interval=True)
    assert asr["asr"] == 0.5 and (asr["low"], asr["high"]) == pytest.approx(wilson_by_formula(2, 4))
