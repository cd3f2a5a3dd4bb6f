"""examples/train_duo.py on 2 CPU processes computes the single-process run.

The 2 processes are started by the `run_on_two_cpu_processes` fixture (conftest.py says why not `accelerate launch
--cpu`); the run records how many processes it had.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--concept", "circle", "--num_pairs", "2", "--max_train_steps", "3", "--train_batch_size", "2",
        "--base_lr", "0.05", "--num_inference_steps", "4"]


def test_two_processes_give_the_single_process_lora(tmp_path, run_on_two_cpu_processes):
    script = str(ROOT / "examples" / "train_duo.py")
    one, two, pairs = tmp_path / "one", tmp_path / "two", tmp_path / "pairs"
    subprocess.run([sys.executable, script, *ARGS, "--output_dir", str(one), "--pairs_dataset", str(pairs)],
                   check=True, capture_output=True)
    run_on_two_cpu_processes([script, *ARGS, "--output_dir", str(two), "--pairs_dataset", str(pairs)])
    assert json.loads((two / "igmu_run.json").read_text())["num_processes"] == 2
    a = load_file(str(one / "pytorch_lora_weights.safetensors"))
    b = load_file(str(two / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    moved = max(float(v.abs().max()) for k, v in a.items() if "lora.up" in k)  # lora.up (B) starts at zero
    assert moved > 1e-2, "training barely moved the adapter: the comparison would be vacuous"
    for k in a:
        # float sums in another order (all-reduce) and Adam's normalisation leave ~3e-4; a run with other draws
        # differs by the size of the movement itself (~3e-2)
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=0, msg=k)
