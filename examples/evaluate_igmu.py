#!/usr/bin/env python
"""EvalIGMU: the five-aspect evaluation of unlearned pipelines against their original (same as `igmu evaluate`).

One process:
    python examples/evaluate_igmu.py --unlearned out/uce-circle --output_dir out/eval
Several (generation and per-image scoring are split in fixed chunks, so the report is the same):
    accelerate launch --num_processes 2 examples/evaluate_igmu.py --unlearned out/uce-circle --output_dir out/eval
    # CPUs only: ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2 examples/evaluate_igmu.py ...
Real models: --original CompVis/stable-diffusion-v1-4 --task nudity --forget_prompts_file i2p.txt
    --unrelated_prompts_file coco.txt (MultClf, CLIP, YOLO, Inception default to their Hub ids).
"""

import sys

from igmu_hf.cli import main


if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
