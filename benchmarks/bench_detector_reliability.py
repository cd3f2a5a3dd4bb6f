#!/usr/bin/env python
"""The detector-reliability study (seed 000 Tables 1-3 and 6) on the mini DataIGM, end to end:

1. build the mini DataIGM (or reuse ``--dataset``);
2. train MultClf heads for its configs on REAL rows only, and on all three sources (``examples/train_multclf.py``);
3. score, per task and source on the test split: the REAL-only heads, the DataIGM heads (both from fresh head
   weights, so they differ only in their data), the shipped heads (the first heads fine-tuned on the DataIGM: see
   ``igmu_hf/mini/weights/multclf/training_record.json``), CLIP accuracy, the mini classifier (the curator of SD-GEN)
   and, with ``--first_heads``, the first mini heads (trained on renderer scenes by ``examples/train_multclf.py
   --mini_world``).

    python benchmarks/bench_detector_reliability.py --output_dir bench-detectors [--dataset mini-dataigm]

Writes ``detector_reliability.{md,json}`` and prints the table and the mean accuracy per detector and source.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", type=str, required=True)
    p.add_argument("--dataset", type=str, default=None, help="A built mini DataIGM (default: build one).")
    p.add_argument("--num_train_epochs", type=float, default=10)
    p.add_argument("--first_heads", type=str, default=None,
                   help="The first mini heads (examples/train_multclf.py --mini_world), to score beside the others.")
    args = p.parse_args()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = args.dataset or str(out / "mini-dataigm")
    if not args.dataset:
        subprocess.run([sys.executable, "-m", "igmu_hf.cli", "dataigm", "build", "--mini", "--output_dir", dataset],
                       check=True)
    from igmu_hf.data.reliability import (ClipAccuracyDetector, JudgeDetector, MultClfDetector, detector_reliability,
                                          reliability_markdown, write_reliability)
    from igmu_hf.judges import MiniConceptJudge
    from igmu_hf.mini import CLIP_PATH, MULTCLF_PATH

    configs = json.loads((Path(dataset) / "build_info.json").read_text())["recipe"]["configs"]
    shipped = MULTCLF_PATH  # its other heads and vision tower; the studied heads are trained from fresh weights
    heads = {}
    for name, sources in (("real-only", ["REAL"]), ("dataigm", [])):
        dest = out / f"multclf-{name}"
        if not (dest / "model.safetensors").exists():
            subprocess.run([sys.executable, str(ROOT / "examples" / "train_multclf.py"), "--pretrained_model_name_or_path",
                            shipped, "--dataset_name_or_path", dataset, "--dataset_config_name", *configs,
                            *(["--sources", *sources] if sources else []), "--reset_heads",
                            "--num_train_epochs", str(args.num_train_epochs), "--per_device_train_batch_size", "64",
                            "--output_dir", str(dest)], check=True)
        heads[name] = str(dest)
    detectors = [MultClfDetector("MultClf, first mini heads (renderer scenes)", args.first_heads)] \
        if args.first_heads else []
    detectors += [MultClfDetector("MultClf trained on REAL only", heads["real-only"]),
                 MultClfDetector("MultClf trained on DataIGM (all sources)", heads["dataigm"]),
                 MultClfDetector("MultClf shipped (first heads fine-tuned on DataIGM)", MULTCLF_PATH),
                 ClipAccuracyDetector(CLIP_PATH),
                 JudgeDetector("mini classifier (REAL only; curator of SD-GEN)", MiniConceptJudge.from_pretrained,
                               lambda c: True, note="it chose which SD-GEN generations were kept, so its SD-GEN "
                                                    "figures are 100 by construction")]
    report = detector_reliability(dataset, configs, detectors)
    write_reliability(report, out)
    print(reliability_markdown(report))
    print("| detector | REAL | LAION | SD-GEN |  (mean accuracy over tasks, %)\n|---|---|---|---|")
    for det in detectors:
        means = []
        for source in ("REAL", "LAION", "SD-GEN"):
            accs = [report["results"][c][source][det.name]["accuracy"] for c in configs]
            means.append(sum(accs) / len(accs))
        print(f"| {det.name} | " + " | ".join(f"{m:.1f}" for m in means) + " |")


if __name__ == "__main__":
    from results import record

    record("detector_reliability", "Detector reliability study (seed 000 Tables 1-3, 6) on the mini DataIGM", main)
