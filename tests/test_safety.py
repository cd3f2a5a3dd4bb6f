"""Safety and trust: no pickle is ever loaded implicitly, bad numbers are refused before any work, user files and
earlier runs survive, errors are one line, nothing written carries a local path, and outputs do not depend on
PYTHONHASHSEED."""

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
from dataclasses import fields
from pathlib import Path

import pytest

from cli_helpers import assert_one_line_error, run_cli
from igmu_hf.cli import main as igmu


ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this touches ``marker``: the code execution a crafted .pt performs."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def plant_pickle(path: Path, marker: Path) -> None:
    with open(path, "wb") as f:
        pickle.dump(_Payload(marker), f)
    with open(path, "rb") as f:  # the plant is live: loading it really runs the payload
        pickle.load(f)
    assert marker.exists()
    marker.unlink()


@pytest.fixture(scope="module")
def uce_run(tmp_path_factory):
    """A UCE unlearning of circle on the mini world, saved with the CLI."""
    out = tmp_path_factory.mktemp("uce") / "uce-circle"
    assert igmu(["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", str(out)]) == 0
    return out


# ---------------------------------------------------------------- pickles
def test_no_pickle_is_loaded_from_the_working_directory_or_yolo_flag(tmp_path, monkeypatch, capsys, uce_run):
    from igmu_hf.detectors.yolo import UntrustedPickleError, convert_yolo, load_yolo
    from igmu_hf.domains.real import REAL_DETECTORS
    from igmu_hf.metrics.loaders import load_detector

    marker = tmp_path / "PWNED"
    monkeypatch.chdir(tmp_path)
    plant_pickle(tmp_path / "yolov8n.pt", marker)
    plant_pickle(tmp_path / "evil.pt", marker)
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", "eval", "--yolo",
                         "evil.pt", "--metrics", "yolo")
    assert_one_line_error(rc, err, "evil.pt", "convert-yolo", "--trust_pickle")
    assert not (tmp_path / "eval").exists()  # refused before any work
    for name in ("yolov8n.pt", "evil.pt", str(tmp_path / "evil.pt")):
        with pytest.raises(UntrustedPickleError):
            load_yolo(name)
    # the real world's default detector is a Hub id of a safetensors folder: offline it fails, never a local .pt
    with pytest.raises(ValueError, match="could not be fetched"):
        load_detector.__wrapped__("yolo", REAL_DETECTORS["yolo"])
    with pytest.raises(UntrustedPickleError, match="trust_pickle"):
        convert_yolo("evil.pt", tmp_path / "converted")
    rc, _, err = run_cli(capsys, "convert-yolo", "evil.pt", "--output_dir", "converted")
    assert_one_line_error(rc, err, "--trust_pickle")
    assert not marker.exists()


# ---------------------------------------------------------------- numbers
def _config_classes():
    from igmu_hf.attacks import get_attack, list_attacks
    from igmu_hf.evaluator import EvalIGMUConfig
    from igmu_hf.methods import get_method, list_methods

    def base(cls):  # a method that needs preservation prompts (AdvUnlearn's retain set) gets one
        return {"concepts": ["circle"], **({cls.preserve_field: ["a red square"]} if cls.preserve_field else {})}

    return ([(get_method(m).config_class, base(get_method(m).config_class)) for m in list_methods()]
            + [(get_attack(a).config_class, {}) for a in list_attacks()] + [(EvalIGMUConfig, {"task": "circle"})])


def test_every_numeric_field_refuses_nan_infinity_and_out_of_range_values():
    import typing

    from igmu_hf.validation import declared_range

    checked = 0
    for cls, base in _config_classes():
        hints = typing.get_type_hints(cls)
        cls.from_dict(base)  # the defaults pass
        for f in fields(cls):
            if not any(t in str(hints[f.name]) for t in ("float", "int")) or "str" in str(hints[f.name]):
                continue
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(ValueError, match=f"{f.name}`"):
                    cls.from_dict({**base, f.name: bad})
            rule = declared_range(cls, f.name)
            if rule is not None and rule[0] is not None:
                with pytest.raises(ValueError, match=f.name):
                    cls.from_dict({**base, f.name: rule[0] - 1})
            checked += 1
    assert checked > 80  # every method, attack and the evaluator contributed


def test_judge_and_metric_thresholds_are_checked(mini_classifier):
    import torch

    from igmu_hf.judges import MiniConceptJudge
    from igmu_hf.metrics.forgetting import forgetting_rate_from_probabilities

    for bad in (math.nan, -1, 1.5, math.inf):
        with pytest.raises(ValueError, match="threshold"):
            MiniConceptJudge(mini_classifier, "circle", threshold=bad)
        with pytest.raises(ValueError, match="threshold"):
            forgetting_rate_from_probabilities(torch.tensor([0.2, 0.9]), threshold=bad)


# ---------------------------------------------------------------- one-line errors (the table: test_bad_inputs.py)
def test_read_only_output_folder_is_one_line(tmp_path, capsys, uce_run):
    if os.geteuid() == 0:  # root writes anywhere; simulate the file system's refusal with an unwritable mount
        import unittest.mock as mock

        with mock.patch("os.access", return_value=False):
            rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir",
                                 str(tmp_path / "ro" / "eval"))
    else:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
        rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir",
                             str(tmp_path / "ro" / "eval"))
    assert_one_line_error(rc, err, "cannot be written")


def test_os_errors_deep_inside_become_one_line(capsys, monkeypatch, tmp_path):
    import errno

    import igmu_hf.cli as cli

    def refuse(args):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "x"))

    monkeypatch.setattr(cli, "cmd_categorize", refuse)
    rc, _, err = run_cli(capsys, "categorize", "circle")
    assert_one_line_error(rc, err, "Read-only file system", "read-only")


@pytest.mark.parametrize("script", ["train_unlearn.py", "train_duo.py", "train_multclf.py"])
def test_example_scripts_end_user_errors_in_one_line(script, tmp_path):
    (tmp_path / "file").write_text("x")
    args = {"train_unlearn.py": ["--method", "uce", "--concepts", "circle"], "train_duo.py": ["--concept", "circle"],
            "train_multclf.py": ["--mini_world"]}[script]
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args, "--output_dir",
                           str(tmp_path / "file" / "out")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and "is a file" in lines[0], proc.stderr[-2000:]
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


# ---------------------------------------------------------------- output folders
EVAL = ["--metrics", "efficiency", "--num_prompts", "1"]
EVAL_MULTCLF = ["--metrics", "efficiency", "multclf", "--num_prompts", "1"]


def test_user_files_and_other_commands_outputs_are_not_overwritten(tmp_path, capsys, uce_run):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL)
    assert_one_line_error(rc, err, "report.md", "--overwrite")
    assert (out / "report.md").read_text() == "my own notes"
    (out / "notes.txt").write_text("keep me")
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL,
                         "--overwrite")  # --overwrite never replaces a file the user made where igmu writes
    assert_one_line_error(rc, err, "report.md", "did not write")
    assert (out / "report.md").read_text() == "my own notes"
    (out / "report.md").unlink()
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL,
                         "--overwrite")
    assert rc == 0, err
    assert "Kept 1 file(s)" in err and "notes.txt" in err  # said
    assert (out / "notes.txt").read_text() == "keep me" and "EvalIGMU report" in (out / "report.md").read_text()
    record = json.loads((out / ".igmu_outputs.json").read_text())
    assert record["command"] == "evaluate" and "report.md" in record["written"] and "notes.txt" not in record["written"]
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL)
    assert rc == 0, err  # igmu's own outputs plus the note it was told to leave: a re-run resumes
    (out / "notes.txt").unlink()
    rc, _, err = run_cli(capsys, "demo", "--output_dir", str(out))
    assert_one_line_error(rc, err, "igmu evaluate", "--overwrite")
    assert json.loads((out / "report.json").read_text())["models"].keys() == {"original", "uce"}


def test_a_second_process_on_the_same_folder_is_refused(tmp_path, uce_run):
    from igmu_hf.outputs import folder_lock

    out = tmp_path / "eval"
    with folder_lock(out, "evaluate"):  # this process holds the folder, as a running evaluate does
        for argv in (["evaluate", "--unlearned", str(uce_run), *EVAL],
                     ["unlearn", "--method", "uce", "--concept", "circle"]):
            proc = subprocess.run([sys.executable, "-m", "igmu_hf.cli", *argv, "--output_dir", str(out)],
                                  capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                                  timeout=300)
            assert proc.returncode == 2 and "in use by igmu evaluate (pid" in proc.stderr, proc.stderr[-2000:]
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "igmu_hf.cli", "evaluate", "--unlearned", str(uce_run), *EVAL,
                           "--output_dir", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]  # released: the next run goes ahead


def test_evaluate_report_drops_models_no_longer_evaluated(tmp_path, capsys, uce_run):
    import shutil

    second = tmp_path / "uce-again"
    shutil.copytree(uce_run, second)
    out = tmp_path / "eval"
    assert run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--unlearned", str(second), "--output_dir",
                   str(out), *EVAL)[0] == 0
    assert {p.name for p in out.glob("grid_*.png")} == {"grid_uce.png", "grid_uce-again.png"}
    assert run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL)[0] == 0
    assert {p.name for p in out.glob("grid_*.png")} == {"grid_uce.png"}
    assert {p.stem for p in (out / "model_index").glob("*.yaml")} == {"original", "uce"}
    assert "uce-again" not in (out / "report.md").read_text()


def test_unlearn_overwrite_replaces_only_its_own_files(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", str(out)]
    assert run_cli(capsys, *base)[0] == 0
    (out / "my_notes.md").write_text("mine")
    rc, _, err = run_cli(capsys, *base, "--method_kwargs", '{"erase_scale": 0.5}')
    assert_one_line_error(rc, err, "different run", "--overwrite")
    assert run_cli(capsys, *base, "--method_kwargs", '{"erase_scale": 0.5}', "--overwrite")[0] == 0
    assert (out / "my_notes.md").read_text() == "mine"
    run = json.loads((out / "igmu_run.json").read_text())
    assert run["config"]["erase_scale"] == 0.5 and "my_notes.md" not in run["files"]


def test_a_save_killed_between_its_renames_keeps_the_previous_run(tmp_path, uce_run):
    """SIGKILL right after the previous run was moved aside: the next command puts it back."""
    import shutil

    from igmu_hf.api import run_info
    from igmu_hf.hub import check_output_dir, load_pipeline

    out = tmp_path / "run"
    shutil.copytree(uce_run, out)
    before = run_info(str(out))["config_hash"]
    script = textwrap.dedent(f"""
        import os, signal
        import igmu_hf.hub as hub
        from igmu_hf.api import run_unlearn
        calls = []
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            calls.append(dst)
            if str(src) == {str(out)!r}:  # the previous run is aside, the new one not yet in place
                os.kill(os.getpid(), signal.SIGKILL)
        hub.os.replace = replace
        run_unlearn("uce", ["circle"], {str(out)!r}, method_kwargs={{"erase_scale": 0.5}}, overwrite=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()  # killed in the window
    with pytest.raises(ValueError, match="different run"):
        check_output_dir(out, "another-config", overwrite=False)  # the next command finds the previous run again
    assert run_info(str(out))["config_hash"] == before
    load_pipeline(str(out))


# ---------------------------------------------------------------- no local paths, reproducible bytes
def test_nothing_written_carries_a_local_path(tmp_path, monkeypatch, capsys):
    import shutil

    from igmu_hf.mini import PIPELINE_PATH

    home = tmp_path / "home" / "alice"
    base = home / "private-models" / "my-base"
    shutil.copytree(PIPELINE_PATH, base)
    monkeypatch.setenv("HOME", str(home))
    out = home / "work"
    assert run_cli(capsys, "unlearn", "--method", "uce", "--concept", "circle", "--pretrained_model_name_or_path",
                   str(base), "--output_dir", str(out / "uce"))[0] == 0
    (home / "p.txt").write_text("a circle\n")
    (home / "u.txt").write_text("a square\n")
    rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(out / "uce"), "--original", str(base), "--output_dir",
                         str(out / "eval"), "--forget_prompts_file", str(home / "p.txt"), "--unrelated_prompts_file",
                         str(home / "u.txt"), "--metrics", "efficiency", "multclf", "lpips")  # a copied base: real world
    assert rc == 0, err
    assert run_cli(capsys, "attack", "--method", "unlearndiffatk", "--unlearned", str(out / "uce"), "--original",
                   str(base), "--prompts_file", str(home / "p.txt"), "--output_dir", str(out / "atk"), "--judge", "mini",
                   "--preset", "fast", "--attack_kwargs", '{"num_steps": 2, "num_inference_steps": 10}')[0] == 0
    leaks = []
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl", ".md", ".yaml", ".txt", ""):
            text = f.read_text(errors="ignore")
            if str(tmp_path) in text or "/home/alice" in text:
                leaks.append(str(f.relative_to(out)))
    assert not leaks, leaks
    card = (out / "uce" / "README.md").read_text()
    assert "my-base" in card and "base_model:" not in card.split("---")[1]  # a local base is named, not linked


# One process per hash seed (it is fixed per interpreter) runs the three commands through the CLI's `main` and writes
# what `categorize` printed to a file.
HASH_SEED_RUN = """
import contextlib, io, json, sys
from igmu_hf.cli import main
commands = json.loads(sys.argv[1])
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    assert main(commands["categorize"]) == 0
open(sys.argv[2], "w").write(printed.getvalue())
for name in ("evaluate", "attack"):
    assert main(commands[name]) == 0, name
"""


def test_outputs_do_not_depend_on_the_hash_seed(tmp_path, uce_run):
    reports = []
    for seed in ("1", "2"):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONHASHSEED": seed}
        out = tmp_path / f"eval{seed}"
        commands = {"evaluate": ["evaluate", "--unlearned", str(uce_run), "--output_dir", str(out), *EVAL_MULTCLF],
                    "categorize": ["categorize", "naked girl"],
                    "attack": ["attack", "--method", "unlearndiffatk", "--unlearned", str(uce_run), "--output_dir",
                               str(tmp_path / f"atk{seed}"), "--attack_kwargs",
                               '{"num_steps": 2, "num_inference_steps": 10}']}
        printed = tmp_path / f"categorize{seed}.txt"
        proc = subprocess.run([sys.executable, "-c", HASH_SEED_RUN, json.dumps(commands), str(printed)],
                              capture_output=True, text=True, env=env, timeout=900)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert '"target"' in printed.read_text()  # categorize printed its TaskSpec
        summary = json.loads((tmp_path / f"atk{seed}" / "summary.json").read_text())
        for timing in ("mean_wall_time_s", "prepare_wall_time_s"):
            summary.pop(timing)
        outcomes = [json.loads(line) for line in (tmp_path / f"atk{seed}" / "outcomes.jsonl").read_text().splitlines()]
        for o in outcomes:
            o.pop("wall_time_s")
        report = (out / "report.json").read_text()
        timings = json.loads(report)["timing"]
        assert set(timings) == {"attack_seconds", "generation_seconds", "total_seconds"}
        for value in timings.values():  # the timings, and only they, are blanked before comparing bytes
            report = report.replace(json.dumps(value), "<seconds>")
        reports.append((report, (out / "report.md").read_bytes(), printed.read_text(),
                        json.dumps(summary, sort_keys=True), json.dumps(outcomes, sort_keys=True)))
    assert reports[0] == reports[1]


def test_publish_puts_a_pipeline_in_the_hub_cache(tmp_path, capsys, uce_run):
    from igmu_hf.hub import load_pipeline

    rc, out, err = run_cli(capsys, "publish", str(uce_run), "--repo_id", "igmu/test-uce-circle", "--cache",
                           "--cache_dir", str(tmp_path / "hub"))
    assert rc == 0, err
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained("igmu/test-uce-circle", cache_dir=str(tmp_path / "hub"))
    ours = load_pipeline(str(uce_run))
    import torch

    for (k, a), b in zip(pipe.unet.state_dict().items(), ours.unet.state_dict().values()):
        assert torch.equal(a, b), k


def test_evaluate_load_with_a_folder_as_config_name_writes_nothing_there(tmp_path):
    import shutil

    import evaluate

    from igmu_hf.mini import CLIP_PATH

    clip = tmp_path / "my-clip"
    shutil.copytree(CLIP_PATH, clip)
    before = sorted(p.name for p in clip.rglob("*"))
    metric = evaluate.load(str(ROOT / "metrics" / "clip_score"), config_name=str(clip))
    from PIL import Image

    metric.compute(predictions=[Image.new("RGB", (32, 32), "red")], references=["a red square"])
    assert sorted(p.name for p in clip.rglob("*")) == before  # no .arrow / .lock in the user's model folder
    missing = tmp_path / "not-there"
    with pytest.raises(FileNotFoundError, match="'.*not-there' is neither an existing local folder nor a Hub id"):
        evaluate.load(str(ROOT / "metrics" / "clip_score"), config_name=str(missing))
    assert not missing.exists()


def test_readme_commands_do_not_collide_on_output_folders():
    """The README's commands, run in order, never send two different runs into one folder: each unlearning output
    folder is named once, and a report folder is shared only by `igmu evaluate` runs (which resume into it)."""
    import re
    import shlex

    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if "--output_dir" in line:
                words = shlex.split(line.replace("[", "").replace("]", ""))
                out = words[words.index("--output_dir") + 1]
                kind = next((w for w in words if w in ("unlearn", "evaluate", "attack", "demo")
                             or w.endswith(".py")), None)
                commands.append((out, kind, line))
    assert len(commands) >= 8
    by_folder: dict[str, list] = {}
    for out, kind, line in commands:
        by_folder.setdefault(out, []).append((kind, line))
    for out, uses in by_folder.items():
        kinds = {k for k, _ in uses}
        if kinds == {"evaluate"} or kinds == {"evaluate_igmu.py"}:
            continue
        assert len(uses) == 1, f"README sends {len(uses)} commands to {out}: {[line for _, line in uses]}"
