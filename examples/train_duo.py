"""Unlearn a concept with DUO (Direct Unlearning Optimization) under accelerate: ``train_unlearn.py --method duo``.

    python examples/train_duo.py --concept circle --output_dir out/duo-circle          # the embedded mini model
    python examples/train_duo.py --help                                                 # every DUOConfig field
    accelerate launch --num_processes 2 examples/train_duo.py --concept circle --output_dir out/duo-circle
    accelerate launch examples/train_duo.py --pretrained_model_name_or_path CompVis/stable-diffusion-v1-4 \\
        --concept nudity --unsafe_prompt "a naked woman, realistic photo" --safe_prompt "a dressed woman, realistic photo"

Writes ``output_dir`` with the fused pipeline, ``pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights``),
``igmu_run.json`` and a model card. The pairs go to ``<output_dir>-pairs`` as a ``datasets`` folder, built once by
the main process and reused when the script is run again with the same pair settings (``--pairs_dataset`` to point
elsewhere); checkpoints go to ``<output_dir>-checkpoints`` (``--resume_from_checkpoint latest``).
"""

import sys

from train_unlearn import cli


if __name__ == "__main__":
    if "-h" in sys.argv or "--help" in sys.argv:
        print(__doc__)
    sys.exit(cli(["--method", "duo", *sys.argv[1:]], prog="train_duo.py"))
