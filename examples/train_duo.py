"""Unlearn a concept with DUO (Direct Unlearning Optimization) under accelerate.

    python examples/train_duo.py --concept circle --output_dir out/duo-circle          # the embedded mini model
    accelerate launch --num_processes 2 examples/train_duo.py --concept circle --output_dir out/duo-circle
    accelerate launch examples/train_duo.py --pretrained_model_name_or_path CompVis/stable-diffusion-v1-4 \\
        --concept nudity --unsafe_prompt "a naked woman, realistic photo" --safe_prompt "a dressed woman, realistic photo"

Writes ``output_dir`` with the fused pipeline, ``pytorch_lora_weights.safetensors`` (``pipe.load_lora_weights``),
``igmu_run.json`` and a model card; the pairs go to ``output_dir/../<name>-pairs`` as a ``datasets`` folder and are
reused when the script is run again (``--pairs_dataset`` to point elsewhere).
"""

import argparse
import json
import logging
from pathlib import Path


logger = logging.getLogger("train_duo")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                   help="Base pipeline folder or Hub id (default: the embedded mini world).")
    p.add_argument("--concept", type=str, required=True, help="Concept to erase.")
    p.add_argument("--preserve", type=str, action="append", default=None,
                   help="Prompt whose outputs the preservation term keeps (repeatable; default: none, the paper's).")
    p.add_argument("--unsafe_prompt", type=str, action="append", default=None, help="Prompt of x⁻ (repeatable).")
    p.add_argument("--safe_prompt", type=str, action="append", default=None, help="SDEdit prompt of x⁺ (repeatable).")
    p.add_argument("--output_dir", type=str, required=True)
    p.add_argument("--pairs_dataset", type=str, default=None, help="Folder of saved pairs (built if missing).")
    p.add_argument("--num_pairs", type=int, default=None, help="K pairs (default 64).")
    p.add_argument("--max_train_steps", type=int, default=None, help="Default 1000 (the mini preset: 600).")
    p.add_argument("--train_batch_size", type=int, default=None, help="Pairs per step over all processes (4).")
    p.add_argument("--beta", type=float, default=None, help="β (default 500).")
    p.add_argument("--base_lr", type=float, default=None, help="lr = base_lr·100/β (default 3e-4).")
    p.add_argument("--base_lambda", type=float, default=None, help="λ = base_λ·β/100 (default 1e6).")
    p.add_argument("--num_inference_steps", type=int, default=None, help="Default 50 (25 on the mini model).")
    p.add_argument("--guidance_scale", type=float, default=None, help="Default 7.5 (5.0 on the mini model).")
    p.add_argument("--method_kwargs", type=str, default="{}", help="JSON of further DUOConfig fields.")
    p.add_argument("--checkpointing_steps", type=int, default=None, help="Save a resumable state every N steps.")
    p.add_argument("--checkpoints_total_limit", type=int, default=2, help="Checkpoints kept.")
    p.add_argument("--resume_from_checkpoint", type=str, default=None,
                   help="A checkpoint folder, or 'latest' in <output_dir>-checkpoints.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed_precision", type=str, default=None, choices=["no", "fp16", "bf16"])
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
    from igmu_hf.methods.duo import DUOConfig, DUOUnlearner, build_pairs, default_detector

    logging.basicConfig(level=logging.INFO)
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=args.report_to)
    base = args.pretrained_model_name_or_path or default_pretrained_model_name_or_path()
    from igmu_hf.domains import domain_for_model

    world = domain_for_model(args.pretrained_model_name_or_path)  # the mini world for the embedded model
    explicit = {k: getattr(args, k) for k in ("num_pairs", "max_train_steps", "train_batch_size", "beta", "base_lr",
                                              "base_lambda", "num_inference_steps", "guidance_scale")
                if getattr(args, k) is not None}
    if args.unsafe_prompt:
        explicit.update(unsafe_prompts=args.unsafe_prompt, safe_prompts=args.safe_prompt)
    if args.preserve:
        explicit["preserve_prompts"] = args.preserve
    preset = world.method_preset(DUOConfig)
    cfg = DUOConfig(concepts=[args.concept], seed=args.seed,
                    **{**preset, **explicit, **json.loads(args.method_kwargs)})
    pipe = load_pipeline(base).to(accelerator.device)
    pipe.set_progress_bar_config(disable=True)
    out = Path(args.output_dir)
    pairs_dir = Path(args.pairs_dataset) if args.pairs_dataset else out.with_name(out.name + "-pairs")
    if accelerator.is_main_process and not (pairs_dir / "dataset_info.json").exists():
        detector = default_detector(cfg.concepts, world) if cfg.pair_filter == "detector" else None
        pairs = build_pairs(pipe, detector, cfg, domain=world)
        tmp = pairs_dir.with_name(pairs_dir.name + ".tmp")
        pairs.save_to_disk(str(tmp))
        tmp.rename(pairs_dir)
    accelerator.wait_for_everyone()
    pairs = load_from_disk(str(pairs_dir))
    if args.report_to:
        accelerator.init_trackers("igmu-duo", config={k: v for k, v in cfg.to_dict().items()
                                                     if isinstance(v, (int, float, str, bool))})
    checkpoints = out.with_name(out.name + "-checkpoints")  # beside output_dir, which is replaced atomically
    result = DUOUnlearner(cfg, pairs=pairs, accelerator=accelerator, progress=accelerator.is_local_main_process,
                          domain=world,
                          output_dir=str(checkpoints), checkpointing_steps=args.checkpointing_steps,
                          resume_from_checkpoint=args.resume_from_checkpoint,
                          checkpoints_total_limit=args.checkpoints_total_limit).unlearn(pipe)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    result.extra["num_processes"] = accelerator.num_processes
    folder = save_unlearned_pipeline(result, out, base_model=base, overwrite=args.overwrite)
    logger.info("Saved %s (%s)", folder, json.dumps(result.extra["training"]))
    if args.push_to_hub:
        push_folder_to_hub(folder, args.hub_model_id)
    accelerator.end_training()
    return folder


if __name__ == "__main__":
    main(parse_args())
