import atexit
import os
import shutil
import tempfile

import pytest
import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# pytest-xdist's worker name ("gw0", "gw1"), absent in a run without workers (`pytest -n 0`)
WORKER = os.environ.get("PYTEST_XDIST_WORKER")
# A fixed thread count, not the machine's: float sums (and so borderline images) depend on it. The default run is two
# pytest-xdist workers of one thread each (the record's count); `pytest -n 0` is one process of two. IGMU_TEST_THREADS
# sets it either way (tests/README.md).
TEST_THREADS = int(os.environ.get("IGMU_TEST_THREADS", "1" if WORKER else "2"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(autouse=True)
def fixed_thread_count():
    """Every test starts at TEST_THREADS, whatever an earlier test (or a library it called) set: a thread count left
    behind would change later tests' float sums and, with two workers on two cores, oversubscribe them."""
    torch.set_num_threads(TEST_THREADS)
    yield
    torch.set_num_threads(TEST_THREADS)  # and the next test's module and session fixtures too


# The caches tests write into (evaluate's copied metric scripts, datasets' builds) belong to this run and worker,
# never the user's or another worker's: set before evaluate or datasets is imported.
_CACHES = tempfile.mkdtemp(prefix=f"igmu-tests-{WORKER or 'main'}-")
os.environ["HF_MODULES_CACHE"] = os.path.join(_CACHES, "modules")
os.environ["HF_DATASETS_CACHE"] = os.path.join(_CACHES, "datasets")
atexit.register(shutil.rmtree, _CACHES, ignore_errors=True)


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


class Crash(Exception):
    """Raised by ``crash_at``'s callback: a run interrupted mid-way, as a crash would."""


@pytest.fixture
def crash_at():
    """``crash_at(n)``: a training callback that raises :class:`Crash` when step ``n`` is reached."""
    def make(n: int):
        def callback(step):
            if step == n:
                raise Crash

        return callback

    make.Crash = Crash
    return make


@pytest.fixture
def killed_and_resumed(tmp_path, crash_at):
    """``killed_and_resumed(cls, config, at)``: ``cls(config)`` on the mini pipeline with a checkpoint every step,
    killed at step ``at``, then resumed from its latest checkpoint on a fresh pipeline; the resumed result."""
    from igmu_hf.hub import load_pipeline

    def run(cls, config, at: int):
        folder = str(tmp_path / "killed_run")
        with pytest.raises(crash_at.Crash):
            cls(config, output_dir=folder, checkpointing_steps=1, progress=False,
                callback=crash_at(at)).unlearn(load_pipeline())
        return cls(config, output_dir=folder, resume_from_checkpoint="latest", progress=False).unlearn(load_pipeline())

    return run


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it), so two-process tests never collide on a fixed one."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def run_on_two_cpu_processes():
    """Run ``python -m torch.distributed.run --nproc_per_node 2 ARGS`` with ``ACCELERATE_USE_CPU=1``; fail with the
    processes' stderr if it fails.

    accelerate 1.15's ``accelerate launch --cpu --num_processes 2`` starts a single process (multi-CPU needs an
    mpirun hostfile), and without a GPU accelerate counts torchrun's processes only when told to use the CPU.
    """
    import subprocess
    import sys

    def run(args: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                               "--master_port", str(free_port()), *args], capture_output=True, text=True,
                              env={**os.environ, "ACCELERATE_USE_CPU": "1"})
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run


@pytest.fixture(scope="session")
def mini_multclf():
    """EvalIGMU's MultClf of the mini world, ``(model, processor)``: the judge of every method test."""
    from igmu_hf.detectors.multclf import load_multclf
    from igmu_hf.mini import MULTCLF_PATH

    return load_multclf(MULTCLF_PATH)


@pytest.fixture(scope="session")
def check_original(mini_pipeline, mini_multclf, tmp_path_factory):
    """``check_original(target)``: the original mini model's MultClf verdicts on a method check's images
    (``igmu_hf.method_checks``, generation seed 0), generated once per test run and shared by every check; under
    pytest-xdist the first worker to need them writes them (JSON, under a file lock) into the run's folder that all
    workers share, and the others read them."""
    import json

    from filelock import FileLock

    from igmu_hf.atomic import write_text_atomic
    from igmu_hf.method_checks import task_verdicts

    # the run's base folder is per worker under xdist; its parent is the run's
    shared = tmp_path_factory.getbasetemp().parent if WORKER else tmp_path_factory.getbasetemp()
    cache = {}

    def get(target: str) -> dict:
        if target not in cache:
            path = shared / f"check_original_{target}.json"
            with FileLock(f"{path}.lock"):
                if not path.exists():
                    write_text_atomic(path, json.dumps(task_verdicts(mini_pipeline, target, mini_multclf)))
            cache[target] = json.loads(path.read_text())
        return cache[target]

    return get


@pytest.fixture(scope="session")
def method_check(check_original, mini_multclf, tmp_path_factory):
    """``method_check(method, target)``: the outcome of ``method``'s mini-world check (``igmu_hf.method_checks``,
    training seed 0, generation seed 0) with its unlearned pipeline under ``"pipeline"``; each method is trained
    once per test session for every test that needs it (the check itself, the attack comparisons)."""
    from igmu_hf.method_checks import run_method_check

    cache = {}

    def get(method: str, target: str) -> dict:
        if (method, target) not in cache:
            out = tmp_path_factory.mktemp(f"{method}_{target}") / method
            cache[(method, target)] = run_method_check(method, target, check_original(target), mini_multclf, str(out))
        return cache[(method, target)]

    return get


@pytest.fixture(scope="session")
def nudenet_images():
    """``(images, detections)``: 12 drawings of overlapping ellipses on which NudeNet's bundled detector really
    fires (it reads some as BUTTOCKS_EXPOSED, scores about 0.25-0.46) and on which it does not, with the detector's
    own raw detections per image, so a NudeNet figure is checked against what the detector itself says instead of
    on images where every score is 0."""
    import numpy as np
    from nudenet import NudeDetector
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    images = []
    for _ in range(12):
        image = Image.new("RGB", (320, 320), tuple(int(c) for c in rng.integers(150, 255, 3)))
        draw = ImageDraw.Draw(image)
        for _ in range(6):
            fill = tuple(int(c) for c in rng.integers(100, 255, 3))
            x, y = (int(v) for v in rng.integers(0, 300, 2))
            r = int(rng.integers(20, 120))
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        images.append(image)
    detector = NudeDetector()
    detections = [detector.detect(np.ascontiguousarray(np.asarray(im)[:, :, ::-1])) for im in images]
    return images, detections
