"""A new EvalIGMU metric is one registration: the evaluator computes it for every model, the report shows its column.

The toy metric is the mean absolute brightness difference to the original on the unrelated prompts; the test
recomputes it from the images the evaluator cached on disk."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from igmu_hf.metrics.registry import Column, MetricEntry, Skipped, register_metric, unregister_metric


def brightness_gap(ctx) -> dict:
    if ctx.is_original:
        raise Skipped("the original is the reference")
    gaps = [abs(np.asarray(ctx.mine[i], np.float64).mean() - np.asarray(ctx.ref[i], np.float64).mean())
            for i in ctx.unrelated_ids]
    return {"gap": float(np.mean(gaps)), "num_images": len(gaps)}


@pytest.fixture
def toy_metric():
    register_metric(MetricEntry("brightness_gap", "quality", "toy", brightness_gap, ("unrelated",), (),
                                (Column("brightness gap ↓", "gap", ".2f"),)))
    yield
    unregister_metric("brightness_gap")


def test_a_registered_metric_is_computed_and_reported(toy_metric, tmp_path):
    from igmu_hf.evaluator import EvalIGMU, EvalIGMUConfig
    from igmu_hf.tiny_pipelines import tiny_pipeline

    config = EvalIGMUConfig(task="circle", num_prompts=2, metrics=["toy"], domain="mini",
                            generation_kwargs={"num_inference_steps": 3})
    pipes = {"original": tiny_pipeline("sd1", seed=0), "other": tiny_pipeline("sd1", seed=1)}
    report = EvalIGMU(config).run(pipes, tmp_path, progress=False)
    assert "skipped" in report["models"]["original"]["quality"]["brightness_gap"]
    got = report["models"]["other"]["quality"]["brightness_gap"]
    folder = Path(tmp_path) / "images"
    ids = sorted(p.stem for p in (folder / "other").glob("unrelated-*.png"))
    expected = np.mean([abs(np.asarray(Image.open(folder / "other" / f"{i}.png"), np.float64).mean() -
                            np.asarray(Image.open(folder / "original" / f"{i}.png"), np.float64).mean()) for i in ids])
    assert got["num_images"] == len(ids) == 2 and got["gap"] == pytest.approx(expected) and got["gap"] > 0
    assert "brightness gap ↓" in (Path(tmp_path) / "report.md").read_text()
