"""`igmu attack` on 2 CPU processes (the `run_on_two_cpu_processes` fixture) splits the prompts and writes the
single-process outcomes (same seeds)."""

import json
import os
import subprocess
import sys


def _outcomes(folder):
    rows = [json.loads(x) for x in (folder / "outcomes.jsonl").read_text().splitlines()]
    for r in rows:
        r.pop("wall_time_s")
    return rows


def test_two_processes_give_the_single_process_outcomes(tmp_path, run_on_two_cpu_processes):
    from igmu_hf.cli import run_unlearn

    folder, _ = run_unlearn("uce", ["circle"], str(tmp_path / "uce"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a circle\na red circle\na blue circle\na green circle on a grass background\n")
    args = ["attack", "--method", "unlearndiffatk", "--unlearned", str(folder), "--prompts_file", str(prompts),
            "--attack_kwargs", json.dumps({"num_steps": 6})]
    # one thread, as torchrun gives each of the two processes: the float reductions then match to the last bit
    subprocess.run([sys.executable, "-m", "igmu_hf.cli", *args, "--output_dir", str(tmp_path / "one")], check=True,
                   capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    run_on_two_cpu_processes(["-m", "igmu_hf.cli", *args, "--output_dir", str(tmp_path / "two")])
    one_rows, two_rows = _outcomes(tmp_path / "one"), _outcomes(tmp_path / "two")
    assert len(one_rows) == 4 and one_rows == two_rows
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and not list((tmp_path / "two").glob("outcomes.rank*.jsonl"))
    assert len(list((tmp_path / "two" / "images").glob("*.png"))) == 4
