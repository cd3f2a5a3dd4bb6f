"""Unlearn with any registered method; the method's config dataclass is the command line (HfArgumentParser), so
every field's ``help`` is its ``--help``.

    python examples/train_unlearn.py --method duo --concepts circle --output_dir out/duo-circle     # the mini model
    python examples/train_unlearn.py --method duo --help                                            # DUOConfig's fields
    accelerate launch examples/train_unlearn.py --method darkminer --concepts circle --output_dir out/dm \\
        --checkpointing_steps 50 --resume_from_checkpoint latest
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 examples/train_unlearn.py --method duo ...  # 2 CPU processes

On the embedded mini model the concept world's preset fills the defaults (``igmu_hf.domains``); a field given on
the command line wins. A list field ``--xs a b`` may also be given one value at a time as ``--x a --x b``
(``--concept``, ``--unsafe_prompt`` ...), and ``--preserve`` fills the method's preservation field.
``train_duo.py`` and ``train_darkminer.py`` are this script with ``--method`` set.
"""

import argparse
import logging
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path


logger = logging.getLogger("train_unlearn")


@dataclass
class ScriptArguments:
    output_dir: str = field(metadata={"help": "Folder of the unlearned pipeline (checkpoints go to <output_dir>-"
                                              "checkpoints)."})
    pretrained_model_name_or_path: str | None = field(default=None, metadata={
        "help": "Base pipeline folder or Hub id (default: the embedded mini world)."})
    data_dir: str | None = field(default=None, metadata={
        "aliases": ["--pairs_dataset", "--pool_dataset"],
        "help": "Folder of the data the method prepares once (DUO's pairs, Dark Miner's image pool), built if "
                "missing and reused otherwise (default: <output_dir>-pairs / -pool)."})
    checkpointing_steps: int | None = field(default=None, metadata={"help": "Save a resumable state every N steps."})
    checkpoints_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    resume_from_checkpoint: str | None = field(default=None, metadata={
        "help": "A checkpoint folder, or 'latest' in <output_dir>-checkpoints."})
    mixed_precision: str | None = field(default=None, metadata={"help": "'no', 'fp16' or 'bf16'."})
    report_to: str | None = field(default=None, metadata={"help": "accelerate tracker (tensorboard, wandb ...)."})
    seeds: str | None = field(default=None, metadata={
        "help": "Train once per seed, e.g. 0,1,2, into <output_dir>/seed_<s> (the config's --seed is replaced); "
                "igmu benchmark --seeds pools such runs with intervals over seeds and images."})
    overwrite: bool = field(default=False, metadata={"help": "Replace an output_dir holding a different run."})
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the folder after saving."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id for --push_to_hub."})


def _gather_singular_flags(argv: list[str], config_class) -> list[str]:
    """``--x a --x b`` → ``--xs a b`` for the config's list fields ``xs``, and ``--preserve`` → its preservation
    field (what the seed methods' scripts and ``igmu unlearn`` accept)."""
    lists = {f.name for f in fields(config_class) if "list" in str(f.type)}
    singular = {"--" + name[:-1]: name for name in lists if name.endswith("s")}
    if config_class.preserve_field:
        singular["--preserve"] = config_class.preserve_field
    gathered: dict[str, list[str]] = {}
    rest, i = [], 0
    while i < len(argv):
        flag, value = argv[i].partition("=")[0], argv[i].partition("=")[2]
        if flag in singular:
            if not value:
                if i + 1 >= len(argv):
                    raise SystemExit(f"{flag} needs a value.")
                value, i = argv[i + 1], i + 1
            gathered.setdefault(singular[flag], []).append(value)
        else:
            rest.append(argv[i])
        i += 1
    for name, values in gathered.items():
        rest += [f"--{name}", *values]
    return rest


def parse_args(argv=None):
    """``(method name, ScriptArguments, the method's config)``."""
    from transformers import HfArgumentParser

    from igmu_hf.api import default_preserve
    from igmu_hf.domains import domain_for_model
    from igmu_hf.methods import get_method, list_methods

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", type=str, default=None)
    pre.add_argument("--pretrained_model_name_or_path", type=str, default=None)
    known, rest = pre.parse_known_args(argv)
    if known.method is None:
        raise SystemExit(f"train_unlearn.py: pass --method NAME (one of {', '.join(list_methods())}); then "
                         f"--method NAME --help lists its fields.")
    config_class = get_method(known.method).config_class
    world = domain_for_model(known.pretrained_model_name_or_path)
    parser = HfArgumentParser((ScriptArguments, config_class), prog="train_unlearn.py --method " + known.method)
    parser.set_defaults(**world.method_preset(config_class))
    if known.pretrained_model_name_or_path is not None:
        rest = ["--pretrained_model_name_or_path", known.pretrained_model_name_or_path, *rest]
    try:
        script, config = parser.parse_args_into_dataclasses(_gather_singular_flags(rest, config_class))
    except ValueError as err:  # a config field's own check: one line, not a traceback
        parser.error(str(err))
    name = config_class.preserve_field
    if name and not getattr(config, name):
        preserve = default_preserve(config_class, config.concepts, world)
        if preserve:  # CatIGMU's preserve set, as igmu unlearn uses it
            config = config_class.from_dict({**config.to_dict(), name: preserve})
    return known.method, script, config


def main(method: str, script: ScriptArguments, config) -> Path | None:
    """Unlearn and save (``igmu_hf.api.unlearn_and_save``); the folder, None on processes other than the main.
    With ``--seeds``, once per seed into ``<output_dir>/seed_<s>``; the last folder is returned."""
    from igmu_hf.api import seed_folders
    from igmu_hf.errors import parse_seeds

    seeds = parse_seeds(script.seeds)
    if seeds is not None and script.push_to_hub:
        raise ValueError("--push_to_hub with --seeds would push several models to one repo; push each "
                         "<output_dir>/seed_<s> with igmu publish instead.")
    folder = None
    for seed, output_dir in seed_folders(script.output_dir, seeds):
        seeded = config if seed is None else type(config).from_dict({**config.to_dict(), "seed": seed})
        data_dir = script.data_dir if seed is None or script.data_dir is None else f"{script.data_dir}/seed_{seed}"
        folder = _train_one(method, script, seeded, output_dir, data_dir)
    return folder


def _train_one(method: str, script: ScriptArguments, config, output_dir: str, data_dir: str | None) -> Path | None:
    from accelerate import Accelerator

    from igmu_hf.api import unlearn_and_save
    from igmu_hf.errors import check_hub_id
    from igmu_hf.hub import push_folder_to_hub

    logging.basicConfig(level=logging.INFO)
    if script.push_to_hub:  # checked before any work
        check_hub_id("--hub_model_id", script.hub_model_id)
    accelerator = Accelerator(mixed_precision=script.mixed_precision, log_with=script.report_to)
    if script.report_to:
        accelerator.init_trackers(f"igmu-{method}", config={k: v for k, v in config.to_dict().items()
                                                            if isinstance(v, (int, float, str, bool))})
    folder, result = unlearn_and_save(
        config, output_dir, script.pretrained_model_name_or_path, accelerator=accelerator,
        data_dir=data_dir, checkpointing_steps=script.checkpointing_steps,
        checkpoints_total_limit=script.checkpoints_total_limit,
        resume_from_checkpoint=script.resume_from_checkpoint, overwrite=script.overwrite)
    accelerator.end_training()
    if folder is None:
        return None
    logger.info("Saved %s: %d parameters edited in %.1f s.", folder, result.edited_parameter_count,
                result.runtime_seconds)
    if script.push_to_hub:
        push_folder_to_hub(folder, script.hub_model_id)
    return folder


def cli(argv=None, prog: str = "train_unlearn.py") -> int:
    """Parse, run, and end a user error in one line (``igmu_hf.errors.run_command``): the exit status."""
    from igmu_hf.errors import run_command

    def run() -> int:
        main(*parse_args(argv))
        return 0

    return run_command(run, prog)


if __name__ == "__main__":
    sys.exit(cli())
