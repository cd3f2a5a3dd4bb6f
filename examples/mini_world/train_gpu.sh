#!/usr/bin/env bash
# Recipe of the shipped mini-world weights on one GPU: about nine minutes on an H100 (data stay on the GPU; stages
# that do not depend on each other run side by side, each cut to its time budget by --time_budget_minutes).
#   bash examples/mini_world/train_gpu.sh OUT
#   python -m igmu_hf.mini.train --output_dir OUT --stages none --export_to src/igmu_hf/mini/weights
# On 2 CPU cores use `python -m igmu_hf.mini.train --preset cpu` instead (about an hour, below the quality bars).
set -euo pipefail
out=$1
LATENT=${LATENT:-8}
train() { python3 -m igmu_hf.mini.train --output_dir "$out" --latent_channels "$LATENT" "$@"; }
train --stages none --num_workers 16                                         # draw the data once
train --stages clip --train_batch_size 512 --time_budget_minutes 2 > "$out/clip.log" 2>&1 &
train --stages vae --train_batch_size 256 --time_budget_minutes 2 > "$out/vae.log" 2>&1 &
wait
train --stages classifier --train_batch_size 256 --time_budget_minutes 2 > "$out/classifier.log" 2>&1 &
train --stages unet --train_batch_size 1024 --time_budget_minutes "${UNET_MINUTES:-4}" > "$out/unet.log" 2>&1 &
wait
train --stages none --export_to "$out/export"
python3 -m igmu_hf.mini.quality --pretrained_model_name_or_path "$out/export/pipeline" \
  --classifier "$out/export/classifier" --device "${DEVICE:-cuda}" > "$out/quality.json" 2> "$out/quality.log"
