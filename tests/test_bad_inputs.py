"""Bad input, tried as a hostile or careless user would (the probes of issue 34 and of the earlier hardening): each
case ends in a clear one-line error or in success with the user's files byte-identical; no payload planted in a model
folder, a YOLO description, the working directory or a hub-cache id ever runs; nothing is written through a symbolic
link igmu_hf did not create; a diverged training run saves nothing."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli_helpers import assert_one_line_error, run_cli, tree_hashes
from igmu_hf.cli import main as igmu


ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}
EVAL = ["--metrics", "efficiency", "--num_prompts", "1"]


@pytest.fixture(scope="module")
def uce_run(tmp_path_factory):
    """A UCE unlearning of circle on the mini world, saved with the CLI."""
    out = tmp_path_factory.mktemp("uce") / "uce-circle"
    assert igmu(["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", str(out)]) == 0
    return out


def payload(marker: Path) -> str:
    """Python that touches ``marker`` when it runs."""
    return f"__import__('pathlib').Path({str(marker)!r}).touch()"


def plant_yolo(folder: Path, marker: Path, where: str) -> Path:
    """The shipped tiny YOLO, with a payload in its yolo.yaml: in the activation ultralytics evaluates, or as a layer
    name that resolves to ultralytics' unpickling loader."""
    from igmu_hf.mini import YOLO_PATH

    shutil.copytree(YOLO_PATH, folder)
    cfg = yaml.safe_load((folder / "yolo.yaml").read_text())
    if where == "activation":
        cfg["activation"] = f"{payload(marker)} or nn.SiLU()"
    else:
        pickled = folder / "payload.pt"
        import pickle

        class Touch:
            def __reduce__(self):
                return Path.touch, (marker,)

        pickled.write_bytes(pickle.dumps(Touch()))
        cfg["head"][0] = [-1, 1, "torch_load", [str(pickled)]]
    (folder / "yolo.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return folder


def plant_component(folder: Path, run: Path, marker: Path, pipeline_class: bool = False) -> Path:
    """A copy of ``run`` whose model_index.json names a component (or the pipeline) from ``probe_evilmod``, with
    ``probe_evilmod.py`` (touching ``marker`` on import) at the folder's root."""
    shutil.copytree(run, folder)
    index = json.loads((folder / "model_index.json").read_text())
    if pipeline_class:
        index["_class_name"] = ["probe_evilmod", "EvilPipeline"]
    else:
        index["feature_extractor"] = ["probe_evilmod", "Evil"]
        (folder / "feature_extractor").mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    (folder / "probe_evilmod.py").write_text(f"{payload(marker)}\nclass Evil:\n    pass\nEvilPipeline = Evil\n")
    return folder


@pytest.fixture
def planted(tmp_path, uce_run, monkeypatch):
    """Every bad folder and file the table names, in a fresh working directory that also holds probe_evilmod.py
    (and is on sys.path, as under `python -m`); ``marker`` must never appear."""
    marker = tmp_path / "PAYLOAD-RAN"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    (work / "probe_evilmod.py").write_text(f"{payload(marker)}\nclass Evil:\n    pass\nEvilPipeline = Evil\n")
    (work / "file").write_text("x")
    (work / "binary").write_bytes(bytes(range(256)) * 4)
    no_unet = work / "no_unet"
    no_unet.mkdir()
    (no_unet / "model_index.json").write_text((uce_run / "model_index.json").read_text())
    bad = work / "bad_config"
    shutil.copytree(uce_run, bad)
    config = json.loads((bad / "unet" / "config.json").read_text())
    config["layers_per_block"] = "two"
    (bad / "unet" / "config.json").write_text(json.dumps(config))
    (work / "many_prompts").write_text("a circle\n" * 2_000_000)
    subs = {"{uce}": str(uce_run), "{tmp}": str(work), "{binary}": "binary", "{no_unet}": str(no_unet),
            "{file}": "file", "{bad_config}": str(bad), "{many_prompts}": "many_prompts",
            "{yolo_activation}": str(plant_yolo(work / "yolo_activation", marker, "activation")),
            "{yolo_module}": str(plant_yolo(work / "yolo_module", marker, "module")),
            "{evil_component}": str(plant_component(work / "evil_component", uce_run, marker)),
            "{evil_pipeline_class}": str(plant_component(work / "evil_pipeline_class", uce_run, marker, True))}
    yield work, subs, marker
    assert not marker.exists(), "a planted payload ran"
    sys.modules.pop("probe_evilmod", None)


@pytest.mark.parametrize("argv, needles", [
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", '{"erase_scale": NaN}'],
     ["UCEConfig.erase_scale", "finite"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", '{"lamb": Infinity}'],
     ["UCEConfig.lamb"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", '{"lamb": "big"}'], ["`lamb`"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", "{lamb: 1}"], ["--method_kwargs"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", "[1]"], ["--method_kwargs"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--push_to_hub"], ["--hub_model_id"]),
    (["unlearn", "--method", "uce", "--concept", "circle " * 3000], ["tokens", "Shorten"]),
    (["attack", "--method", "unlearndiffatk", "--unlearned", "{uce}", "--threshold", "nan"], ["threshold"]),
    (["attack", "--method", "unlearndiffatk", "--unlearned", "{uce}", "--threshold", "-1"], ["threshold", "[0, 1]"]),
    (["attack", "--method", "unlearndiffatk", "--unlearned", "{uce}", "--task", "blorp"], ["Unknown task 'blorp'"]),
    (["attack", "--method", "nope", "--unlearned", "{uce}"], ["Unknown attack 'nope'"]),
    (["evaluate", "--unlearned", "/nonexistent/model"], ["does not exist"]),
    (["evaluate", "--unlearned", "{uce}", "--attack", "foo"], ["Unknown attack 'foo'"]),
    (["evaluate", "--unlearned", "{uce}", "--attack", "unlearndiffatk", "--metrics", "efficiency"], ["asr"]),
    (["evaluate", "--unlearned", "{uce}", "--images_per_prompt", "0"], ["images_per_prompt"]),
    (["evaluate", "--unlearned", "{uce}", "--forget_prompts_file", "{tmp}"], ["is a folder"]),
    (["evaluate", "--unlearned", "{uce}", "--forget_prompts_file", "{binary}"], ["not UTF-8"]),
    (["evaluate", "--unlearned", "{no_unet}"], ["unet/"]),
    (["evaluate", "--unlearned", "{uce}", "--output_dir", "{file}/sub"], ["is a file"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", "{file}/sub"], ["is a file"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--output_dir", "{file}"], ["is a file"]),
    (["demo", "--images_per_prompt", "0"], ["images_per_prompt"]),
    (["publish", "{uce}", "--repo_id", "not a repo", "--cache"], ["--repo_id"]),
    # ---- issue 34: code from model folders (each plants a payload that would touch {marker})
    (["evaluate", "--unlearned", "{uce}", "--yolo", "{yolo_activation}", "--metrics", "yolo"],
     ["yolo.yaml", "activation", "never runs code"]),
    (["evaluate", "--unlearned", "{uce}", "--yolo", "{yolo_module}", "--metrics", "yolo"],
     ["yolo.yaml", "torch_load", "never runs code"]),
    (["evaluate", "--unlearned", "{evil_component}"], ["probe_evilmod", "never runs code"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--pretrained_model_name_or_path", "{evil_component}"],
     ["probe_evilmod", "never runs code"]),
    (["evaluate", "--unlearned", "{evil_pipeline_class}"], ["probe_evilmod", "does not ship"]),
    # ---- issue 34: a detector the user names loads, or the command stops
    (["evaluate", "--unlearned", "{uce}", "--multclf", "not-there"], ["multclf", "does not exist"]),
    (["evaluate", "--unlearned", "{uce}", "--multclf", "{uce}"], ["multclf", "could not be loaded"]),
    (["evaluate", "--unlearned", "{uce}", "--clip", "{file}"], ["clip", "could not be loaded"]),
    (["evaluate", "--unlearned", "{uce}", "--fid_feature_extractor", "clip:{uce}"], ["fid", "could not be loaded"]),
    (["evaluate", "--unlearned", "{uce}", "--yolo", "{uce}", "--metrics", "yolo"], ["not a saved YOLO folder"]),
    # ---- issue 34: damaged folders, numbers and sizes
    (["evaluate", "--unlearned", "{bad_config}"], ["Could not build pipeline", "config.json"]),
    (["evaluate", "--unlearned", "{uce}", "--seed", str(10**30)], ["seed", "[0, 1073741823]"]),
    (["attack", "--method", "unlearndiffatk", "--unlearned", "{uce}", "--seed", str(10**30)], ["seed"]),
    (["demo", "--seed", str(10**30)], ["seed"]),
    (["evaluate", "--unlearned", "{uce}", "--num_prompts", str(10**12)], ["num_prompts", "100000"]),
    (["evaluate", "--unlearned", "{uce}", "--forget_prompts_file", "{many_prompts}"], ["2,000,000 prompts"]),
    (["categorize", "circle", "--prompt", "a red circle " * 1750], ["--prompt", "tokens", "Shorten"]),
    (["categorize", "nudity", "--prompt", "a naked person " * 1400], ["--prompt", "77"]),
    (["unlearn", "--method", "uce", "--concept", "circle", "--method_kwargs", '{"erase_templates": ["{} {0}"]}'],
     ["erase_templates", "'{}'"]),
    (["unlearn", "--method", "mace", "--concept", "circle", "--method_kwargs", '{"prompt_templates": ["a {x}"]}'],
     ["prompt_templates"]),
    (["publish", "{uce}", "--repo_id", "igmu/nowhere", "--push"], ["Could not push", "--cache"]),
    (["evaluate", "--unlearned", "igmu/not-in-the-cache", "--task", "circle"], ["local cache"]),
])
def test_cli_user_errors_are_one_line_and_come_before_any_work(argv, needles, planted, capsys):
    work, subs, marker = planted
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    if "--output_dir" not in argv and argv[0] not in ("publish", "categorize"):
        argv += ["--output_dir", "out"]
    rc, _, err = run_cli(capsys, *argv)
    assert_one_line_error(rc, err, *needles)
    assert not (work / "out").exists() or {p.name for p in (work / "out").iterdir()} <= {".igmu_outputs.json"}
    assert not marker.exists()
    assert "probe_evilmod" not in sys.modules


# ---------------------------------------------------------------- no code runs, however the CLI is started
@pytest.mark.parametrize("case", ["yolo_activation", "yolo_module", "evil_component", "hub_cache_yolo"])
def test_no_payload_runs_under_python_m(case, tmp_path, uce_run):
    """`python -m igmu_hf.cli` (how accelerate launch / torchrun start it) puts the working directory on sys.path; the
    planted probe_evilmod.py there, in the model folder, or a YOLO description published into the hub cache never
    runs."""
    marker = tmp_path / "PAYLOAD-RAN"
    work = tmp_path / "work"
    work.mkdir()
    (work / "probe_evilmod.py").write_text(f"{payload(marker)}\nclass Evil:\n    pass\n")
    env = dict(ENV)
    if case == "evil_component":
        argv = ["evaluate", "--unlearned", str(plant_component(work / "evil", uce_run, marker)), *EVAL]
    elif case == "hub_cache_yolo":
        cache = tmp_path / "hub"
        plant_yolo(work / "yolo_evil", marker, "activation")
        assert igmu(["publish", str(work / "yolo_evil"), "--repo_id", "igmu/evil-yolo", "--cache", "--cache_dir",
                     str(cache)]) == 0
        env["HF_HUB_CACHE"] = str(cache)
        argv = ["evaluate", "--unlearned", str(uce_run), "--yolo", "igmu/evil-yolo", "--metrics", "yolo"]
    else:
        argv = ["evaluate", "--unlearned", str(uce_run), "--yolo",
                str(plant_yolo(work / case, marker, case.split("_")[1])), "--metrics", "yolo"]
    for start in ([sys.executable, "-m", "igmu_hf.cli"], [shutil.which("igmu") or "igmu"]):
        proc = subprocess.run([*start, *argv, "--output_dir", "out"], cwd=work, capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 2 and "never runs code" in proc.stderr, proc.stderr[-2000:]
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert not marker.exists()


def test_evaluate_load_of_a_planted_yolo_folder_runs_nothing(tmp_path):
    import evaluate

    marker = tmp_path / "PAYLOAD-RAN"
    folder = plant_yolo(tmp_path / "yolo_evil", marker, "activation")
    with pytest.raises(ValueError, match="never runs code"):
        evaluate.load(str(ROOT / "metrics" / "yolo_person_rate"), config_name=str(folder))
    assert not marker.exists()


def test_the_shipped_detectors_and_pipelines_pass_the_allow_lists(uce_run):
    """The allow-lists refuse by rule, not everything: igmu_hf's own YOLO, pipelines and custom pipelines load."""
    from igmu_hf.detectors.yolo import load_yolo
    from igmu_hf.hub import check_model_index
    from igmu_hf.mini import PIPELINE_PATH, YOLO_PATH

    assert load_yolo(YOLO_PATH).model.names == {0: "object"}
    for folder in (PIPELINE_PATH, uce_run):
        check_model_index(json.loads((Path(folder) / "model_index.json").read_text()), str(folder))
    index = {"_class_name": ["pipeline_receler", "ReclerPipeline"]}
    with pytest.raises(ValueError, match="does not ship"):
        check_model_index(index, "x")


# ---------------------------------------------------------------- --overwrite keeps what the user made
def unlearn(capsys, out, *extra):
    return run_cli(capsys, "unlearn", "--method", "uce", "--concept", "circle", "--output_dir", str(out), *extra)


@pytest.mark.parametrize("user_files", [{"README.md": "my card"}, {"unet/mine.txt": "my file"}])
def test_overwrite_refuses_when_a_user_file_sits_where_the_run_writes(user_files, tmp_path, capsys):
    out = tmp_path / "o"
    for rel, text in user_files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    before = tree_hashes(tmp_path)
    rc, _, err = unlearn(capsys, out, "--overwrite")
    assert_one_line_error(rc, err, next(iter(user_files)), "did not write")
    assert tree_hashes(tmp_path) == before


def test_overwrite_keeps_user_files_beside_runs_old_and_new(tmp_path, capsys, uce_run):
    out = tmp_path / "o"
    shutil.copytree(uce_run, out)
    run = json.loads((out / "igmu_run.json").read_text())
    for key in ("files", "manifest"):  # an igmu_run.json written by an older igmu_hf
        run.pop(key)
    (out / "igmu_run.json").write_text(json.dumps(run))
    (out / "notes.txt").write_text("mine")
    (out / "data").mkdir()
    (out / "data" / "table.csv").write_text("a,b")
    mine = {k: v for k, v in tree_hashes(out).items() if k in ("notes.txt", "data/table.csv")}
    rc, _, err = unlearn(capsys, out, "--overwrite", "--method_kwargs", '{"erase_scale": 0.5}')
    assert rc == 0, err
    assert "Kept 2 file(s)" in err
    assert {k: v for k, v in tree_hashes(out).items() if k in mine} == mine
    saved = json.loads((out / "igmu_run.json").read_text())
    assert saved["config"]["erase_scale"] == 0.5 and "notes.txt" not in saved["manifest"]
    (out / "unet" / "my_weights.txt").write_text("mine too")  # a user file inside a folder igmu_hf wrote
    before = tree_hashes(out)
    rc, _, err = unlearn(capsys, out, "--overwrite", "--method_kwargs", '{"erase_scale": 0.25}')
    assert_one_line_error(rc, err, "unet/my_weights.txt")
    assert tree_hashes(out) == before
    rc, _, err = unlearn(capsys, out, "--method_kwargs", '{"erase_scale": 0.25}')
    assert_one_line_error(rc, err, "erase_scale: before=0.5 now=0.25", "--overwrite")  # names the difference


def test_no_write_through_planted_symlinks(tmp_path, capsys, uce_run):
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    (victim_dir / "precious.txt").write_text("keep")
    victim_file = tmp_path / "victim.txt"
    victim_file.write_text("keep")
    (tmp_path / "o").symlink_to(victim_dir)  # the output folder
    (tmp_path / ".p.igmu-lock").symlink_to(victim_file)  # the lock file
    (tmp_path / ".q.igmu-lock").symlink_to(tmp_path / "absent.txt")  # a dangling one: would be created
    before = tree_hashes(tmp_path)
    for argv, needles in ((("unlearn", "o", "--overwrite"), ["symbolic link", "pass the folder it points to"]),
                          (("evaluate", "o", "--overwrite"), ["symbolic link"]),
                          (("unlearn", "p"), ["symbolic link", "lock file"]),
                          (("unlearn", "q"), ["symbolic link", "lock file"])):
        if argv[0] == "unlearn":
            rc, _, err = unlearn(capsys, tmp_path / argv[1], *argv[2:])
        else:
            rc, _, err = run_cli(capsys, "evaluate", "--unlearned", str(uce_run), "--output_dir",
                                 str(tmp_path / argv[1]), *argv[2:], *EVAL)
        assert_one_line_error(rc, err, *needles)
    assert tree_hashes(tmp_path) == before and not (tmp_path / "absent.txt").exists()


def test_backups_and_leftovers_are_recognised_by_their_marker_alone(tmp_path, capsys):
    """A user's `.o.old` (the old backup name) is never restored, renamed or emptied; a killed save's marked
    folders are cleaned up; no lock file stays behind."""
    out = tmp_path / "o"
    (tmp_path / ".o.old").mkdir()
    (tmp_path / ".o.old" / "backup.txt").write_text("mine")
    (tmp_path / ".o.igmu-tmp-users").mkdir()  # a name like igmu_hf's, without its marker
    (tmp_path / ".o.igmu-tmp-users" / "x.txt").write_text("mine")
    mine = tree_hashes(tmp_path)
    assert unlearn(capsys, out)[0] == 0  # o did not exist: the user's .o.old is not taken for a backup
    assert (out / "igmu_run.json").exists() and not (out / "backup.txt").exists()
    from igmu_hf.outputs import make_partial

    leftover = make_partial(out.absolute(), "tmp")  # what a save killed while writing leaves
    (leftover / "unet").mkdir()
    assert unlearn(capsys, out, "--overwrite", "--method_kwargs", '{"erase_scale": 0.5}')[0] == 0
    assert not leftover.exists()
    after = tree_hashes(tmp_path)
    assert {k: v for k, v in after.items() if k in mine} == mine
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.igmu-tmp-users", ".o.old", "o"]  # no lock, no backup


def test_a_planted_backup_link_is_never_restored_or_emptied(tmp_path, capsys):
    """A symbolic link where igmu_hf's backups go, to a folder that even carries igmu_hf's marker: not restored into
    the output folder, not followed, not deleted."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / ".igmu_partial").write_text(json.dumps({"kind": "backup", "of": "o"}))
    (victim / "precious.txt").write_text("keep")
    (tmp_path / ".o.igmu-backup-planted").symlink_to(victim)
    before = tree_hashes(tmp_path)
    assert unlearn(capsys, tmp_path / "o")[0] == 0
    assert unlearn(capsys, tmp_path / "o", "--overwrite", "--method_kwargs", '{"erase_scale": 0.5}')[0] == 0
    assert not (tmp_path / "o" / "precious.txt").exists()
    assert {k: v for k, v in tree_hashes(tmp_path).items() if k in before} == before


# ---------------------------------------------------------------- nothing diverged is saved
@pytest.mark.parametrize("method, kwargs", [
    ("duo", {"base_lr": 1e12, "num_pairs": 2, "num_inference_steps": 2, "max_train_steps": 3, "train_batch_size": 2,
             "lora_rank": 4, "lora_alpha": 4}),
    ("esd", {"lr": 1e15, "iterations": 3}),
])
def test_a_diverged_training_saves_nothing(method, kwargs, tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = run_cli(capsys, "unlearn", "--method", method, "--concept", "circle", "--output_dir", str(out),
                         "--method_kwargs", json.dumps(kwargs))
    lines = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and len(lines) == 1 and "diverged" in lines[0] and "lr" in lines[0], err[-2000:]
    assert not out.exists()
    assert not list(tmp_path.glob(".run.*"))


def test_a_non_finite_state_is_never_checkpointed(tmp_path):
    import torch

    from igmu_hf.checkpointing import list_checkpoints
    from igmu_hf.training import DivergedError, TrainingRun

    run = TrainingRun({"method": "toy", "lr": 10.0}, output_dir=str(tmp_path / "ckpt"), checkpointing_steps=1,
                      progress=False)
    run.checkpoint(1, {}, {"w": torch.ones(3)})
    with pytest.raises(DivergedError, match="lr=10.0"):
        run.checkpoint(2, {}, {"w": torch.tensor([1.0, float("nan"), 2.0])})
    assert [p.name for p in list_checkpoints(tmp_path / "ckpt")] == ["checkpoint-1"]


# ---------------------------------------------------------------- what a newcomer trips on
@pytest.mark.parametrize("written, table", [
    ("black and white", "black & white"), ("Black-&-White", "black & white"), ("sci fi", "sci-fi"),
    ("churches", "church"), ("warm tones", "warm tone"), ("Van Gogh style", "van gogh"), ("circles", "circle"),
])
def test_catigmu_resolves_spelling_variants_of_table_entries(written, table):
    from igmu_hf.taxonomy import categorize

    assert categorize(written).target == table


def test_a_single_process_accelerate_launch_is_said():
    env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "ACCELERATE_MIXED_PRECISION": "no"}
    for key in ("WORLD_SIZE", "RANK"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-c", "from igmu_hf.training import process_state; process_state()"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "started ONE process" in proc.stderr and "torchrun" in proc.stderr


def test_unlearn_resumes_from_its_checkpoints(tmp_path, capsys):
    """A run killed before its save: run again it says how to continue; with --resume_from_checkpoint latest it
    continues from the checkpoint (shown by zeroing the checkpoint's tensors: the resumed model changes)."""
    from safetensors.torch import load_file, save_file

    out = tmp_path / "duo"
    kwargs = ["--method_kwargs", json.dumps({"num_pairs": 2, "num_inference_steps": 2, "max_train_steps": 3,
                                             "train_batch_size": 2, "lora_rank": 4, "lora_alpha": 4})]
    base = ["unlearn", "--method", "duo", "--concept", "circle", "--output_dir", str(out), *kwargs]
    weights = out / "unet" / "diffusion_pytorch_model.safetensors"
    assert run_cli(capsys, *base, "--checkpointing_steps", "1")[0] == 0
    first = weights.read_bytes()
    shutil.rmtree(out)  # as if killed after its last checkpoint, before the save
    rc, _, err = run_cli(capsys, *base)
    assert rc == 0 and "--resume_from_checkpoint latest" in err, err  # says how to continue; starts over
    assert weights.read_bytes() == first
    checkpoint = tmp_path / "duo-checkpoints" / "checkpoint-3" / "tensors.safetensors"
    save_file({k: v * 0 for k, v in load_file(str(checkpoint)).items()}, str(checkpoint))
    shutil.rmtree(out)
    rc, _, err = run_cli(capsys, *base, "--resume_from_checkpoint", "latest")
    assert rc == 0, err
    assert weights.read_bytes() != first  # built from the (zeroed) checkpoint, not trained again


def readme_walk() -> tuple[list[str], str]:
    """The README's first command (after the install) and its Quick tour: the bash lines and the Python snippet, as
    written there."""
    import re

    text = (ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).splitlines()[0]
    commands = [first.split("#")[0].split("&&")[1].strip()]
    tour = text[text.index("## Quick tour"):]
    commands += [line.split("  #")[0].strip() for line in re.search(r"```bash\n(.*?)```", tour, flags=re.S).group(1)
                 .splitlines() if line.strip()]
    snippet = re.search(r"```python\n(.*?)```", tour, flags=re.S).group(1)
    return commands, snippet


def test_the_readme_first_commands_run_as_written_and_again(tmp_path, monkeypatch):
    """Run as written (each line a shell command, the snippet a Python process), then again in the same folder: the
    second time through the CLI's ``main`` and the snippet in this process (the same code, without paying the
    interpreter's start-up twice), as a user re-running the README over their earlier outputs."""
    import shlex

    from igmu_hf.cli import main as igmu_main

    commands, snippet = readme_walk()
    assert commands[0] == "igmu demo" and any(c.startswith("igmu evaluate") for c in commands)
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-2000:]}"
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert proc.returncode == 0, f"the Python snippet\n{proc.stderr[-2000:]}"
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "igmu" and igmu_main(argv[1:]) == 0, f"again: {command}"
    exec(compile(snippet, "README.md", "exec"), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["igmu_demo", "out"]  # no lock or partial folder left
    assert not [p for p in (tmp_path / "igmu_demo").iterdir() if p.name.endswith(".igmu-lock")]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report", "uce-circle", "uce-circle-python"]
