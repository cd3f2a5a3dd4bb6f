"""Unlearn with any registered method; the method's config dataclass is the command line (HfArgumentParser), so
every field's ``help`` is its ``--help``.

    python examples/train_unlearn.py --method duo --concepts circle --output_dir out/duo-circle     # the mini model
    python examples/train_unlearn.py --method duo --help                                            # DUOConfig's fields
    accelerate launch examples/train_unlearn.py --method darkminer --concepts circle --output_dir out/dm \\
        --checkpointing_steps 50 --resume_from_checkpoint latest
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 examples/train_unlearn.py --method duo ...  # 2 CPU processes

On the embedded mini model the concept world's preset fills the defaults (``igmu_hf.domains``); a field given on
the command line wins. ``train_duo.py`` and ``train_darkminer.py`` remain the documented entry points of the seed
methods (they also share the pair set / image pool across processes); this script is the generic one.
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path


logger = logging.getLogger("train_unlearn")


@dataclass
class ScriptArguments:
    output_dir: str = field(metadata={"help": "Folder of the unlearned pipeline (checkpoints go to <output_dir>-"
                                              "checkpoints)."})
    pretrained_model_name_or_path: str | None = field(default=None, metadata={
        "help": "Base pipeline folder or Hub id (default: the embedded mini world)."})
    checkpointing_steps: int | None = field(default=None, metadata={"help": "Save a resumable state every N steps."})
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "A checkpoint folder, or 'latest' in <output_dir>-checkpoints."})
    mixed_precision: str | None = field(default=None, metadata={"help": "'no', 'fp16' or 'bf16'."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an output_dir holding a different run."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder after saving."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id for --push_to_hub."})


def parse_args(argv=None):
    """``(method name, ScriptArguments, the method's config)``."""
    from transformers import HfArgumentParser

    from igmu_hf.domains import domain_for_model
    from igmu_hf.methods import get_method, list_methods

    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", type=str, default=None)
    pre.add_argument("--pretrained_model_name_or_path", type=str, default=None)
    known, rest = pre.parse_known_args(argv)
    if known.method is None:
        raise SystemExit(f"train_unlearn.py: pass --method NAME (one of {', '.join(list_methods())}); then "
                         f"--method NAME --help lists its fields.")
    config_class = get_method(known.method).config_class
    parser = HfArgumentParser((ScriptArguments, config_class), prog="train_unlearn.py --method " + known.method)
    parser.set_defaults(**domain_for_model(known.pretrained_model_name_or_path).method_preset(config_class))
    if known.pretrained_model_name_or_path is not None:
        rest = ["--pretrained_model_name_or_path", known.pretrained_model_name_or_path, *rest]
    script, config = parser.parse_args_into_dataclasses(rest)
    return known.method, script, config


def main(method: str, script: ScriptArguments, config) -> Path | None:
    from accelerate import Accelerator

    from igmu_hf.domains import domain_for_model
    from igmu_hf.hub import check_output_dir, load_pipeline, push_folder_to_hub, save_unlearned_pipeline
    from igmu_hf.methods import get_method

    logging.basicConfig(level=logging.INFO)
    unlearner_cls = get_method(method)
    world = domain_for_model(script.pretrained_model_name_or_path)
    base = script.pretrained_model_name_or_path or world.default_pretrained_model_name_or_path()
    check_output_dir(script.output_dir, config.config_hash(), script.overwrite)  # fail before any work
    accelerator = Accelerator(mixed_precision=script.mixed_precision)
    pipe = load_pipeline(base).to(accelerator.device)
    kwargs = dict(unlearner_cls.domain_kwargs(world))
    if unlearner_cls.trained:
        out = Path(script.output_dir)
        kwargs.update(accelerator=accelerator, output_dir=str(out.with_name(out.name + "-checkpoints")),
                      checkpointing_steps=script.checkpointing_steps, resume_from_checkpoint=script.resume_from_checkpoint,
                      checkpoints_total_limit=script.checkpoints_total_limit,
                      progress=accelerator.is_local_main_process)
    result = unlearner_cls(config, **kwargs).unlearn(pipe)
    result.extra.update(domain=world.name, num_processes=accelerator.num_processes)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    folder = save_unlearned_pipeline(result, script.output_dir, base_model=base, overwrite=script.overwrite)
    logger.info("Saved %s: %d parameters edited in %.1f s.", folder, result.edited_parameter_count,
                result.runtime_seconds)
    if script.push_to_hub:
        push_folder_to_hub(folder, script.hub_model_id)
    return folder


if __name__ == "__main__":
    main(*parse_args(sys.argv[1:]))
