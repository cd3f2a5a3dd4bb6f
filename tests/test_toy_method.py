"""A new trained method is one file: a config dataclass, an unlearner on the training scaffold, one registration.

This toy method pulls the UNet's ``conv_out.bias`` towards minus the mean of seeded noise; with nothing else it
gets the CLI entry point, resumable checkpoints, process shares, the run metadata and the model card."""

import json
from dataclasses import dataclass, field

import pytest
import torch

from igmu_hf.families import family_of
from igmu_hf.methods import MethodConfig, Unlearner, register_method
from igmu_hf.training import TrainingRun


@dataclass
class ToyConfig(MethodConfig):
    steps: int = field(default=6, metadata={"help": "Optimisation steps."})
    lr: float = field(default=0.1, metadata={"help": "SGD learning rate."})
    batch_size: int = field(default=4, metadata={"help": "Noise draws per step (over all processes)."})


class ToyUnlearner(Unlearner):
    config_class = ToyConfig
    technique = "toy: output bias fine-tuning"
    trained = True

    def __init__(self, config, accelerator=None, output_dir=None, checkpointing_steps=None,
                 checkpoints_total_limit=2, resume_from_checkpoint=None, progress=False, callback=None):
        super().__init__(config)
        self.run_kwargs = dict(accelerator=accelerator, output_dir=output_dir, checkpointing_steps=checkpointing_steps,
                               checkpoints_total_limit=checkpoints_total_limit,
                               resume_from_checkpoint=resume_from_checkpoint, progress=progress, callback=callback)

    def _unlearn(self, pipeline) -> list[str]:
        cfg = self.config
        unet = family_of(pipeline).denoiser(pipeline)
        unet.requires_grad_(False)
        bias = unet.conv_out.bias.requires_grad_(True)
        run = TrainingRun(cfg.to_dict(), **self.run_kwargs)
        run.check_divisible("batch_size", cfg.batch_size)
        opt = torch.optim.SGD([bias], lr=cfg.lr, momentum=0.9)
        first = 0
        resumed = run.resume({"conv_out.bias": bias})
        if resumed is not None:
            first = resumed[0]["step"]
            opt.load_state_dict(resumed[2])
        for step in run.steps(first, cfg.steps, "toy"):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
            noise = torch.randn(cfg.batch_size, bias.numel(), generator=g)[run.share(cfg.batch_size)]
            loss = ((bias + noise) ** 2).mean()
            loss.backward()
            run.reduce_mean_([bias])
            opt.step()
            opt.zero_grad(set_to_none=True)
            run.checkpoint(step + 1, {}, {"conv_out.bias": bias}, opt.state_dict())
            run.after_step(step + 1)
        bias.requires_grad_(False)
        return ["conv_out.bias"]


@pytest.fixture
def toy_registered():
    from igmu_hf.methods.base import _REGISTRY

    register_method("toy", ToyUnlearner)
    yield
    _REGISTRY._classes.pop("toy", None)


def test_toy_method_runs_from_the_cli_entry_point_and_resumes(toy_registered, tiny_pipeline_dir, tmp_path,
                                                              crash_at):
    from igmu_hf.api import run_unlearn
    from igmu_hf.hub import load_pipeline

    folder, result = run_unlearn("toy", ["church"], str(tmp_path / "toy"), tiny_pipeline_dir,
                                 method_kwargs={"steps": 6})
    run = json.loads((folder / "igmu_run.json").read_text())
    original = load_pipeline(tiny_pipeline_dir).unet.conv_out.bias
    assert run["method"] == "toy" and run["artifact_kind"] == "fused weights"
    assert run["edited_parameter_count"] == original.numel() == result.edited_parameter_count
    saved = load_pipeline(str(folder)).unet.conv_out.bias
    assert (saved - original).abs().max() > 1e-3  # it trained, and the saved pipeline holds the result

    ckpt = tmp_path / "ckpt"
    with pytest.raises(crash_at.Crash):
        ToyUnlearner(ToyConfig(concepts=["church"]), output_dir=str(ckpt), checkpointing_steps=2,
                     callback=crash_at(4)).unlearn(load_pipeline(tiny_pipeline_dir))
    resumed = ToyUnlearner(ToyConfig(concepts=["church"]), output_dir=str(ckpt),
                           resume_from_checkpoint="latest").unlearn(load_pipeline(tiny_pipeline_dir))
    torch.testing.assert_close(resumed.pipeline.unet.conv_out.bias, saved, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match=r"different config.*lr: checkpoint=0\.1 now=0\.5"):
        ToyUnlearner(ToyConfig(concepts=["church"], lr=0.5), output_dir=str(ckpt),
                     resume_from_checkpoint="latest").unlearn(load_pipeline(tiny_pipeline_dir))


def test_train_unlearn_parses_the_methods_config_and_saves(tiny_pipeline_dir, tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("train_unlearn", Path(__file__).parents[1] / "examples" /
                                                  "train_unlearn.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    method, args, config = script.parse_args(["--method", "uce", "--concepts", "circle", "--lamb", "0.25",
                                              "--pretrained_model_name_or_path", tiny_pipeline_dir,
                                              "--output_dir", str(tmp_path / "uce")])
    assert method == "uce" and config.lamb == 0.25 and config.concepts == ["circle"]
    folder = script.main(method, args, config)
    run = json.loads((folder / "igmu_run.json").read_text())
    assert run["config"]["lamb"] == 0.25 and run["edited_parameter_count"] > 0
    _, _, mini_config = script.parse_args(["--method", "duo", "--concepts", "circle", "--output_dir", "x"])
    assert mini_config.max_train_steps == 600 and mini_config.num_inference_steps == 25  # the mini world's preset
    # one value at a time, as the seed scripts and igmu unlearn take them
    _, _, uce = script.parse_args(["--method", "uce", "--concept", "circle", "--preserve", "a square", "--preserve",
                                   "a star", "--output_dir", "x"])
    assert uce.concepts == ["circle"] and uce.preserve_concepts == ["a square", "a star"]


def test_prepared_data_is_built_once_reused_and_refused_when_its_fields_change(tmp_path):
    from accelerate import Accelerator
    from datasets import Dataset

    from igmu_hf.training import shared_dataset

    builds = []

    def build():
        builds.append(1)
        return Dataset.from_dict({"x": [1, 2, 3]})

    acc = Accelerator(cpu=True)
    first = shared_dataset(tmp_path / "pairs", build, acc, {"num_pairs": 3})
    again = shared_dataset(tmp_path / "pairs", build, acc, {"num_pairs": 3})
    assert len(builds) == 1 and first["x"] == again["x"] == [1, 2, 3]
    assert not (tmp_path / "pairs.tmp").exists()
    with pytest.raises(ValueError, match=r"other values of num_pairs.*3, now 4.*--data_dir"):
        shared_dataset(tmp_path / "pairs", build, acc, {"num_pairs": 4})


def test_a_resumed_run_records_the_time_of_every_segment(tiny_pipeline_dir, tmp_path, crash_at):
    """Each step's callback sleeps 0.2 s; the run crashes at step 4 (checkpoint at 4) and resumes for steps 5-6: the
    recorded runtime covers both segments, not only the last one."""
    import time

    from igmu_hf.hub import load_pipeline

    ran = []

    def slow(crash_step):
        inner = crash_at(crash_step)

        def callback(step):
            ran.append(step)
            time.sleep(0.2)
            inner(step)
        return callback

    ckpt = tmp_path / "ckpt"
    with pytest.raises(crash_at.Crash):
        ToyUnlearner(ToyConfig(concepts=["church"]), output_dir=str(ckpt), checkpointing_steps=2,
                     callback=slow(4)).unlearn(load_pipeline(tiny_pipeline_dir))
    ran.clear()
    resumed = ToyUnlearner(ToyConfig(concepts=["church"]), output_dir=str(ckpt), resume_from_checkpoint="latest",
                           callback=slow(-1)).unlearn(load_pipeline(tiny_pipeline_dir))
    assert len(ran) == 2  # this segment ran two steps only (counted, not timed) ...
    # ... and the record adds the earlier segment's: its checkpoint at step 4 came after 3 sleeps, this one slept twice
    assert resumed.runtime_seconds >= 0.2 * 5
