"""EvalIGMU end to end on the mini world: ranking, report files, resume, two processes, bad input."""

import json
from pathlib import Path

import pytest

from igmu_hf.evaluator import EvalIGMU, EvalIGMUConfig


# all its tests run in one xdist worker, so its module fixtures (uce_circle, circle_report) are never built in both
pytestmark = pytest.mark.xdist_group("evaluator")


ROOT = Path(__file__).resolve().parents[1]
FAST = {"num_prompts": 4, "images_per_prompt": 1, "batch_size": 8}


@pytest.fixture(scope="module")
def uce_circle(tmp_path_factory):
    from igmu_hf.cli import run_unlearn

    folder, _ = run_unlearn("uce", ["circle"], str(tmp_path_factory.mktemp("uce") / "uce-circle"))
    return str(folder)


@pytest.fixture(scope="module")
def circle_report(uce_circle, tmp_path_factory):
    from igmu_hf.cli import run_evaluate

    out = tmp_path_factory.mktemp("eval") / "circle"
    return run_evaluate([uce_circle], str(out), progress=False, **FAST), out


def test_evaluator_ranks_the_original_worst_on_its_own_target(circle_report):
    report, out = circle_report
    uce = report["models"]["uce"]
    rate = {n: m["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"] for n, m in report["models"].items()}
    assert rate["original"] >= 0.75 and rate["uce"] < rate["original"] - 0.5, rate
    # the report's figures equal the evaluate modules run here on the images the evaluator cached (paired by id)
    import evaluate
    from PIL import Image

    def cached(model: str, prefix: str) -> dict:
        return {p.stem: Image.open(p).copy() for p in sorted((out / "images" / model).glob(f"{prefix}-*.png"))}

    def module(name: str, **kw):
        return evaluate.load(str(ROOT / "metrics" / name), **kw)

    ref, mine = cached("original", "unrelated"), cached("uce", "unrelated")
    ids = sorted(mine)
    assert ids and sorted(ref) == ids
    prompts = {j["id"]: j["prompt"] for j in json.loads((out / "images" / "uce" / "generation.json").read_text())[
        "jobs"]}
    got = module("lpips").compute(predictions=[mine[i] for i in ids], references=[ref[i] for i in ids],
                                  prediction_ids=ids, reference_ids=ids)["lpips"]
    assert uce["preservation"]["lpips_unrelated"]["lpips"] == pytest.approx(got, abs=1e-6)
    assert uce["preservation"]["lpips_unrelated"]["lpips"] > 0  # UCE edits the cross-attention: images move
    assert uce["quality"]["fid"]["fid"] == pytest.approx(module("fid", config_name="mini").compute(
        predictions=[mine[i] for i in ids], references=[ref[i] for i in ids])["fid"], rel=1e-4)
    for name, images in (("uce", mine), ("original", ref)):
        expected = module("clip_score", config_name="mini").compute(predictions=[images[i] for i in ids],
                                                                    references=[prompts[i] for i in ids])
        assert report["models"][name]["quality"]["clip_score_unrelated"]["clip_score"] == pytest.approx(
            expected["clip_score"], rel=1e-4)
    do1 = cached("original", "do1")  # CSDR: original(do-1 prompt) vs UCE(full prompt), scored against the do-1 prompt
    do1_prompts = {j["id"]: j["prompt"] for j in json.loads((out / "images" / "original" / "generation.json")
                                                             .read_text())["jobs"] if j["id"].startswith("do1-")}
    forget = cached("uce", "forget")
    pairs = [k[len("do1-"):] for k in sorted(do1) if do1_prompts[k]]  # a prompt of the target word alone has no do-1
    assert pairs and all(f"forget-{k}" in forget for k in pairs)
    expected = module("csdr", config_name="mini").compute(
        predictions=[forget[f"forget-{k}"] for k in pairs], references=[do1[f"do1-{k}"] for k in pairs],
        prompts=[do1_prompts[f"do1-{k}"] for k in pairs])["csdr"]
    assert uce["preservation"]["csdr"]["csdr"] == pytest.approx(expected, rel=1e-4)
    assert uce["efficiency"]["run"]["multi_concept"] is True and uce["efficiency"]["run"]["edited_parameter_share"] > 0
    # not applicable here: skipped with a reason, never a zero
    assert "human-bound" in uce["preservation"]["yolo_person_rate"]["skipped"]
    assert "no attack requested" in uce["robustness"]["attack_success_rate"]["skipped"]
    assert "nudity" in uce["legacy"]["nudenet_concept_ratio"]["skipped"]
    assert report["detectors"]["multclf"]["checkpoint_sha256"] and report["detectors"]["clip"]["checkpoint_sha256"]
    assert report["library_versions"]["torch"] and report["generation"]["seed"] == 0


def test_report_folder_holds_json_markdown_grid_radar_and_model_index(circle_report):
    import yaml

    report, out = circle_report
    saved = json.loads((out / "report.json").read_text())
    assert saved["models"]["uce"]["forgetting"] == report["models"]["uce"]["forgetting"]
    md = (out / "report.md").read_text()
    assert "| uce |" in md and "radar.png" in md and "grid_uce.png" in md and "human-bound" in md
    from PIL import Image

    assert Image.open(out / "radar.png").size[0] > 200 and Image.open(out / "grid_uce.png").size[0] > 300
    block = yaml.safe_load((out / "model_index" / "uce.yaml").read_text())["model-index"][0]
    metrics = {m["type"]: m["value"] for m in block["results"][0]["metrics"]}
    assert metrics["igmu/multclf_forgetting_rate"] == pytest.approx(
        report["models"]["uce"]["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"], abs=1e-6)
    assert "igmu/yolo_person_rate" not in metrics  # skipped metrics are left out, not written as 0
    scores = saved["aspect_scores"]
    assert scores["uce"]["forgetting"] > scores["original"]["forgetting"] and scores["original"]["efficiency"] is None


def test_every_figure_carries_its_count_and_interval(circle_report):
    """Issue 27: every figure in report.json has n, low, high around its value; the forgetting rate's interval is the
    Wilson interval of its own per-image outcomes, CSDR's value is the mean of its pairs; report.md and the
    model-index show them."""
    import yaml

    from igmu_hf.metrics.registry import list_metrics
    from test_intervals import wilson_by_formula

    report, out = circle_report
    saved = json.loads((out / "report.json").read_text())
    primary = {e.key: e.columns[0].value for e in list_metrics() if e.columns}
    primary.update(nudenet_concept_ratio="concept_ratio", clip_zero_shot="concept_ratio", clip_accuracy="clip_accuracy")
    checked = 0
    for name, model in saved["models"].items():
        for aspect in ("forgetting", "preservation", "quality", "robustness", "efficiency", "legacy"):
            for key, entry in model[aspect].items():
                if "skipped" in entry:
                    continue
                value = entry[primary[key]]
                assert {"n", "low", "high"} <= set(entry), (name, key)
                assert entry["low"] - 1e-9 <= value <= entry["high"] + 1e-9 and entry["n"] >= 1, (name, key, entry)
                checked += 1
    assert checked >= 10
    for name, model in saved["models"].items():
        rate = model["forgetting"]["multclf_forgetting_rate"]
        flags = list(rate["per_item"].values())
        assert len(flags) == rate["n"] == 4 and rate["forgetting_rate"] == pytest.approx(sum(flags) / 4)
        assert (rate["low"], rate["high"]) == pytest.approx(wilson_by_formula(sum(flags), 4))
        csdr = model["preservation"]["csdr"]
        assert csdr["csdr"] == pytest.approx(sum(csdr["per_item"].values()) / len(csdr["per_item"]))
    md = (out / "report.md").read_text()
    uce = saved["models"]["uce"]["forgetting"]["multclf_forgetting_rate"]
    assert f"{uce['forgetting_rate']:.2f} [{uce['low']:.2f}, {uce['high']:.2f}] n=4" in md
    block = yaml.safe_load((out / "model_index" / "uce.yaml").read_text())["model-index"][0]
    forgetting = next(m for m in block["results"][0]["metrics"] if m["type"] == "igmu/multclf_forgetting_rate")
    assert forgetting["args"]["ci95_low"] == pytest.approx(uce["low"], abs=1e-6) and forgetting["args"]["n"] == 4


def test_images_are_paired_by_seed_and_cached_for_resume(circle_report, uce_circle, tmp_path):
    import shutil

    report, shared = circle_report
    out = tmp_path / "circle"  # a copy: the module's report folder stays as its fixture wrote it, for every test
    shutil.copytree(shared, out, symlinks=True)
    manifest = json.loads((out / "images" / "uce" / "generation.json").read_text())
    ref = {j["id"]: j for j in json.loads((out / "images" / "original" / "generation.json").read_text())["jobs"]}
    for job in manifest["jobs"]:
        assert ref[job["id"]]["seed"] == job["seed"] and ref[job["id"]]["prompt"] == job["prompt"]
        if job["id"].startswith("forget-"):
            assert ref["do1-" + job["id"][len("forget-"):]]["seed"] == job["seed"]
    before = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    victim = sorted(before)[3]
    victim.unlink()  # a crash lost one image: the rerun regenerates only its chunk's missing file
    from igmu_hf.cli import run_evaluate

    again = run_evaluate([uce_circle], str(out), progress=False, metrics=["multclf"], **FAST)
    after = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    assert set(after) == set(before)
    assert all(after[p] == before[p] for p in before if p != victim)
    assert again["models"]["uce"]["forgetting"] == report["models"]["uce"]["forgetting"]
    with pytest.raises(ValueError, match="caches images of other prompts, seeds or generation settings"):
        run_evaluate([uce_circle], str(out), progress=False, metrics=["multclf"], **{**FAST, "seed": 5})


def test_two_processes_give_the_same_report(circle_report, uce_circle, tmp_path, run_on_two_cpu_processes):
    report, _ = circle_report
    out = tmp_path / "two"
    run_on_two_cpu_processes([str(ROOT / "examples" / "evaluate_igmu.py"), "--unlearned", uce_circle,
                              "--output_dir", str(out), "--num_prompts", "4"])
    two = json.loads((out / "report.json").read_text())
    assert two["generation"]["num_processes"] == 2

    def numbers(obj, prefix=""):
        if isinstance(obj, dict):
            for k, v in obj.items():
                if k not in ("runtime_seconds",):
                    yield from numbers(v, f"{prefix}/{k}")
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            yield prefix, float(obj)

    one = dict(numbers(report["models"]))
    got = dict(numbers(two["models"]))
    assert set(got) == set(one)
    for key, value in one.items():
        # thread counts and batch splits differ, so images differ by float rounding: measured up to 2.5e-5 relative
        # (CSDR, a ratio of CLIP-distance differences) and 1.7e-5 absolute (a zero-shot probability near 0.005)
        assert got[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_texture_task_measures_object_presence_and_style_task_skips_it(mini_pipeline, tiny_pipeline_dir, tmp_path):
    from igmu_hf.hub import load_pipeline

    evaluator = EvalIGMU(EvalIGMUConfig(task="striped", metrics=["yolo", "multclf"], **FAST))
    assert evaluator.yolo_class() == "object"
    # two different models: the trained mini one, and a random one of the same architecture that draws no objects
    report = evaluator.run({"original": mini_pipeline, "random": load_pipeline(tiny_pipeline_dir)}, tmp_path,
                           progress=False)
    yolo = {n: m["preservation"]["yolo_person_rate"] for n, m in report["models"].items()}
    rate = {n: m["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"] for n, m in report["models"].items()}
    assert yolo["original"]["class_name"] == "object" and yolo["original"]["person_rate"] >= 75.0  # the tiny YOLO
    assert yolo["random"]["person_rate"] < yolo["original"]["person_rate"]  # finds the striped objects it drew
    assert rate["original"] >= 0.75 and rate["random"] < rate["original"]
    style = EvalIGMU(EvalIGMUConfig(task="sepia", **FAST))
    from igmu_hf.evaluator import Skipped

    with pytest.raises(Skipped, match="human-bound"):
        style.yolo_class()
    assert EvalIGMU(EvalIGMUConfig(task="nudity", forget_prompts=["a nude person"],
                                   unrelated_prompts=["a dog"])).yolo_class() == "person"


def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="Unknown task 'flibbertigibbet'"):
        EvalIGMU(EvalIGMUConfig(task="flibbertigibbet"))
    with pytest.raises(ValueError, match="No forget prompts for 'nudity'"):
        EvalIGMU(EvalIGMUConfig(task="nudity"))
    with pytest.raises(ValueError, match="Unknown metric"):
        EvalIGMUConfig(task="circle", metrics=["bleu"])
    with pytest.raises(ValueError, match="`task` is empty"):
        EvalIGMUConfig(task="")
    evaluator = EvalIGMU(EvalIGMUConfig(task="circle", **FAST))
    with pytest.raises(ValueError, match="needs the original model"):
        evaluator.run({"uce": None}, tmp_path)


def test_igmu_evaluate_cli_reads_prompt_files_and_rejects_empty_ones(tmp_path, capsys):
    from igmu_hf.cli import main

    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    code = main(["evaluate", "--unlearned", str(tmp_path / "nowhere"), "--task", "circle", "--output_dir",
                 str(tmp_path / "o"), "--forget_prompts_file", str(empty)])
    assert code == 2 and "holds no prompt" in capsys.readouterr().err
