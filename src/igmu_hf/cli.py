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
                   help="Prompt to preserve (repeatable); default: CatIGMU's preserve prompts for the target.")
    p.add_argument("--method_kwargs", type=str, default="{}", help="JSON of extra method config fields.")
    p.add_argument("--push_to_hub", action="store_true", help="Upload the folder to the Hub after saving.")
    p.add_argument("--hub_model_id", type=str, default=None, help="Hub repo id for --push_to_hub.")

    p = sub.add_parser("evaluate", help="Forgetting rates of original vs unlearned pipelines (JSON report).")
    p.add_argument("--unlearned", type=str, action="append", required=True, help="Unlearned pipeline folder.")
    p.add_argument("--original", type=str, default=None, help="Original pipeline (default: the run's base model).")
    p.add_argument("--concept", type=str, default=None, help="Target (default: read from the unlearned run).")
    p.add_argument("--output_dir", type=str, required=True, help="Where report.json goes.")
    p.add_argument("--images_per_prompt", type=int, default=4, help="Images per prompt (seeds seed..).")
    p.add_argument("--seed", type=int, default=0, help="First generation seed.")
    p.add_argument("--attack", type=str, default=None,
                   help="Also attack every model (e.g. 'unlearndiffatk') and report its ASR as the robustness aspect.")
    p.add_argument("--attack_kwargs", type=str, default="{}", help="JSON of extra attack config fields.")

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
    p.add_argument("--images_per_prompt", type=int, default=4, help="Images per prompt.")
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
                method_kwargs: dict | None = None):
    """Library entry of ``igmu unlearn``: returns the saved folder and the UnlearnResult."""
    from .hub import check_output_dir, default_pretrained_model_name_or_path, load_pipeline, save_unlearned_pipeline
    from .methods import get_method
    from .taxonomy import UnknownTargetError, categorize

    unlearner_cls = get_method(method)
    if preserve is None:
        preserve = []
        for c in concepts:
            try:
                preserve += categorize(c).preserve_prompts
            except (UnknownTargetError, ValueError):
                pass
    kwargs = dict(method_kwargs or {})
    if pretrained_model_name_or_path is None:  # the embedded mini world: the method's preset, then the user's fields
        kwargs = {**unlearner_cls.config_class.mini_preset, **kwargs}
    fields = unlearner_cls.config_class.__dataclass_fields__
    if "preserve_concepts" in fields:
        kwargs.setdefault("preserve_concepts", preserve)
    config = unlearner_cls.config_class.from_dict({"concepts": concepts, "seed": seed, **kwargs})
    check_output_dir(output_dir, config.config_hash(), overwrite)  # fail before any work
    base = pretrained_model_name_or_path or default_pretrained_model_name_or_path()
    pipe = load_pipeline(base)
    result = unlearner_cls(config).unlearn(pipe)
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


def run_evaluate(unlearned: list[str], output_dir: str, original: str | None = None, concept: str | None = None,
                 images_per_prompt: int = 4, seed: int = 0, progress: bool = True, attack: str | None = None,
                 attack_kwargs: dict | None = None) -> dict:
    """Library entry of ``igmu evaluate``: writes ``report.json`` and returns the report.

    With ``attack``, every model (the original too) is also attacked on the target prompts and the report gets a
    ``robustness`` entry per model (ASR, pre-attack ASR, judge); the outcomes go to ``output_dir/attacks/<model>``.
    """
    from .evaluation import evaluate_forgetting
    from .hub import load_pipeline
    from .mini import CLASSIFIER_PATH
    from .mini.classifier import MiniClassifier

    runs = [_run_info(folder) for folder in unlearned]
    if concept is None:
        concepts = {c for r in runs for c in r.get("concepts", [])}
        if len(concepts) != 1:
            raise ValueError(f"Pass --concept: the unlearned runs name {sorted(concepts) or 'no'} concept(s).")
        concept = concepts.pop()
    if original is None:
        bases = {r.get("base_model") for r in runs if r.get("base_model")}
        original = bases.pop() if len(bases) == 1 else None
    pipes = {"original": load_pipeline(original)}
    for folder, run in zip(unlearned, runs):
        name = run.get("method", Path(folder).name)
        pipes[name if name not in pipes else Path(folder).name] = load_pipeline(folder)
    classifier = MiniClassifier.from_pretrained(CLASSIFIER_PATH)
    report = evaluate_forgetting(pipes, concept, classifier, images_per_prompt=images_per_prompt, seed=seed,
                                 progress=progress)
    report["runs"] = {name: run for name, run in zip(list(pipes)[1:], runs)}
    out = Path(output_dir)
    if attack:
        from .attacks import get_attack
        from .judges import judge_for_task

        attack_cls = get_attack(attack)
        config = _attack_config(attack_cls, None, _is_mini(original), attack_kwargs, seed)
        judge = judge_for_task(concept)
        for name, pipe in pipes.items():
            result = attack_cls(config).run(pipe, judge, concept, prompts=report["prompts"]["target_prompts"],
                                            original=pipes["original"], output_dir=str(out / "attacks" / name),
                                            progress=progress)
            report["models"][name]["robustness"] = {
                "attack": attack, "asr": result.asr, "pre_attack_asr": result.pre_attack_asr,
                "num_prompts": result.summary["num_prompts"], "judge": result.judge,
                "config_hash": result.summary["config_hash"], "outcomes": str(out / "attacks" / name)}
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "report.json", report)
    return report


def _is_mini(original: str | None) -> bool:
    from .hub import default_pretrained_model_name_or_path

    return original is None or Path(original).resolve() == Path(default_pretrained_model_name_or_path()).resolve()


def _attack_config(attack_cls, preset: str | None, mini: bool, attack_kwargs: dict | None, seed: int):
    """The attack's config: the fast preset on the mini world (or when asked), the papers' budgets otherwise."""
    preset = preset or ("fast" if mini else "paper")
    fields = {**(attack_cls.config_class.fast_preset if preset == "fast" else {}), **(attack_kwargs or {}),
              "seed": seed}
    return attack_cls.config_class.from_dict(fields)


def _write_json(path: Path, data) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def _summary_lines(report: dict) -> list[str]:
    lines = [f"target {report['target']!r} ({report['factor']}): forgetting rate = share of images still showing it"]
    for name, m in report["models"].items():
        own = ", ".join(f"{k} {v['own_rate']:.2f}" for k, v in m["unrelated"].items())
        line = f"  {name:>10}: target {m['forgetting_rate']:.2f} | unrelated (own concept kept): {own}"
        if "robustness" in m:
            r = m["robustness"]
            line += f" | {r['attack']} ASR {r['asr']:.2f} (no attack {r['pre_attack_asr']:.2f})"
        lines.append(line)
    return lines


def cmd_evaluate(args) -> int:
    report = run_evaluate(args.unlearned, args.output_dir, args.original, args.concept, args.images_per_prompt,
                          args.seed, attack=args.attack, attack_kwargs=json.loads(args.attack_kwargs))
    print("\n".join(_summary_lines(report)))
    print(f"Report: {Path(args.output_dir) / 'report.json'}")
    return 0


def _run_info(folder: str) -> dict:
    from .hub import RUN_FILE

    run_file = Path(folder) / RUN_FILE
    return json.loads(run_file.read_text()) if run_file.exists() else {}


def run_attack(method: str, unlearned: str, output_dir: str, task: str | None = None, original: str | None = None,
               prompts: list[str] | None = None, judge: str | None = None, threshold: float | None = None,
               preset: str | None = None, attack_kwargs: dict | None = None, seed: int = 0, progress: bool = True):
    """Library entry of ``igmu attack``: runs the attack, writes outcomes.jsonl and summary.json, returns the result."""
    from .attacks import get_attack
    from .hub import default_pretrained_model_name_or_path, load_pipeline
    from .judges import judge_for_task

    attack_cls = get_attack(method)
    run = _run_info(unlearned)
    if task is None:
        concepts = run.get("concepts", [])
        if len(concepts) != 1:
            raise ValueError(f"Pass --task: the unlearned run names {concepts or 'no'} concept(s).")
        task = concepts[0]
    original = original or run.get("base_model")
    config = _attack_config(attack_cls, preset, _is_mini(original), attack_kwargs, seed)
    the_judge = judge_for_task(task, judge, threshold)
    unlearned_pipe = load_pipeline(unlearned)
    original_pipe = None
    if attack_cls.needs_original:
        original_pipe = load_pipeline(original or default_pretrained_model_name_or_path())
    return attack_cls(config).run(unlearned_pipe, the_judge, task, prompts=prompts, original=original_pipe,
                                  output_dir=output_dir, progress=progress)


def cmd_attack(args) -> int:
    prompts = None
    if args.prompts_file:
        prompts = [line.strip() for line in Path(args.prompts_file).read_text().splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"--prompts_file {args.prompts_file} holds no prompt.")
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
