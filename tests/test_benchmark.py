"""igmu benchmark: each cell's figures are those of `igmu unlearn` + `igmu evaluate` run by hand with the same seeds;
the report is complete and its findings are computed from its numbers; runs resume and refuse changed cells."""

import json
import os

import pytest
import yaml

from igmu_hf.cli import main


# all its tests run in one xdist worker, so its module fixtures (small_benchmark) are never built in both
pytestmark = pytest.mark.xdist_group("benchmark")


# UCE (closed form) and ESD (trained, on the accelerate scaffold) on a shape and a style, 2 prompts per set
METHODS, TASKS, ESD_KWARGS = "uce,esd", ["circle", "sketch"], {"iterations": 3}
SMALL = ["--methods", METHODS, "--tasks", *TASKS, "--num_prompts", "2", "--images_per_prompt", "1",
         "--method_kwargs", json.dumps({"esd": ESD_KWARGS})]


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "B"
    assert main(["benchmark", *SMALL, "--output_dir", str(out)]) == 0
    return out


def _summary(out):
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("task,method,kwargs", [("sketch", "esd", ESD_KWARGS), ("circle", "uce", {})])
def test_cell_figures_equal_unlearn_and_evaluate_by_hand(small_benchmark, tmp_path, task, method, kwargs):
    model, report = tmp_path / "model", tmp_path / "eval"
    assert main(["unlearn", "--method", method, "--concept", task, "--output_dir", str(model),
                 "--method_kwargs", json.dumps(kwargs)]) == 0
    assert main(["evaluate", "--unlearned", str(model), "--output_dir", str(report), "--num_prompts", "2"]) == 0
    hand = json.loads((report / "report.json").read_text())
    t = _summary(small_benchmark)["tasks"][task]
    row, by_hand = t["rows"][method], hand["models"][method]
    assert row["forgetting rate ↓"] == pytest.approx(by_hand["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"])
    assert row["CSDR % ↓"] == pytest.approx(by_hand["preservation"]["csdr"]["csdr"], abs=1e-6)
    assert row["LPIPS do-1 ↓"] == pytest.approx(by_hand["preservation"]["lpips_do1"]["lpips"], abs=1e-6)
    assert row["FID ↓"] == pytest.approx(by_hand["quality"]["fid"]["fid"], abs=1e-6)
    assert row["CLIP score ↑"] == pytest.approx(by_hand["quality"]["clip_score_unrelated"]["clip_score"], abs=1e-6)
    assert row["edited share"] == pytest.approx(by_hand["efficiency"]["run"]["edited_parameter_share"])
    assert t["original"]["forgetting rate ↓"] == pytest.approx(
        hand["models"]["original"]["forgetting"]["multclf_forgetting_rate"]["forgetting_rate"])
    assert t["aspect_scores"][method] == pytest.approx(hand["aspect_scores"][method], abs=1e-6)
    # the unlearned model in the cell holds the same weights as the one made by hand: its run has the same config
    cell_run = json.loads((small_benchmark / "cells" / task / method / "model" / "igmu_run.json").read_text())
    assert cell_run["config_hash"] == json.loads((model / "igmu_run.json").read_text())["config_hash"]


def test_report_is_complete_and_its_findings_are_computed(small_benchmark):
    summary = _summary(small_benchmark)
    for task in TASKS:
        t = summary["tasks"][task]
        for method in METHODS.split(","):
            assert method in t["rows"] or t["not_run"].get(method), (task, method)  # no empty cell without reason
        # the front, checked against its definition on the cells' own EvalIGMU aspect scores
        points = {m: json.loads((small_benchmark / "cells" / task / m / "eval" / "report.json").read_text())
                  ["aspect_scores"][m] for m in t["rows"]}
        axes = [a for a in ("forgetting", "preservation", "robustness") if all(p[a] is not None for p in points.values())]
        assert axes == t["pareto_objectives"] == ["forgetting", "preservation"]  # no attack: robustness unmeasured

        def dominates(q, p):
            return all(q[a] >= p[a] for a in axes) and any(q[a] > p[a] for a in axes)

        for m, p in points.items():
            assert (m in t["pareto_front"]) == (not any(dominates(q, p) for o, q in points.items() if o != m))
    thr = summary["overall"]["balanced_threshold"]
    for m in METHODS.split(","):
        lows = [v for task in TASKS for v in summary["tasks"][task]["aspect_scores"][m].values()
                if v is not None and v < thr]
        assert (m in summary["overall"]["balanced"]) == (not lows)
    md = (small_benchmark / "report.md").read_text()
    page = (small_benchmark / "index.html").read_text()
    for m in METHODS.split(","):
        assert f"radar_{m}.png" in md and f"radar_{m}.png" in page and (small_benchmark / f"radar_{m}.png").stat().st_size
        assert m in summary["efficiency"] and summary["efficiency"][m]["modules_edited"].startswith("unet: attn2")
    for task in TASKS:
        assert f"grid_{task}.png" in page and (small_benchmark / f"grid_{task}.png").exists()
    assert "Not measured (no score, not counted as 0): robustness." in md
    assert str(small_benchmark.parent) not in md + page + (small_benchmark / "report.json").read_text()
    # each cell's results are in its unlearned model's card, ready for push_to_hub
    card = (small_benchmark / "cells" / "circle" / "uce" / "model" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    rates = [x["value"] for x in meta["model-index"][0]["results"][0]["metrics"] if "Forgetting" in x["name"]]
    assert rates == [pytest.approx(summary["tasks"]["circle"]["rows"]["uce"]["forgetting rate ↓"], abs=1e-6)]


def test_finished_cells_are_reused_and_changed_ones_refused(small_benchmark, monkeypatch, capsys, tmp_path):
    import shutil

    shared, small_benchmark = small_benchmark, tmp_path / "B"  # a copy: the module's benchmark stays as it was made
    shutil.copytree(shared, small_benchmark, symlinks=True)
    stamps = {p: p.stat().st_mtime_ns for p in (small_benchmark / "cells").rglob("cell.json")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished cell was run again")

    monkeypatch.setattr("igmu_hf.api.unlearn_and_save", must_not_run)
    monkeypatch.setattr("igmu_hf.api.run_evaluate", must_not_run)
    assert main(["benchmark", *SMALL, "--output_dir", str(small_benchmark)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    changed = ["--methods", METHODS, "--tasks", *TASKS, "--num_prompts", "2", "--images_per_prompt", "1",
               "--method_kwargs", json.dumps({"esd": {"iterations": 4}})]
    capsys.readouterr()
    assert main(["benchmark", *changed, "--output_dir", str(small_benchmark)]) == 2
    err = capsys.readouterr().err
    assert "circle/esd" in err and "sketch/esd" in err and "--redo" in err and "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # refused before any work
    monkeypatch.undo()
    assert main(["benchmark", *changed, "--redo", "esd", "--output_dir", str(small_benchmark)]) == 0
    redone = {p for p in stamps if p.stat().st_mtime_ns != stamps[p]}
    assert redone == {small_benchmark / "cells" / t / "esd" / "cell.json" for t in TASKS}  # uce's cells kept
    run = json.loads((small_benchmark / "cells" / "circle" / "esd" / "model" / "igmu_run.json").read_text())
    assert run["config"]["iterations"] == 4


def test_crashed_benchmark_continues_where_it_stopped(tmp_path, monkeypatch):
    import igmu_hf.api

    out = tmp_path / "B"
    real_evaluate, calls = igmu_hf.api.run_evaluate, []

    def crash_on_sld(unlearned, *args, **kwargs):
        if "sld" in unlearned[0]:
            raise RuntimeError("power cut")
        return real_evaluate(unlearned, *args, **kwargs)

    args = ["benchmark", "--methods", "uce,sld", "--tasks", "circle", "--num_prompts", "2", "--images_per_prompt", "1",
            "--output_dir", str(out)]
    monkeypatch.setattr("igmu_hf.api.run_evaluate", crash_on_sld)
    with pytest.raises(RuntimeError, match="power cut"):  # a programming error keeps its traceback
        main(args)
    uce_cell = out / "cells" / "circle" / "uce" / "cell.json"
    stamp = uce_cell.stat().st_mtime_ns
    assert not (out / "cells" / "circle" / "sld" / "cell.json").exists()
    assert (out / "cells" / "circle" / "sld" / "model" / "igmu_run.json").exists()  # unlearned before the crash
    monkeypatch.setattr("igmu_hf.api.run_evaluate", real_evaluate)
    real_unlearn = igmu_hf.api.unlearn_and_save
    monkeypatch.setattr("igmu_hf.api.unlearn_and_save", lambda *a, **k: calls.append(a) or real_unlearn(*a, **k))
    assert main(args) == 0
    assert uce_cell.stat().st_mtime_ns == stamp and calls == []  # uce untouched, sld's saved model reused
    summary = _summary(out)
    assert set(summary["tasks"]["circle"]["rows"]) == {"uce", "sld"}
    assert summary["tasks"]["circle"]["rows"]["sld"]["edited share"] == 0  # inference-time: nothing edited
    assert summary["efficiency"]["sld"]["modules_edited"] == "none (inference-time)"


def test_pareto_front_and_bad_input():
    from igmu_hf.benchmark import BenchmarkConfig, pareto_front

    points = {"a": {"forgetting": 1.0, "preservation": 0.2, "robustness": None},
              "b": {"forgetting": 0.5, "preservation": 0.9, "robustness": 0.3},
              "c": {"forgetting": 0.4, "preservation": 0.8, "robustness": 0.9}}
    # robustness is missing for a, so nobody is compared on it: c is dominated by b on the other two
    assert pareto_front(points) == (["a", "b"], ["forgetting", "preservation"])
    points["a"]["robustness"] = 0.0
    assert pareto_front(points) == (["a", "b", "c"], ["forgetting", "preservation", "robustness"])
    with pytest.raises(ValueError, match="Unknown method"):
        BenchmarkConfig(methods=["nope"])
    with pytest.raises(ValueError, match="budget"):
        BenchmarkConfig(methods=["uce"], budget="huge")
    with pytest.raises(ValueError, match="does not run"):
        BenchmarkConfig(methods=["uce"], method_kwargs={"esd": {"iterations": 1}})
    with pytest.raises(ValueError, match="balanced_threshold"):
        BenchmarkConfig(methods=["uce"], balanced_threshold=float("nan"))


def test_cli_refuses_bad_input_in_one_line_before_any_work(tmp_path, capsys):
    assert main(["benchmark", "--methods", "uce", "--tasks", "circle", "--redo", "square/uce",
                 "--output_dir", str(tmp_path / "B")]) == 2
    err = capsys.readouterr().err
    assert "square/uce" in err and "Traceback" not in err and not (tmp_path / "B").exists()
    # a real-world task on the mini model has no prompt set: said before anything is unlearned
    assert main(["benchmark", "--methods", "uce", "--tasks", "nudity", "--output_dir", str(tmp_path / "B")]) == 2
    err = capsys.readouterr().err
    assert "No forget prompts for 'nudity'" in err and not (tmp_path / "B").exists()


@pytest.mark.skipif(os.cpu_count() < 2, reason="needs 2 cores")
def test_two_processes_give_the_report_of_one(tmp_path, run_on_two_cpu_processes):
    from igmu_hf.benchmark import LEADERBOARD

    import torch

    args = ["--methods", "uce", "--tasks", "circle", "--num_prompts", "2", "--images_per_prompt", "1"]
    # MACE trains on one image per step, which two processes cannot share: its cell says so, the others run
    run_on_two_cpu_processes(["-m", "igmu_hf.cli", "benchmark", *args[:1], "uce,mace", *args[2:],
                              "--output_dir", str(tmp_path / "two")])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of torchrun's processes: float sums then run in the same order
    try:
        assert main(["benchmark", *args, "--output_dir", str(tmp_path / "one")]) == 0
    finally:
        torch.set_num_threads(threads)
    one, two = _summary(tmp_path / "one")["tasks"]["circle"], _summary(tmp_path / "two")["tasks"]["circle"]
    assert "multiple of the number of processes (2)" in two["not_run"]["mace"]
    assert "| mace | not run: ValueError:" in (tmp_path / "two" / "report.md").read_text()
    for header, *_ in LEADERBOARD:
        if header != "runtime s":
            assert two["rows"]["uce"][header] == pytest.approx(one["rows"]["uce"][header], abs=1e-5), header
    assert json.loads((tmp_path / "two" / "cells" / "circle" / "uce" / "eval" / "report.json").read_text()
                      )["generation"]["num_processes"] == 2


def _chromium():
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no Chromium here (Debian: apt-get install chromium)")
def test_html_page_renders_tables_and_pictures_in_chromium(small_benchmark, tmp_path):
    """The page opened in headless Chromium: a screenshot that is not blank, with the pictures drawn (the mini
    world's saturated shapes; the page's own text and tables are black, white and grey)."""
    import subprocess

    import numpy as np
    from PIL import Image

    shot = tmp_path / "page.png"
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1400,2400", f"--screenshot={shot}", (small_benchmark / "index.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    hsv = np.asarray(Image.open(shot).convert("HSV")).astype(float) / 255
    ink = (hsv[..., 2] < 0.5).mean()  # dark pixels: text and table lines
    pictures = ((hsv[..., 1] > 0.5) & (hsv[..., 2] > 0.3)).mean()  # saturated pixels: the grids and radar charts
    assert ink > 0.005 and pictures > 0.005, (ink, pictures)


def test_training_seeds_pool_with_intervals_and_per_seed_figures(tmp_path):
    """`--seeds 0,1`: one cell per seed; each seed's figures are its own report's; the pooled figure is the mean of
    both seeds' images with an interval around it; the verdicts carry the share of resamples that hold them."""
    out = tmp_path / "B"
    assert main(["benchmark", "--methods", "uce,mace", "--tasks", "circle", "--seeds", "0,1", "--num_prompts", "4",
                 "--images_per_prompt", "2", "--bootstrap_resamples", "200", "--output_dir", str(out),
                 "--method_kwargs", json.dumps({"mace": {"max_train_steps": 10}})]) == 0
    summary = _summary(out)
    t = summary["tasks"]["circle"]
    for m in ("uce", "mace"):
        flags, own = [], {}
        for seed in (0, 1):
            report = json.loads((out / "cells" / "circle" / m / f"seed_{seed}" / "eval" / "report.json").read_text())
            run = json.loads((out / "cells" / "circle" / m / f"seed_{seed}" / "model" / "igmu_run.json").read_text())
            assert run["config"]["seed"] == seed and report["config"]["seed"] == 0  # training seed; paired images
            rate = report["models"][m]["forgetting"]["multclf_forgetting_rate"]
            own[str(seed)] = rate["forgetting_rate"]
            flags += list(rate["per_item"].values())
        row = t["rows"][m]
        assert {s: f["forgetting rate ↓"] for s, f in row["per_seed"].items()} == pytest.approx(own)
        assert row["forgetting rate ↓"] == pytest.approx(sum(flags) / len(flags))
        iv = row["intervals"]["forgetting rate ↓"]
        assert iv["n"] == 16 and iv["seeds"] == 2 and iv["low"] <= row["forgetting rate ↓"] <= iv["high"]
        assert "two-level bootstrap" in iv["interval"]
    assert set(t["front_share"]) == {"uce", "mace"} and all(0 <= v <= 1 for v in t["front_share"].values())
    assert max(t["front_share"][m] for m in t["pareto_front"]) > 0.5  # the point front holds in most resamples
    assert set(summary["overall"]["balanced_share"]) == {"uce", "mace"} and summary["uncertainty"]["resamples"] == 200
    for m, r in t["rank"].items():
        assert r["low"] <= r["rank"] <= r["high"]
    page, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    for text in (page, md):
        assert "on the front" in text and "Per training seed" in text and "errorbars_circle.png" in text
        assert "of resamples" in text and "training seed(s) 0, 1" in text
    assert (out / "errorbars_circle.png").stat().st_size > 5000


def test_verdict_shares_on_separated_and_identical_methods():
    """A method better on every image is on the front in every resample and ranks first in all; two methods with the
    same images are both on it always (neither dominates)."""
    import numpy as np

    from igmu_hf.benchmark_stats import task_resamples, verdict_confidence

    ids = [f"forget-{k:04d}-0" for k in range(30)]
    good = {"multclf_forgetting_rate": [{i: 0 for i in ids}], "lpips_do1": [{i: 0.1 for i in ids}]}
    bad = {"multclf_forgetting_rate": [{i: 1 for i in ids}], "lpips_do1": [{i: 0.5 for i in ids}]}
    rng = np.random.default_rng(0)
    res = {"t": task_resamples({"good": good, "bad": bad}, {}, {}, 100, rng)}
    points = {"t": {"good": {"forgetting": 1.0, "preservation": 0.9, "quality": None, "robustness": None,
                             "efficiency": None},
                    "bad": {"forgetting": 0.0, "preservation": 0.5, "quality": None, "robustness": None,
                            "efficiency": None}}}
    v = verdict_confidence(res, points, ("forgetting", "preservation"), 0.5)
    assert v["tasks"]["t"]["front_share"] == {"good": 1.0, "bad": 0.0}
    assert v["tasks"]["t"]["rank"]["good"] == {"rank": 1, "low": 1, "high": 1}
    assert v["overall"]["balanced_share"] == {"good": 1.0, "bad": 0.0}
    same = {"t": task_resamples({"a": good, "b": good}, {}, {}, 100, rng)}
    points["t"] = {"a": points["t"]["good"], "b": points["t"]["good"]}
    assert verdict_confidence(same, points, ("forgetting", "preservation"), 0.5)["tasks"]["t"]["front_share"] == \
        {"a": 1.0, "b": 1.0}
