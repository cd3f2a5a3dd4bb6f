#!/usr/bin/env python
"""Build DataIGM (seed 000 §5.4) into parquet shards + a dataset card: the same as ``igmu dataigm build``.

    python dataset_scripts/build_dataigm.py --mini --output_dir mini-dataigm --repo_id igmu/dataigm
    python dataset_scripts/build_dataigm.py --output_dir dataigm --configs nudity church \
        --real_dir my_real --laion_dir my_laion --num_train 4000 --num_test 1000 \
        --pretrained_model_name_or_path CompVis/stable-diffusion-v1-4 --unlearned church:uce=out/uce-church \
        --repo_id me/dataigm --push_to_hub

Several processes share the SD-GEN generation (``torchrun --nproc_per_node 2 dataset_scripts/build_dataigm.py ...``
or ``accelerate launch``); an interrupted build resumes where it stopped. See dataset_scripts/README.md.
"""

import sys

from igmu_hf.cli import main

if __name__ == "__main__":
    sys.exit(main(["dataigm", "build", *sys.argv[1:]]))
