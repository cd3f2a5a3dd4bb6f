"""Unlearn a concept with Dark Miner (mine → verify → circumvent, looped) under accelerate.

    python examples/train_darkminer.py --concept circle --output_dir out/darkminer-circle     # the embedded mini model
    accelerate launch --num_processes 2 examples/train_darkminer.py --concept circle --output_dir out/dm-circle \\
        --method_kwargs '{"mining_batch_size": 4}'
    accelerate launch examples/train_darkminer.py --pretrained_model_name_or_path CompVis/stable-diffusion-v1-4 \\
        --concept nudity --output_dir out/sd14-darkminer-nudity --checkpointing_steps 500

Writes ``output_dir`` with the fused pipeline, ``pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights``),
``mined_embeddings.safetensors``, ``igmu_run.json`` and a model card. The image pool goes to
``<output_dir>-pool`` (a ``datasets`` folder, reused on the next run; ``--pool_dataset`` to point elsewhere), and
checkpoints to ``<output_dir>-checkpoints``; ``--resume_from_checkpoint latest`` continues an interrupted run.
"""

import argparse
import json
import logging
from pathlib import Path


logger = logging.getLogger("train_darkminer")
CONFIG_FLAGS = {"pool_size": int, "embedding_length": int, "mining_epochs": int, "mining_batch_size": int,
                "circumvent_epochs": int, "circumvent_batch_size": int, "tau": float, "max_loops": int,
                "num_inference_steps": int, "guidance_scale": float}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                   help="Base pipeline folder or Hub id (default: the embedded mini world).")
    p.add_argument("--concept", type=str, required=True, help="Concept to erase.")
    p.add_argument("--preserve", type=str, action="append", default=None,
                   help="Prompt whose outputs the preservation term keeps (repeatable; default: none, the paper's).")
    p.add_argument("--output_dir", type=str, required=True)
    p.add_argument("--pool_dataset", type=str, default=None, help="Folder of a saved image pool (built if missing).")
    for name, kind in CONFIG_FLAGS.items():
        p.add_argument(f"--{name}", type=kind, default=None, help=f"DarkMinerConfig.{name} (default: the paper's, "
                       f"or the mini preset on the mini model).")
    p.add_argument("--method_kwargs", type=str, default="{}", help="JSON of further DarkMinerConfig fields.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
    p.add_argument("--checkpointing_steps", type=int, default=None, help="Save a resumable state every N steps.")
    p.add_argument("--checkpoints_total_limit", type=int, default=2, help="Checkpoints kept.")
    p.add_argument("--resume_from_checkpoint", type=str, default=None,
                   help="A checkpoint folder, or 'latest' in <output_dir>-checkpoints.")
    p.add_argument("--report_to", type=str, default=None, help="accelerate tracker (tensorboard, wandb ...).")
    p.add_argument("--overwrite", action="store_true", help="Replace an output_dir holding a different run.")
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", type=str, default=None)
    return p.parse_args(argv)


def main(args) -> Path | None:
    from accelerate import Accelerator
    from datasets import load_from_disk

    from igmu_hf.hub import (default_pretrained_model_name_or_path, load_pipeline, push_folder_to_hub,
                             save_unlearned_pipeline)
    from igmu_hf.methods.darkminer import DarkMinerConfig, DarkMinerUnlearner, generate_pool

    logging.basicConfig(level=logging.INFO)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=args.report_to)
    base = args.pretrained_model_name_or_path or default_pretrained_model_name_or_path()
    from igmu_hf.domains import domain_for_model

    world = domain_for_model(args.pretrained_model_name_or_path)  # the mini world for the embedded model
    preset = world.method_preset(DarkMinerConfig)
    explicit = {k: getattr(args, k) for k in CONFIG_FLAGS if getattr(args, k) is not None}
    if args.preserve:
        explicit["preserve_prompts"] = args.preserve
    cfg = DarkMinerConfig(concepts=[args.concept], seed=args.seed,
                          **{**preset, **explicit, **json.loads(args.method_kwargs)})
    pipe = load_pipeline(base).to(accelerator.device)
    out = Path(args.output_dir)
    pool_dir = Path(args.pool_dataset) if args.pool_dataset else out.with_name(out.name + "-pool")
    if not (pool_dir / "dataset_info.json").exists():
        pool = generate_pool(pipe, cfg, accelerator, progress=accelerator.is_local_main_process)  # sharded
        if accelerator.is_main_process:
            tmp = pool_dir.with_name(pool_dir.name + ".tmp")
            pool.save_to_disk(str(tmp))
            tmp.rename(pool_dir)
    accelerator.wait_for_everyone()
    pool_images = list(load_from_disk(str(pool_dir))["image"])
    if args.report_to:
        accelerator.init_trackers("igmu-darkminer", config={k: v for k, v in cfg.to_dict().items()
                                                           if isinstance(v, (int, float, str, bool))})
    result = DarkMinerUnlearner(cfg, pool_images=pool_images, accelerator=accelerator, domain=world,
                                output_dir=str(out.with_name(out.name + "-checkpoints")),
                                checkpointing_steps=args.checkpointing_steps,
                                checkpoints_total_limit=args.checkpoints_total_limit,
                                resume_from_checkpoint=args.resume_from_checkpoint,
                                progress=accelerator.is_local_main_process).unlearn(pipe)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    result.extra["num_processes"] = accelerator.num_processes
    folder = save_unlearned_pipeline(result, out, base_model=base, overwrite=args.overwrite)
    logger.info("Saved %s (%s)", folder, json.dumps(result.extra["darkminer"], default=str))
    if args.push_to_hub:
        push_folder_to_hub(folder, args.hub_model_id)
    accelerator.end_training()
    return folder


if __name__ == "__main__":
    main(parse_args())
