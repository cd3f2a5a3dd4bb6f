"""Training seeds (issue 27): `igmu unlearn --seeds` and `train_unlearn.py --seeds` unlearn once per seed into
`<output_dir>/seed_<s>`, each run carrying its own seed; a trained method's seeds give different models."""

import importlib.util
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from cli_helpers import assert_one_line_error, run_cli


ROOT = Path(__file__).resolve().parents[1]


def _weights(folder: Path) -> dict:
    return load_file(next((folder / "unet").glob("*.safetensors")))


def test_igmu_unlearn_seeds_write_one_model_per_seed(tmp_path, capsys):
    """MACE draws its training noise from the seed: the two seeds' UNets differ, and a rerun of one seed is equal."""
    out = tmp_path / "mace"
    rc, stdout, _ = run_cli(capsys, "unlearn", "--method", "mace", "--concept", "circle", "--seeds", "3,4",
                            "--output_dir", str(out), "--method_kwargs", json.dumps({"max_train_steps": 5}))
    models = sorted(p.name for p in out.iterdir() if (p / "model_index.json").exists())
    assert rc == 0 and models == ["seed_3", "seed_4"]
    assert "(seed 3)" in stdout and "(seed 4)" in stdout
    runs = {s: json.loads((out / f"seed_{s}" / "igmu_run.json").read_text()) for s in (3, 4)}
    assert runs[3]["config"]["seed"] == 3 and runs[4]["config"]["seed"] == 4
    a, b = _weights(out / "seed_3"), _weights(out / "seed_4")
    assert any(not a[k].equal(b[k]) for k in a)
    again = tmp_path / "again"
    assert run_cli(capsys, "unlearn", "--method", "mace", "--concept", "circle", "--seeds", "3",
                   "--output_dir", str(again), "--method_kwargs", json.dumps({"max_train_steps": 5}))[0] == 0
    c = _weights(again / "seed_3")
    assert all(a[k].equal(c[k]) for k in a)


@pytest.mark.parametrize("seeds,needle", [("0,x", "whole numbers"), ("1,1", "twice"), (",", "whole numbers")])
def test_bad_seeds_are_refused_in_one_line(tmp_path, capsys, seeds, needle):
    rc, _, err = run_cli(capsys, "unlearn", "--method", "uce", "--concept", "circle", "--seeds", seeds,
                         "--output_dir", str(tmp_path / "x"))
    assert_one_line_error(rc, err, "--seeds", needle)
    assert not (tmp_path / "x").exists()


def test_train_unlearn_script_takes_seeds(tmp_path):
    spec = importlib.util.spec_from_file_location("train_unlearn", ROOT / "examples" / "train_unlearn.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    method, args, config = script.parse_args(["--method", "uce", "--concepts", "circle", "--seeds", "0,1",
                                              "--output_dir", str(tmp_path / "uce")])
    last = script.main(method, args, config)
    assert last == tmp_path / "uce" / "seed_1"
    for s in (0, 1):
        assert json.loads((tmp_path / "uce" / f"seed_{s}" / "igmu_run.json").read_text())["config"]["seed"] == s


def test_library_code_leaves_the_callers_random_state_alone():
    """Building seeded things (a tiny pipeline, LPIPS' random backbone) neither reseeds nor advances the caller's
    generator, and the same seed still gives the same weights."""
    import re

    import torch

    from igmu_hf.metrics.perceptual import load_lpips
    from igmu_hf.tiny_pipelines import tiny_pipeline

    torch.manual_seed(123)
    expected = torch.rand(4)
    torch.manual_seed(123)
    first = tiny_pipeline("sd1")
    load_lpips("alex", pretrained_backbone=False)
    assert torch.equal(torch.rand(4), expected)
    second = tiny_pipeline("sd1")
    assert all(torch.equal(a, b) for a, b in zip(first.unet.parameters(), second.unet.parameters()))
    calls = [(p.relative_to(ROOT).as_posix(), n) for p in (ROOT / "src" / "igmu_hf").rglob("*.py")
             for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"torch\.(random\.)?manual_seed\(", line)]
    # one place seeds (inside fork_rng); the mini world's training stages are scripts run on their own
    assert {f for f, _ in calls} <= {"src/igmu_hf/seeding.py", "src/igmu_hf/mini/train.py"}, calls
