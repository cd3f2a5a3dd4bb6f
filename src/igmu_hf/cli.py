"""The ``igmu`` command: categorize, unlearn, evaluate, attack, demo, publish, convert-yolo, dataigm, detectors,
benchmark. Thin argparse over the
library entry points (:mod:`igmu_hf.api`). What the user names (output folders, Hub ids, prompt files, JSON flags,
numbers) is checked before any work; user errors end in one line (:mod:`igmu_hf.errors`), programming errors keep
their traceback."""

import argparse
import json
import logging
import os
import sys
from pathlib import Path


from .api import read_prompts, run_attack, run_evaluate, run_unlearn, summary_lines  # noqa: F401  (re-exported)
from .errors import check_hub_id, json_arg, parse_seeds, run_command


logger = logging.getLogger("igmu_hf")


def _add_model_arg(p):
    p.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                   help="Base pipeline folder or Hub id (default: the embedded mini world).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="igmu", description="Image generation model unlearning toolkit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("categorize", help="Print the CatIGMU TaskSpec of a target as JSON.")
    p.add_argument("target", type=str, help="The target to unlearn, e.g. 'Van Gogh style'.")
    p.add_argument("--category", type=str, default=None, help="'Scope/Perception/Task' for targets CatIGMU lacks.")
    p.add_argument("--prompt", type=str, default=None, help="Also show do-1 / do-2 of this prompt.")

    p = sub.add_parser("unlearn", help="Erase concept(s) from a pipeline and save the unlearned pipeline.")
    p.add_argument("--method", type=str, required=True, help="Registered method, e.g. 'uce'.")
    p.add_argument("--concept", type=str, action="append", required=True, help="Concept to erase (repeatable).")
    _add_model_arg(p)
    p.add_argument("--output_dir", type=str, required=True, help="Folder of the unlearned pipeline.")
    p.add_argument("--overwrite", action="store_true", help="Replace an output_dir that holds a different run.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the method's random draws.")
    p.add_argument("--seeds", type=str, default=None,
                   help="Unlearn once per training seed, e.g. 0,1,2, into <output_dir>/seed_<s> (then evaluate each, "
                        "or let igmu benchmark --seeds pool them).")
    p.add_argument("--preserve", type=str, action="append", default=None,
                   help="Prompt to preserve (repeatable). Default: CatIGMU's preserve prompts of the target in its "
                        "concept world for methods whose paper preserves a set (UCE); none for DUO and Dark Miner, "
                        "which then add a preservation term for each given prompt.")
    p.add_argument("--method_kwargs", type=str, default="{}", help="JSON of extra method config fields.")
    p.add_argument("--checkpointing_steps", type=int, default=None,
                   help="Trained methods: save a resumable state every N steps in <output_dir>-checkpoints.")
    p.add_argument("--resume_from_checkpoint", type=str, default=None,
                   help="Trained methods: a checkpoint folder, or 'latest' in <output_dir>-checkpoints (a run killed "
                        "after a checkpoint continues from it).")
    p.add_argument("--push_to_hub", action="store_true", help="Upload the folder to the Hub after saving.")
    p.add_argument("--hub_model_id", type=str, default=None, help="Hub repo id for --push_to_hub.")

    p = sub.add_parser("evaluate", help="EvalIGMU: the five aspects of original vs unlearned pipelines (report).")
    p.add_argument("--unlearned", type=str, action="append", required=True, help="Unlearned pipeline (repeatable).")
    p.add_argument("--original", type=str, default=None, help="Original pipeline (default: the run's base model).")
    p.add_argument("--task", "--concept", dest="task", type=str, default=None,
                   help="CatIGMU target (default: read from the unlearned run).")
    p.add_argument("--output_dir", type=str, required=True, help="Report folder (images are cached here: resumable).")
    p.add_argument("--images_per_prompt", type=int, default=1, help="Images per prompt (paired seeds seed..).")
    p.add_argument("--num_prompts", type=int, default=8, help="Prompts per set on the mini world.")
    p.add_argument("--seed", type=int, default=0, help="First generation seed.")
    p.add_argument("--forget_prompts_file", type=str, default=None, help="Forget prompts, one per line.")
    p.add_argument("--unrelated_prompts_file", type=str, default=None, help="Unrelated prompts, one per line.")
    p.add_argument("--metrics", type=str, nargs="+", default=None, help="Subset of metrics (default: all).")
    for name, what in (("multclf", "MultClf folder or Hub id"), ("clip", "CLIP for CLIP score/CSDR"),
                       ("yolo", "YOLO weights (ultralytics name or saved folder)"),
                       ("fid_feature_extractor", "'inception' or 'clip:<CLIP>'")):
        p.add_argument(f"--{name}", type=str, default=None, help=f"{what} (default: the mini world's for mini tasks).")
    p.add_argument("--attack", type=str, default=None,
                   help="Also attack every model (e.g. 'unlearndiffatk') and report its ASR as the robustness aspect.")
    p.add_argument("--attack_kwargs", type=str, default="{}", help="JSON of extra attack config fields.")
    p.add_argument("--attack_num_prompts", type=int, default=None,
                   help="Attack the first N forget prompts only (default: all); the ASR's interval rests on them.")
    p.add_argument("--update_model_card", action="store_true",
                   help="Write each unlearned model's results into its README.md metadata (model-index).")
    p.add_argument("--overwrite", action="store_true",
                   help="Write into a folder that holds other files or another command's output (only igmu_hf's own "
                        "outputs are replaced; other files are kept).")

    p = sub.add_parser("attack", help="Attack an unlearned pipeline with adversarial prompts; outcomes + ASR.")
    p.add_argument("--method", type=str, required=True, help="Registered attack, e.g. 'unlearndiffatk'.")
    p.add_argument("--unlearned", type=str, required=True, help="Unlearned pipeline folder or Hub id.")
    p.add_argument("--task", type=str, default=None, help="CatIGMU target (default: read from the unlearned run).")
    p.add_argument("--original", type=str, default=None, help="Original pipeline (default: the run's base model).")
    p.add_argument("--output_dir", type=str, required=True, help="Where outcomes.jsonl, summary.json, images go.")
    p.add_argument("--prompts_file", type=str, default=None,
                   help="Text file, one prompt per line (default: the mini world's prompts for a mini target).")
    p.add_argument("--judge", type=str, default=None,
                   help="'mini' (the mini classifier) or 'nudenet'; default: mini for mini targets, nudenet for nudity.")
    p.add_argument("--threshold", type=float, default=None, help="Judge threshold (recorded in the summary).")
    p.add_argument("--preset", type=str, choices=["paper", "fast"], default=None,
                   help="Budgets: the paper's, or 'fast' (default: fast on the mini world, paper otherwise).")
    p.add_argument("--attack_kwargs", type=str, default="{}", help="JSON of extra attack config fields.")
    p.add_argument("--seed", type=int, default=0, help="Seed; prompt i is generated with seed+i.")
    p.add_argument("--overwrite", action="store_true", help="Write into a folder that holds other files.")

    p = sub.add_parser("demo", help="Categorize, unlearn (UCE), evaluate and report on the mini world.")
    p.add_argument("--concept", type=str, default="circle", help="Mini-world concept to erase.")
    p.add_argument("--output_dir", type=str, default="igmu_demo", help="Report folder.")
    p.add_argument("--images_per_prompt", type=int, default=1, help="Images per prompt.")
    p.add_argument("--seed", type=int, default=0, help="Seed.")
    p.add_argument("--overwrite", action="store_true", help="Replace a previous demo in output_dir.")

    p = sub.add_parser("publish", help="Put a saved folder in the local hub cache (offline use) or on the Hub.")
    p.add_argument("folder", type=str, help="A pipeline or LoRA folder (igmu unlearn), an evaluate module folder "
                                            "(metrics/<name>) or a YOLO folder (igmu convert-yolo).")
    p.add_argument("--repo_id", type=str, required=True, help="Hub id, e.g. 'igmu/mini-uce-circle'.")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--cache", action="store_true", help="Into the local hub cache: then from_pretrained(repo_id) "
                                                            "/ evaluate.load(repo_id) load it with HF_HUB_OFFLINE=1.")
    where.add_argument("--push", action="store_true", help="Upload to the Hub (needs a token).")
    p.add_argument("--cache_dir", type=str, default=None,
                   help="Hub cache (default: HF_HUB_CACHE); for an evaluate module, the modules cache (HF_MODULES_CACHE).")

    p = sub.add_parser("convert-yolo", help="Convert an ultralytics .pt once to the safetensors folder igmu_hf loads.")
    p.add_argument("source", type=str, help="An ultralytics .pt file you downloaded, e.g. yolov8n.pt.")
    p.add_argument("--output_dir", type=str, required=True, help="Folder to write (yolo.yaml, model.safetensors).")
    p.add_argument("--trust_pickle", action="store_true",
                   help="Required: .pt files are pickles and loading one RUNS THE CODE IT HOLDS. Pass it only for a "
                        "file from a source you trust (e.g. ultralytics' own release).")
    p = sub.add_parser("dataigm", help="DataIGM: build the dataset (mini or real recipe) and prepare it for "
                                       "load_dataset by folder or Hub id.")
    dsub = p.add_subparsers(dest="dataigm_command", required=True)
    b = dsub.add_parser("build", help="Build DataIGM configs into parquet shards + dataset card (resumable).")
    b.add_argument("--output_dir", type=str, required=True, help="Folder to build into (resumed if it exists).")
    b.add_argument("--mini", action="store_true", help="The mini DataIGM, from the embedded mini world.")
    b.add_argument("--configs", type=str, nargs="*", default=None,
                   help="Configs (real: nudity vangogh church parachute; mini: any mini task, default circle star "
                        "sketch striped).")
    b.add_argument("--real_dir", type=str, default=None, help="Real recipe: <real_dir>/<config>/<split>/{target,pair}/.")
    b.add_argument("--laion_dir", type=str, default=None, help="Real recipe: <laion_dir>/<config>.parquet.")
    b.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                   help="Real recipe: the original model that generates SD-GEN (e.g. CompVis/stable-diffusion-v1-4); "
                        "without it there is no SD-GEN part.")
    b.add_argument("--unlearned", type=str, nargs="*", default=None,
                   help="Real recipe: unlearned SD-GEN generators, CONFIG:METHOD=PATH_OR_ID.")
    b.add_argument("--methods", type=str, default="uce,rece,mace,salun,ca",
                   help="Mini recipe: methods whose unlearned mini models join SD-GEN (comma-separated).")
    b.add_argument("--num_train", type=int, default=None, help="Rows per label per source in train (mini: 150).")
    b.add_argument("--num_test", type=int, default=None, help="Rows per label per source in test (mini: 50).")
    b.add_argument("--curator", type=str, default=None, help="Real recipe: judge that keeps SD-GEN generations "
                                                            "agreeing with their prompt (e.g. nudenet).")
    b.add_argument("--chunk_size", type=int, default=None, help="SD-GEN candidates per resumable chunk.")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--repo_id", type=str, default=None, help="Also prepare it in the local datasets cache as this "
                                                            "Hub id (load_dataset(repo_id, config) offline).")
    b.add_argument("--cache_dir", type=str, default=None, help="datasets cache (default: HF_DATASETS_CACHE).")
    b.add_argument("--push_to_hub", action="store_true", help="Upload card and shards to --repo_id.")
    b.add_argument("--overwrite", action="store_true", help="Rebuild a folder built with other settings.")

    p = sub.add_parser("benchmark", help="The IGMU re-evaluation: every method x task x five aspects, resumable; "
                                         "leaderboards, radar charts, efficiency table, grids, HTML + JSON.")
    p.add_argument("--methods", type=str, default="all", help="Comma-separated methods, or 'all' (default).")
    p.add_argument("--tasks", type=str, nargs="+", default=None,
                   help="CatIGMU targets (default: circle sketch striped, a shape, a style and a texture).")
    _add_model_arg(p)
    p.add_argument("--output_dir", type=str, required=True, help="Benchmark folder (resumed if it exists).")
    p.add_argument("--budget", type=str, default="preset",
                   help="'preset' (each method at its world preset) or 'fast' (about 4x fewer training steps, 4 "
                        "prompts: the mini matrix on 2 CPU cores).")
    p.add_argument("--num_prompts", type=int, default=None, help="Prompts per set (default: the budget's).")
    p.add_argument("--images_per_prompt", type=int, default=None,
                   help="Images per prompt, paired seeds (default: the budget's).")
    p.add_argument("--seed", type=int, default=0, help="Generation seed, and the training seed without --seeds.")
    p.add_argument("--seeds", type=str, default=None,
                   help="Training seeds, e.g. 0,1,2: each method unlearns once per seed; the figures pool the seeds "
                        "and show each one's.")
    p.add_argument("--bootstrap_resamples", type=int, default=1000,
                   help="Bootstrap resamples behind the verdicts' confidence (front, balanced, rank).")
    p.add_argument("--attack", type=str, default=None, help="Attack for robustness, e.g. 'unlearndiffatk'.")
    p.add_argument("--attack_num_prompts", type=int, default=None,
                   help="Forget prompts the attack runs on (default: the budget's).")
    p.add_argument("--attack_kwargs", type=str, default="{}", help="JSON of extra attack config fields.")
    p.add_argument("--method_kwargs", type=str, default="{}",
                   help='JSON {method: {field: value}} over the budget, e.g. \'{"esd": {"iterations": 200}}\'.')
    p.add_argument("--metrics", type=str, nargs="+", default=None, help="Subset of metric groups (default: all).")
    p.add_argument("--balanced_threshold", type=float, default=0.5,
                   help="Balanced = every measured aspect score (0..1) at least this on every task.")
    p.add_argument("--redo", type=str, nargs="+", default=None,
                   help="Run these finished cells again (TASK/METHOD, a task, a method, or all); a finished cell "
                        "whose config changed is refused without it.")
    p.add_argument("--overwrite", action="store_true", help="Write into a folder that holds other files.")

    p = sub.add_parser("detectors", help="Detector reliability on DataIGM (paper Tables 1-3, 6): accuracy, "
                                         "precision, recall, F1 per task and source; Markdown + JSON.")
    p.add_argument("--dataset", type=str, required=True, help="A built DataIGM folder or a Hub id.")
    p.add_argument("--configs", type=str, nargs="*", default=None, help="Configs to study (default: all built).")
    p.add_argument("--multclf", type=str, nargs="*", default=None,
                   help="MultClf checkpoints as NAME=PATH_OR_ID (default: the world's own MultClf).")
    p.add_argument("--clip", type=str, default=None, help="CLIP for CLIP accuracy (default: the world's).")
    p.add_argument("--image_classifier", type=str, default=None,
                   help="ImageNet classifier for object tasks (real recipe default: microsoft/resnet-50).")
    p.add_argument("--split", type=str, default="test")
    p.add_argument("--output_dir", type=str, required=True, help="Where detector_reliability.{md,json} go.")
    return parser


def cmd_dataigm(args) -> int:
    from .outputs import check_writable_dir

    check_writable_dir(args.output_dir)
    if args.repo_id or args.push_to_hub:
        check_hub_id("--repo_id", args.repo_id)
    splits = {k: v for k, v in (("train", args.num_train), ("test", args.num_test)) if v is not None}
    for name, v in splits.items():
        if v < 1:
            raise ValueError(f"`--num_{name}` must be at least 1, got {v}.")
    extra = {"chunk_size": args.chunk_size} if args.chunk_size else {}
    if args.mini:
        from .data.mini import build_mini_dataigm

        if args.real_dir or args.laion_dir or args.unlearned:
            raise ValueError("--mini builds its own sources; drop --real_dir/--laion_dir/--unlearned.")
        methods = [m for m in args.methods.split(",") if m]
        from .methods import list_methods

        unknown = [m for m in methods if m not in list_methods()]
        if unknown:
            raise ValueError(f"`--methods` names {unknown}, not registered methods; methods: {list_methods()}.")
        record = build_mini_dataigm(args.output_dir, args.configs, methods,
                                    {"train": splits.get("train", 150), "test": splits.get("test", 50)}, args.seed,
                                    overwrite=args.overwrite, **extra)
    else:
        from .data.real import build_real_dataigm, parse_unlearned

        if not (args.real_dir or args.laion_dir or args.pretrained_model_name_or_path):
            raise ValueError("Give at least one source: --real_dir, --laion_dir, or --pretrained_model_name_or_path "
                             "(with --num_train/--num_test) for SD-GEN (or --mini for the mini DataIGM).")
        record = build_real_dataigm(args.output_dir, args.configs, args.real_dir, args.laion_dir,
                                    args.pretrained_model_name_or_path, parse_unlearned(args.unlearned),
                                    splits or None, args.seed, args.curator, overwrite=args.overwrite, **extra)
    for config, per_split in record["counts"].items():
        for split, per_source in per_split.items():
            print(f"{config}/{split}: " + ", ".join(f"{s} {c['target']}+{c['pair']}" for s, c in per_source.items()))
    print(f"Built {args.output_dir} (card: README.md); load_dataset({args.output_dir!r}, <config>) loads it.")
    if args.repo_id:
        from .data.build import prepare_offline, push_dataigm_to_hub

        names = prepare_offline(args.output_dir, args.repo_id, cache_dir=args.cache_dir)
        print(f"Prepared {', '.join(names)} in the datasets cache: load_dataset({args.repo_id!r}, <config>) works "
              f"with HF_HUB_OFFLINE=1.")
        if args.push_to_hub:
            push_dataigm_to_hub(args.output_dir, args.repo_id)
            print(f"Pushed to the Hub as {args.repo_id}.")
    return 0


def cmd_detectors(args) -> int:
    import datasets

    from .data.reliability import default_detectors, detector_reliability, reliability_markdown, world_of, \
        write_reliability
    from .outputs import check_writable_dir

    check_writable_dir(args.output_dir)
    multclf = None
    if args.multclf:
        multclf = {}
        for spec in args.multclf:
            name, sep, path = spec.partition("=")
            if not (sep and name and path):
                raise ValueError(f"`--multclf` takes NAME=PATH_OR_ID, got {spec!r}.")
            multclf[name] = path
    configs = args.configs or list(datasets.get_dataset_config_names(args.dataset))
    worlds = {world_of(c) for c in configs}
    if len(worlds) > 1:
        raise ValueError(f"`--configs` mixes the real recipe's and mini tasks ({configs}); study one world at a time.")
    report = detector_reliability(args.dataset, configs, default_detectors(worlds.pop(), multclf, args.clip,
                                                                    image_classifier=args.image_classifier),
                                  split=args.split)
    paths = write_reliability(report, args.output_dir)
    print(reliability_markdown(report))
    print(f"Written: {paths['markdown'].name} and {paths['json'].name} in {args.output_dir}")
    return 0


def cmd_benchmark(args) -> int:
    from .benchmark import conclusions, run_benchmark

    kwargs = {"methods": [m for m in args.methods.split(",") if m], "budget": args.budget,
              "pretrained_model_name_or_path": args.pretrained_model_name_or_path, "num_prompts": args.num_prompts,
              "images_per_prompt": args.images_per_prompt, "seed": args.seed, "attack": args.attack,
              "attack_kwargs": json_arg("--attack_kwargs", args.attack_kwargs),
              "method_kwargs": json_arg("--method_kwargs", args.method_kwargs), "metrics": args.metrics or [],
              "balanced_threshold": args.balanced_threshold, "attack_num_prompts": args.attack_num_prompts,
              "seeds": parse_seeds(args.seeds), "bootstrap_resamples": args.bootstrap_resamples}
    if args.tasks:
        kwargs["tasks"] = args.tasks
    summary = run_benchmark(args.output_dir, redo=args.redo, overwrite=args.overwrite, **kwargs)
    if summary is not None:  # the main process
        print("\n".join(conclusions(summary)))
        print(f"Report: {Path(args.output_dir) / 'index.html'} (tables: report.md, numbers: report.json)")
    return 0


def cmd_categorize(args) -> int:
    from .taxonomy import categorize

    spec = categorize(args.target, category=args.category)
    out = spec.to_dict()
    if args.prompt:  # as every other command: a prompt the text encoder would cut is refused
        from .domains import domain_of_concept

        if domain_of_concept(spec.target).name == "mini":
            from transformers import AutoTokenizer

            from .hub import default_pretrained_model_name_or_path
            from .text import check_token_length

            tokenizer = AutoTokenizer.from_pretrained(default_pretrained_model_name_or_path(), subfolder="tokenizer")
            check_token_length(tokenizer, args.prompt, "--prompt")
        else:  # no real model here: each word and mark is at least one CLIP token (never refuses a readable one)
            import re

            least = len(re.findall(r"\w+|[^\w\s]", args.prompt)) + 2
            if least > 77:
                raise ValueError(f"`--prompt` is at least {least} CLIP tokens; the text encoder reads at most 77 and "
                                 f"would cut it. Shorten it.")
        out["example"] = {"prompt": args.prompt, "do1": spec.do1(args.prompt), "do2": spec.do2(args.prompt)}
    print(json.dumps(out, indent=2))
    return 0


def cmd_unlearn(args) -> int:
    method_kwargs = json_arg("--method_kwargs", args.method_kwargs)
    if args.push_to_hub:
        check_hub_id("--hub_model_id", args.hub_model_id)
    if args.checkpointing_steps is not None:
        from .validation import check_number

        check_number("--checkpointing_steps", args.checkpointing_steps, 1, integer=True)
    seeds = parse_seeds(args.seeds)
    if seeds is not None and args.push_to_hub:
        raise ValueError("--push_to_hub with --seeds would push several models to one repo; push each "
                         "<output_dir>/seed_<s> with igmu publish instead.")
    from .api import seed_folders

    for seed, output_dir in seed_folders(args.output_dir, seeds):
        folder, result = run_unlearn(args.method, args.concept, output_dir, args.pretrained_model_name_or_path,
                                     args.preserve, args.seed if seed is None else seed, args.overwrite,
                                     method_kwargs, checkpointing_steps=args.checkpointing_steps,
                                     resume_from_checkpoint=args.resume_from_checkpoint)
        if folder is None:  # a process other than the main one (torchrun / accelerate launch): the main one reports
            continue
        print(f"Saved {args.method} unlearning of {args.concept}{'' if seed is None else f' (seed {seed})'} to "
              f"{folder} ({result.edited_parameter_count} parameters edited in {result.runtime_seconds:.2f} s).")
        if args.push_to_hub:
            from .hub import push_folder_to_hub

            push_folder_to_hub(folder, args.hub_model_id)
    return 0


def cmd_evaluate(args) -> int:
    attack_kwargs = json_arg("--attack_kwargs", args.attack_kwargs)
    kwargs = {}
    for key in ("forget_prompts", "unrelated_prompts"):
        path = getattr(args, f"{key}_file")
        if path:
            kwargs[key] = read_prompts(path)
    for key in ("multclf", "clip", "yolo", "fid_feature_extractor"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    if args.metrics:
        kwargs["metrics"] = args.metrics
    if args.attack_num_prompts is not None:
        kwargs["attack_num_prompts"] = args.attack_num_prompts
    report = run_evaluate(args.unlearned, args.output_dir, args.original, args.task, args.images_per_prompt,
                          args.seed, attack=args.attack, attack_kwargs=attack_kwargs, overwrite=args.overwrite,
                          update_model_card=args.update_model_card, num_prompts=args.num_prompts, **kwargs)
    from .training import process_state

    if not process_state().is_main_process:
        return 0
    print("\n".join(summary_lines(report)))
    print(f"Report: {Path(args.output_dir) / 'report.md'} (numbers: report.json)")
    return 0


def cmd_attack(args) -> int:
    attack_kwargs = json_arg("--attack_kwargs", args.attack_kwargs)
    prompts = read_prompts(args.prompts_file) if args.prompts_file else None
    if args.threshold is not None:
        from .judges import check_threshold

        check_threshold(args.threshold)
    result = run_attack(args.method, args.unlearned, args.output_dir, args.task, args.original, prompts, args.judge,
                        args.threshold, args.preset, attack_kwargs, args.seed, overwrite=args.overwrite)
    from .training import process_state

    if not process_state().is_main_process:  # every process holds the summary; the main one prints it
        return 0
    s = result.summary
    print(f"{args.method} on {s['task']!r}: ASR {s['asr']:.2f} ({s['pre_attack_successes']} before the attack + "
          f"{s['attack_successes']} found by it, of {s['num_prompts']} prompts); pre-attack ASR "
          f"{s['pre_attack_asr']:.2f}; judge {s['judge'].get('detector', s['judge']['class'])} at threshold "
          f"{s['judge']['threshold']}.")
    print(f"Outcomes: {Path(args.output_dir) / 'outcomes.jsonl'}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.concept, args.output_dir, images_per_prompt=args.images_per_prompt, seed=args.seed,
             overwrite=args.overwrite)
    return 0


def cmd_publish(args) -> int:
    from .hub import publish

    where = publish(args.folder, args.repo_id, push=args.push, cache_dir=args.cache_dir)
    print(f"Published {args.folder} as {args.repo_id} ({where}).")
    return 0


def cmd_convert_yolo(args) -> int:
    from .detectors.yolo import convert_yolo
    from .outputs import check_writable_dir

    check_writable_dir(args.output_dir)
    folder = convert_yolo(args.source, args.output_dir, trust_pickle=args.trust_pickle)
    print(f"Saved {folder} (safetensors); pass it as --yolo {args.output_dir}.")
    return 0


def _quiet_library_loading() -> None:
    """Our own progress bars show the long steps; diffusers'/transformers' per-file loading bars are noise here."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main(argv=None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    _quiet_library_loading()
    handlers = {"categorize": cmd_categorize, "unlearn": cmd_unlearn, "evaluate": cmd_evaluate, "attack": cmd_attack,
                "demo": cmd_demo, "publish": cmd_publish, "convert-yolo": cmd_convert_yolo,
                "dataigm": cmd_dataigm, "detectors": cmd_detectors, "benchmark": cmd_benchmark}
    return run_command(lambda: handlers[args.command](args), f"igmu {args.command}")


if __name__ == "__main__":
    sys.exit(main())
