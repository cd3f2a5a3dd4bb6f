"""examples/train_darkminer.py on 2 CPU processes computes the single-process run.

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
ARGS = ["--concept", "circle", "--pool_size", "4", "--embedding_length", "4", "--mining_epochs", "3",
        "--mining_batch_size", "2", "--circumvent_epochs", "3", "--circumvent_batch_size", "2", "--max_loops", "2",
        "--num_inference_steps", "4", "--tau", "-1", "--circumvent_images", "2", "--mining_images", "2",
        "--circumvent_lr", "5.0", "--circumvent_lr_decayed", "5.0"]


def test_two_processes_give_the_single_process_adapter_and_embeddings(tmp_path, run_on_two_cpu_processes):
    script = str(ROOT / "examples" / "train_darkminer.py")
    one, two, pool = tmp_path / "one", tmp_path / "two", tmp_path / "pool"
    subprocess.run([sys.executable, script, *ARGS, "--output_dir", str(one), "--pool_dataset", str(pool)],
                   check=True, capture_output=True)
    run_on_two_cpu_processes([script, *ARGS, "--output_dir", str(two), "--pool_dataset", str(pool)])
    assert json.loads((two / "igmu_run.json").read_text())["num_processes"] == 2
    run = json.loads((one / "igmu_run.json").read_text())
    assert run["darkminer"]["loops_run"] == 2
    a = load_file(str(one / "pytorch_lora_weights.safetensors"))
    b = load_file(str(two / "pytorch_lora_weights.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    moved = max(float(v.abs().max()) for k, v in a.items() if "lora.up" in k)  # lora.up (B) starts at zero
    assert moved > 1e-2, "training barely moved the adapter: the comparison would be vacuous"
    for k in a:
        # all-reduce sums in another order: differences of float rounding only (a run with other draws differs
        # by about the movement itself)
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=0, msg=k)
    ea = load_file(str(one / "mined_embeddings.safetensors"))["embeddings"]
    eb = load_file(str(two / "mined_embeddings.safetensors"))["embeddings"]
    torch.testing.assert_close(ea, eb, atol=1e-3, rtol=0)
    # mining moved every embedding away from its start (the mini preset starts from the pool prompt's tokens)
    from igmu_hf.hub import load_pipeline

    pipe = load_pipeline()
    ids = pipe.tokenizer("a circle photo", add_special_tokens=False).input_ids
    start = pipe.text_encoder.get_input_embeddings().weight.detach()[torch.tensor(ids * 4)[:4]]
    assert len(ea) == 2 and all(float((e - start).abs().max()) > 1e-3 for e in ea)
