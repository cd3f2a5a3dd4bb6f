"""The ``igmu`` command: categorize, unlearn, evaluate, attack, demo. Thin argparse over the library."""

import argparse
import json
import logging
import os
import sys
from pathlib import Path


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
    p.add_argument("--preserve", type=str, action="append", default=None,
                   help="Prompt to preserve (repeatable). Default: CatIGMU's preserve prompts of the target in its "
                        "concept world for methods whose paper preserves a set (UCE); none for DUO and Dark Miner, "
                        "which then add a preservation term for each given prompt.")
    p.add_argument("--method_kwargs", type=str, default="{}", help="JSON of extra method config fields.")
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
    p.add_argument("--update_model_card", action="store_true",
                   help="Write each unlearned model's results into its README.md metadata (model-index).")

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

    p = sub.add_parser("demo", help="Categorize, unlearn (UCE), evaluate and report on the mini world.")
    p.add_argument("--concept", type=str, default="circle", help="Mini-world concept to erase.")
    p.add_argument("--output_dir", type=str, default="igmu_demo", help="Report folder.")
    p.add_argument("--images_per_prompt", type=int, default=1, help="Images per prompt.")
    p.add_argument("--seed", type=int, default=0, help="Seed.")
    p.add_argument("--overwrite", action="store_true", help="Replace a previous demo in output_dir.")
    return parser


def cmd_categorize(args) -> int:
    from .taxonomy import categorize

    spec = categorize(args.target, category=args.category)
    out = spec.to_dict()
    if args.prompt:
        out["example"] = {"prompt": args.prompt, "do1": spec.do1(args.prompt), "do2": spec.do2(args.prompt)}
    print(json.dumps(out, indent=2))
    return 0


def run_unlearn(method: str, concepts: list[str], output_dir: str, pretrained_model_name_or_path: str | None = None,
                preserve: list[str] | None = None, seed: int = 0, overwrite: bool = False,
                method_kwargs: dict | None = None, domain=None):
    """Library entry of ``igmu unlearn``: returns the saved folder and the UnlearnResult.

    The concept world (``domain``, default: the one the base model lives in) gives the method's preset and
    CatIGMU's preserve prompts; ``preserve`` (``--preserve``) replaces them and reaches every method with a
    preservation field (UCE's c_p, DUO's and Dark Miner's extra preserved conditions).
    """
    from .domains import domain_for_model, get_domain
    from .hub import check_output_dir, load_pipeline, save_unlearned_pipeline
    from .methods import get_method
    from .taxonomy import UnknownTargetError, categorize

    unlearner_cls = get_method(method)
    config_class = unlearner_cls.config_class
    world = get_domain(domain) if domain is not None else domain_for_model(pretrained_model_name_or_path)
    field_name = config_class.preserve_field
    if preserve is not None and field_name is None:
        raise ValueError(f"Method {method!r} has no preservation prompts; drop --preserve.")
    if preserve is None and field_name is not None and config_class.preserve_by_default:
        preserve = []
        for c in concepts:
            try:
                preserve += categorize(c, domain=world).preserve_prompts
            except (UnknownTargetError, ValueError):
                pass
    kwargs = {**world.method_preset(config_class), **(method_kwargs or {})}  # the world's preset, then the user's
    if field_name is not None and preserve is not None:
        kwargs.setdefault(field_name, list(dict.fromkeys(preserve)))
    config = config_class.from_dict({"concepts": concepts, "seed": seed, **kwargs})
    check_output_dir(output_dir, config.config_hash(), overwrite)  # fail before any work
    base = pretrained_model_name_or_path or world.default_pretrained_model_name_or_path()
    pipe = load_pipeline(base)
    result = unlearner_cls(config, **unlearner_cls.domain_kwargs(world)).unlearn(pipe)
    result.extra["domain"] = world.name
    folder = save_unlearned_pipeline(result, output_dir, base_model=base, overwrite=overwrite)
    return folder, result


def cmd_unlearn(args) -> int:
    folder, result = run_unlearn(args.method, args.concept, args.output_dir, args.pretrained_model_name_or_path,
                                 args.preserve, args.seed, args.overwrite, json.loads(args.method_kwargs))
    print(f"Saved {args.method} unlearning of {args.concept} to {folder} "
          f"({result.edited_parameter_count} parameters edited in {result.runtime_seconds:.2f} s).")
    if args.push_to_hub:
        from .hub import push_folder_to_hub

        push_folder_to_hub(folder, args.hub_model_id)
    return 0


def run_evaluate(unlearned: list[str], output_dir: str, original: str | None = None, task: str | None = None,
                 images_per_prompt: int = 1, seed: int = 0, progress: bool = True, attack: str | None = None,
                 attack_kwargs: dict | None = None, update_model_card: bool = False, **config_kwargs) -> dict:
    """Library entry of ``igmu evaluate``: EvalIGMU of the original and each unlearned pipeline; writes the report
    folder (``report.json``, ``report.md``, grids, radar chart, ``model_index/``) and returns the report.

    ``config_kwargs`` are further :class:`~igmu_hf.evaluator.EvalIGMUConfig` fields (``num_prompts``, ``metrics``,
    ``forget_prompts``, ``multclf`` ...). With ``attack``, every model (the original too) is attacked on the forget
    prompts and its ASR is the robustness aspect; outcomes go to ``output_dir/attacks/<model>``. With
    ``update_model_card``, each unlearned folder's model card gets its ``model-index`` results.
    """
    from .evaluator import EvalIGMU, EvalIGMUConfig
    from .hub import default_pretrained_model_name_or_path, load_pipeline

    runs = [_run_info(folder) for folder in unlearned]
    if task is None:
        concepts = {c for r in runs for c in r.get("concepts", [])}
        if len(concepts) != 1:
            raise ValueError(f"Pass --task: the unlearned runs name {sorted(concepts) or 'no'} concept(s).")
        task = concepts.pop()
    if original is None:
        bases = {r.get("base_model") for r in runs if r.get("base_model")}
        original = bases.pop() if len(bases) == 1 else default_pretrained_model_name_or_path()
    from .domains import domain_for_model

    config_kwargs.setdefault("domain", domain_for_model(original).name)
    config = EvalIGMUConfig(task=task, images_per_prompt=images_per_prompt, seed=seed, attack=attack,
                            attack_kwargs=dict(attack_kwargs or {}), **config_kwargs)
    evaluator = EvalIGMU(config)  # checks the task and prompts before loading any pipeline
    pipes, run_infos, folders = {"original": load_pipeline(original)}, {}, {}
    for folder, run in zip(unlearned, runs):
        name = run.get("method", Path(folder).name)
        name = name if name not in pipes else Path(folder).name
        pipes[name], run_infos[name], folders[name] = load_pipeline(folder), run, folder
    report = evaluator.run(pipes, output_dir, runs=run_infos, progress=progress)
    if update_model_card:
        from accelerate import PartialState

        from .hub import add_model_index
        from .report import model_index

        if PartialState().is_main_process:
            for name, folder in folders.items():
                add_model_index(folder, model_index(report, name))
    return report


def _write_json(path: Path, data) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def _summary_lines(report: dict) -> list[str]:
    from .report import aspect_scores

    lines = [f"EvalIGMU of {report['task']['target']!r} ({report['task']['category']}); aspects 0..1, higher is better:"]
    for name, scores in aspect_scores(report).items():
        cells = " | ".join(f"{a} {'n/a' if v is None else f'{v:.2f}'}" for a, v in scores.items())
        lines.append(f"  {name:>10}: {cells}")
        rate = report["models"][name]["forgetting"].get("multclf_forgetting_rate", {})
        if "forgetting_rate" in rate:
            lines[-1] += f" (forgetting rate {rate['forgetting_rate']:.2f})"
    return lines


def cmd_evaluate(args) -> int:
    kwargs = {}
    for key in ("forget_prompts", "unrelated_prompts"):
        path = getattr(args, f"{key}_file")
        if path:
            kwargs[key] = _read_prompts(path)
    for key in ("multclf", "clip", "yolo", "fid_feature_extractor"):
        if getattr(args, key):
            kwargs[key] = getattr(args, key)
    if args.metrics:
        kwargs["metrics"] = args.metrics
    report = run_evaluate(args.unlearned, args.output_dir, args.original, args.task, args.images_per_prompt,
                          args.seed, attack=args.attack, attack_kwargs=json.loads(args.attack_kwargs),
                          update_model_card=args.update_model_card, num_prompts=args.num_prompts, **kwargs)
    print("\n".join(_summary_lines(report)))
    print(f"Report: {Path(args.output_dir) / 'report.md'} (numbers: report.json)")
    return 0


def _read_prompts(path: str) -> list[str]:
    prompts = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{path} holds no prompt (one prompt per line).")
    return prompts


def _run_info(folder: str) -> dict:
    from .hub import RUN_FILE

    run_file = Path(folder) / RUN_FILE
    return json.loads(run_file.read_text()) if run_file.exists() else {}


def run_attack(method: str, unlearned: str, output_dir: str, task: str | None = None, original: str | None = None,
               prompts: list[str] | None = None, judge: str | None = None, threshold: float | None = None,
               preset: str | None = None, attack_kwargs: dict | None = None, seed: int = 0, progress: bool = True):
    """Library entry of ``igmu attack``: runs the attack, writes outcomes.jsonl and summary.json, returns the result."""
    from .attacks import get_attack, preset_config
    from .domains import domain_for_model
    from .hub import default_pretrained_model_name_or_path, load_pipeline

    attack_cls = get_attack(method)
    run = _run_info(unlearned)
    if task is None:
        concepts = run.get("concepts", [])
        if len(concepts) != 1:
            raise ValueError(f"Pass --task: the unlearned run names {concepts or 'no'} concept(s).")
        task = concepts[0]
    original = original or run.get("base_model")
    world = domain_for_model(original)
    config = preset_config(attack_cls, preset, world, attack_kwargs, seed)
    the_judge = world.judge(task, judge, threshold)
    unlearned_pipe = load_pipeline(unlearned)
    original_pipe = None
    if attack_cls.needs_original:
        original_pipe = load_pipeline(original or default_pretrained_model_name_or_path())
    return attack_cls(config).run(unlearned_pipe, the_judge, task, prompts=prompts, original=original_pipe,
                                  output_dir=output_dir, progress=progress)


def cmd_attack(args) -> int:
    prompts = _read_prompts(args.prompts_file) if args.prompts_file else None
    result = run_attack(args.method, args.unlearned, args.output_dir, args.task, args.original, prompts, args.judge,
                        args.threshold, args.preset, json.loads(args.attack_kwargs), args.seed)
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
                "demo": cmd_demo}
    try:
        return handlers[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"igmu {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
