#!/usr/bin/env python
"""The IGMU re-evaluation: every method x task x five aspects, one resumable run (same as `igmu benchmark`).

One process:
    python examples/benchmark.py --methods all --tasks circle sketch striped --budget fast --output_dir out/bench
Several (each cell's training is data-parallel, its generation and scoring split in fixed chunks):
    accelerate launch --num_processes 2 examples/benchmark.py --methods all --budget fast --output_dir out/bench
    # CPUs only: ACCELERATE_USE_CPU=1 python -m torch.distributed.run --nproc_per_node 2 examples/benchmark.py ...
Robustness too: --attack unlearndiffatk. Real models (--pretrained_model_name_or_path CompVis/stable-diffusion-v1-4)
    unlearn with the papers' settings, but their tasks have no built-in prompt sets yet: evaluate those with
    `igmu evaluate --forget_prompts_file ...`.
"""

import sys

from igmu_hf.cli import main


if __name__ == "__main__":
    sys.exit(main(["benchmark", *sys.argv[1:]]))
