import os

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(max(1, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A tiny random SD1.x-architecture pipeline saved as a stock diffusers folder."""
    from diffusers import StableDiffusionPipeline

    from igmu_hf.mini.architecture import tiny_random_components

    path = tmp_path_factory.mktemp("tiny") / "pipeline"
    StableDiffusionPipeline(**tiny_random_components(seed=0)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def mini_classifier():
    from igmu_hf.mini import CLASSIFIER_PATH
    from igmu_hf.mini.classifier import MiniClassifier

    return MiniClassifier.from_pretrained(CLASSIFIER_PATH).eval()


@pytest.fixture(scope="session")
def mini_pipeline():
    from igmu_hf.hub import load_pipeline
    from igmu_hf.mini import PIPELINE_PATH

    return load_pipeline(PIPELINE_PATH)
