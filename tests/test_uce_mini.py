"""UCE end to end on the mini world: `igmu unlearn` then `igmu evaluate`, the demo, the report folder. Whether UCE
forgets and keeps is its method check (tests/test_method_checks.py, on intervals over 64 target images and 32 of
each other shape)."""

import json

import pytest

from igmu_hf.cli import main


# all its tests run in one xdist worker, so the demo folder is never made in both
pytestmark = pytest.mark.xdist_group("uce_mini")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``igmu demo``'s folder (read only)."""
    out = tmp_path_factory.mktemp("demo") / "igmu_demo"
    assert main(["demo", "--output_dir", str(out)]) == 0
    return out


def test_cli_unlearn_then_evaluate_writes_report(tmp_path, capsys):
    out = tmp_path / "uce-circle"
    assert main(["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", str(out)]) == 0
    assert main(["evaluate", "--unlearned", str(out), "--output_dir", str(tmp_path / "report"), "--num_prompts", "4",
                 "--metrics", "multclf", "efficiency", "--update_model_card"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["task"]["target"] == "circle" and set(report["models"]) == {"original", "uce"}
    # each model's rate is MultClf's own verdict on the forget images the evaluator cached, recomputed here
    import torch
    from PIL import Image

    from igmu_hf.detectors.multclf import load_multclf
    from igmu_hf.mini import MULTCLF_PATH

    mc, mp = load_multclf(MULTCLF_PATH)
    rates = {}
    for name in ("original", "uce"):
        images = [Image.open(p).convert("RGB") for p in sorted((tmp_path / "report" / "images" / name).glob(
            "forget-*.png"))]
        with torch.no_grad():
            logit = mc(mp(images=images, return_tensors="pt")["pixel_values"]).logits[:, mc.task_index("circle")]
        rates[name] = float((torch.sigmoid(logit) > mc.config.threshold).float().mean())
        entry = report["models"][name]["forgetting"]["multclf_forgetting_rate"]
        assert entry["n"] == len(images) >= 4 and entry["forgetting_rate"] == pytest.approx(rates[name]), name
    assert rates["uce"] < rates["original"]
    assert report["detectors"]["multclf"]["checkpoint_sha256"] and report["runs"]["uce"]["method"] == "uce"
    assert report["models"]["uce"]["efficiency"]["run"]["technique"].startswith("closed-form")
    assert "forgetting rate" in capsys.readouterr().out
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")  # the model card now carries the results, as the Hub parses them
    rate = report["models"]["uce"]["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"]
    first = card.data.eval_results[0]
    assert (first.metric_type, first.metric_value) == ("igmu/multclf_forgetting_rate", rate)
    assert "UCE unlearning of circle" in card.text and "igmu" in card.data.tags
    # the packaged mini base is named in the text; the Hub's base_model field takes Hub ids only
    assert "`igmu_hf:mini/weights/pipeline`" in card.text and card.data.base_model is None


def test_demo_writes_the_report_folder(demo):
    out = demo
    for name in ("report.json", "report.md", "grid_uce.png", "radar.png", "task.json", "model_index/uce.yaml",
                 "model/model_index.json", "model/README.md"):
        assert (out / name).exists(), name
    report = json.loads((out / "report.json").read_text())
    assert report["task"]["category"] == "Local/Concrete/Object"
    from PIL import Image

    assert Image.open(out / "grid_uce.png").size[0] > 300
    # the demo's unlearned model forgets: MultClf rate of the original vs UCE on the same seeds
    rates = {m: r["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"] for m, r in report["models"].items()}
    assert rates["original"] >= 0.75 and rates["uce"] <= rates["original"] / 2


def test_reports_runs_and_cards_hold_no_absolute_local_paths(demo):
    """Everything a user may publish (the model folder, the report folder) names detectors and the base model by
    id, never by this machine's paths."""
    from pathlib import Path

    import igmu_hf
    from igmu_hf.hub import load_pipeline, resolve_id

    out = demo
    package = str(Path(igmu_hf.__file__).resolve().parent)
    texts = {p: p.read_text() for p in out.rglob("*") if p.suffix in (".json", ".md", ".yaml", ".jsonl")}
    assert len(texts) >= 6
    shipped = {p: p.read_text() for p in (Path(package) / "mini" / "weights").rglob("*.json")}  # what the wheel holds
    for path, text in {**texts, **shipped}.items():
        assert package not in text and str(out.parent) not in text and '": "/' not in text, path
    run = json.loads((out / "model" / "igmu_run.json").read_text())
    assert run["base_model"] == "igmu_hf:mini/weights/pipeline"
    assert load_pipeline(run["base_model"]).unet is not None and Path(resolve_id(run["base_model"])).is_dir()
    report = json.loads((out / "report.json").read_text())
    assert report["detectors"]["multclf"]["id"] == "igmu_hf:mini/weights/multclf"
    assert len(report["detectors"]["multclf"]["checkpoint_sha256"]) == 16
