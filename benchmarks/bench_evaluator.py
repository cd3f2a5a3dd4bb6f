"""Throughput of EvalIGMU on the mini model: images/s for generation and each metric, and 1 -> 2 process scaling.

    python benchmarks/bench_evaluator.py [--num_images 64] [--scaling_prompts 8] [--skip_scaling]

Prints one JSON line per measurement. Scaling runs examples/evaluate_igmu.py with torchrun (CPU processes) on a fresh
output folder each time, once with 1 and once with 2 processes, and reports the wall time of each and the speed-up.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def rate(n: int, fn) -> dict:
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": round(seconds, 3), "images_per_second": round(n / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_images", type=int, default=64)
    parser.add_argument("--scaling_prompts", type=int, default=8)
    parser.add_argument("--skip_scaling", action="store_true")
    args = parser.parse_args()

    import torch

    from igmu_hf.evaluation import MINI_GENERATION, generate_images
    from igmu_hf.hub import load_pipeline
    from igmu_hf.metrics.clip_score import clip_scores, csdr
    from igmu_hf.metrics.detection import person_detection_rate
    from igmu_hf.metrics.forgetting import forgetting_rate
    from igmu_hf.metrics.legacy import nudenet_concept_ratio
    from igmu_hf.metrics.loaders import load_detector
    from igmu_hf.metrics.perceptual import load_lpips, lpips_distance
    from igmu_hf.mini import PIPELINE_PATH
    from igmu_hf.mini.prompts import concept_prompts

    n = args.num_images
    print(json.dumps({"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}))
    pipe = load_pipeline(PIPELINE_PATH)
    prompts = (concept_prompts("shape", "circle", n // 2) + concept_prompts("shape", "square", n - n // 2))
    images = []
    r = rate(n, lambda: images.extend(generate_images(pipe, prompts, list(range(n)), batch_size=16, progress=False,
                                                      **MINI_GENERATION)))
    print(json.dumps({"measure": "generation (mini, 25 DDIM steps, CFG 5, batch 16)", **r}))
    half = images[: n // 2], images[n // 2:]
    mc, mp, _ = load_detector("multclf", None)
    clip, cp, _ = load_detector("clip", None)
    yolo, _, _ = load_detector("yolo", None)
    fid_x, _, _ = load_detector("fid_feature_extractor", None)
    lp, _ = load_lpips("alex")
    ids = [str(k) for k in range(n // 2)]
    for name, count, fn in [
        ("multclf_forgetting", n, lambda: forgetting_rate(images, mc, mp, "circle")),
        ("clip_score", n, lambda: clip_scores(images, prompts, clip, cp)),
        ("csdr (2 images per pair)", n, lambda: csdr(half[0], half[1], prompts[: n // 2], clip, cp)),
        ("lpips (2 images per pair)", n, lambda: lpips_distance(dict(zip(ids, half[0])), dict(zip(ids, half[1])), lp)),
        ("yolo_person_rate", n, lambda: person_detection_rate(images, yolo, "object")),
        ("fid features (mini CLIP)", n, lambda: fid_x(images)),
        ("nudenet_ratio (legacy)", n, lambda: nudenet_concept_ratio(images)),
    ]:
        fn()  # warm-up (model loading, first-call allocations)
        print(json.dumps({"measure": name, **rate(count, fn)}))

    if args.skip_scaling:
        return
    from igmu_hf.cli import run_unlearn

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = run_unlearn("uce", ["circle"], f"{tmp}/uce")
        walls = {}
        for procs in (1, 2):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
                   "29541", str(root / "examples" / "evaluate_igmu.py"), "--unlearned", str(folder), "--output_dir",
                   f"{tmp}/eval{procs}", "--num_prompts", str(args.scaling_prompts)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "ACCELERATE_USE_CPU": "1"})
            walls[procs] = time.perf_counter() - start
            report = json.loads(Path(f"{tmp}/eval{procs}/report.json").read_text())
            print(json.dumps({"measure": f"igmu evaluate, {procs} process(es)", "wall_seconds": round(walls[procs], 1),
                              "images": sum(report["models"][m]["num_images"]["forget"] +
                                            report["models"][m]["num_images"]["unrelated"]
                                            for m in report["models"]) + len(report["prompts"]["do1"])}))
        print(json.dumps({"measure": "scaling 1 -> 2 processes", "speedup": round(walls[1] / walls[2], 2)}))


if __name__ == "__main__":
    from results import record

    record("evaluator", "EvalIGMU speed: generation, scoring and process scaling", main)
