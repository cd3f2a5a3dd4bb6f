"""Runs killed with SIGKILL (DUO, Dark Miner, igmu evaluate) resume to the uninterrupted result."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file


ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--concept", "circle", "--unsafe_prompt", "a circle", "--safe_prompt", "a square", "--num_pairs", "2",
        "--num_inference_steps", "2", "--max_train_steps", "300", "--train_batch_size", "2", "--base_lr", "1.0",
        "--pair_filter", "none", "--lora_rank", "4", "--lora_alpha", "4"]


def test_duo_killed_with_sigkill_resumes_to_the_uninterrupted_adapter(tiny_pipeline_dir, tmp_path):
    script = str(ROOT / "examples" / "train_duo.py")
    common = [sys.executable, script, *ARGS, "--pretrained_model_name_or_path", tiny_pipeline_dir,
              "--pairs_dataset", str(tmp_path / "pairs")]
    subprocess.run([*common, "--output_dir", str(tmp_path / "full")], check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    ckpts = tmp_path / "killed-checkpoints"
    proc = subprocess.Popen([*common, "--output_dir", str(out), "--checkpointing_steps", "20"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not (ckpts / "checkpoint-40").exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)  # no clean-up: the run dies wherever it is
    finally:
        proc.wait(timeout=60)
    assert not (out / "pytorch_lora_weights.safetensors").exists(), "the run finished before it was killed"
    steps = sorted(int(p.name.split("-")[1]) for p in ckpts.glob("checkpoint-*"))
    assert steps and steps[-1] < 300

    subprocess.run([*common, "--output_dir", str(out), "--checkpointing_steps", "20", "--resume_from_checkpoint",
                    "latest"], check=True, capture_output=True, timeout=600)
    a = load_file(str(tmp_path / "full" / "pytorch_lora_weights.safetensors"))
    b = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert max(float(v.abs().max()) for k, v in a.items() if "lora.up" in k) > 1e-3  # the adapter moved
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_dark_miner_killed_with_sigkill_resumes_to_the_uninterrupted_result(tiny_pipeline_dir, tmp_path):

    from igmu_hf.mini import CLIP_PATH

    script = str(ROOT / "examples" / "train_darkminer.py")
    kwargs = {"mining_images": 2, "circumvent_images": 2, "circumvent_lr": 5.0, "circumvent_lr_decayed": 5.0,
              "lora_rank": 4, "lora_alpha": 4, "clip_model_name_or_path": CLIP_PATH}
    flags = [str(x) for k, v in kwargs.items() for x in (f"--{k}", v)]
    common = [sys.executable, script, "--concept", "circle", "--pretrained_model_name_or_path", tiny_pipeline_dir,
              "--pool_size", "2", "--embedding_length", "4", "--mining_epochs", "60", "--mining_batch_size", "2",
              "--circumvent_epochs", "60", "--circumvent_batch_size", "2", "--max_loops", "2",
              "--num_inference_steps", "2", "--tau", "-1", *flags,
              "--pool_dataset", str(tmp_path / "pool")]
    subprocess.run([*common, "--output_dir", str(tmp_path / "full")], check=True, capture_output=True, timeout=600)

    out, ckpts = tmp_path / "killed", tmp_path / "killed-checkpoints"
    proc = subprocess.Popen([*common, "--output_dir", str(out), "--checkpointing_steps", "10"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill it in the second loop's mining, after the first loop's circumvention
        deadline = time.time() + 300
        while not any(int(p.name.split("-")[1]) >= 140 for p in ckpts.glob("checkpoint-*")) and \
                proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "pytorch_lora_weights.safetensors").exists(), "the run finished before it was killed"

    subprocess.run([*common, "--output_dir", str(out), "--checkpointing_steps", "10", "--resume_from_checkpoint",
                    "latest"], check=True, capture_output=True, timeout=600)
    for name, key in (("pytorch_lora_weights.safetensors", None), ("mined_embeddings.safetensors", "embeddings")):
        a, b = load_file(str(tmp_path / "full" / name)), load_file(str(out / name))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5, msg=k)


def test_evaluate_killed_with_sigkill_resumes_to_the_same_report_without_regenerating(tmp_path):
    import json
    import os

    from igmu_hf.api import run_unlearn

    folder, _ = run_unlearn("uce", ["circle"], str(tmp_path / "uce"))
    cmd = [sys.executable, "-m", "igmu_hf.cli", "evaluate", "--unlearned", str(folder), "--num_prompts", "8",
           "--metrics", "multclf", "clip_score", "lpips"]
    subprocess.run([*cmd, "--output_dir", str(tmp_path / "full")], check=True, capture_output=True, timeout=600)

    out = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--output_dir", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while len(list((out / "images").rglob("*.png"))) < 12 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert not (out / "report.json").exists(), "the evaluation finished before it was killed"
    before = {p: os.stat(p).st_mtime_ns for p in (out / "images").rglob("*.png")}
    assert len(before) >= 12

    subprocess.run([*cmd, "--output_dir", str(out)], check=True, capture_output=True, timeout=600)
    assert all(os.stat(p).st_mtime_ns == t for p, t in before.items()), "finished images were generated again"
    a = json.loads((tmp_path / "full" / "report.json").read_text())["models"]
    b = json.loads((out / "report.json").read_text())["models"]
    for model in a:
        for aspect in ("forgetting", "preservation", "quality"):
            for key, value in a[model][aspect].items():
                for field, number in value.items():
                    if isinstance(number, float):
                        assert b[model][aspect][key][field] == pytest.approx(number, rel=1e-6), (model, key, field)
