"""The library entry points behind ``igmu unlearn / evaluate / attack`` (the CLI, the demo and the examples call
them): each returns what it made and writes its folder."""

import json
import sys
from pathlib import Path


def default_preserve(config_class, concepts: list[str], world) -> list[str] | None:
    """CatIGMU's preserve prompts of ``concepts`` in ``world`` for a method whose paper preserves a set (UCE's c_p);
    None for the others."""
    from .taxonomy import UnknownTargetError, categorize

    if config_class.preserve_field is None or not config_class.preserve_by_default:
        return None
    preserve = []
    for c in concepts:
        try:
            preserve += categorize(c, domain=world).preserve_prompts
        except (UnknownTargetError, ValueError):
            pass
    return list(dict.fromkeys(preserve))


def run_unlearn(method: str, concepts: list[str], output_dir: str, pretrained_model_name_or_path: str | None = None,
                preserve: list[str] | None = None, seed: int = 0, overwrite: bool = False,
                method_kwargs: dict | None = None, domain=None, **scaffold):
    """Library entry of ``igmu unlearn``: returns the saved folder and the UnlearnResult.

    The concept world (``domain``, default: the one the base model lives in) gives the method's preset and
    CatIGMU's preserve prompts; ``preserve`` (``--preserve``) replaces them and reaches every method with a
    preservation field (UCE's c_p, DUO's and Dark Miner's extra preserved conditions). ``scaffold`` goes to
    :func:`unlearn_and_save` (accelerator, data_dir, checkpointing ...).
    """
    from .domains import domain_for_model, get_domain

    world = get_domain(domain) if domain is not None else domain_for_model(pretrained_model_name_or_path)
    config = method_config(method, concepts, world, preserve, seed, method_kwargs)
    return unlearn_and_save(config, output_dir, pretrained_model_name_or_path, domain=world, overwrite=overwrite,
                            **scaffold)


def seed_folders(output_dir: str, seeds: list[int] | None) -> list[tuple[int | None, str]]:
    """Where each training seed's unlearned pipeline goes: ``[(None, output_dir)]`` without ``seeds``, else
    ``output_dir/seed_<s>`` per seed (``igmu unlearn --seeds``, ``train_unlearn.py --seeds``; the benchmark's
    cells use the same names)."""
    if seeds is None:
        return [(None, output_dir)]
    return [(s, str(Path(output_dir) / f"seed_{s}")) for s in seeds]


def method_config(method: str, concepts: list[str], world, preserve: list[str] | None = None, seed: int = 0,
                  method_kwargs: dict | None = None):
    """The config ``igmu unlearn`` runs ``method`` with in concept world ``world``: the world's preset, then
    ``method_kwargs``; CatIGMU's preserve prompts (or ``preserve``) in the method's preservation field."""
    from .methods import get_method

    config_class = get_method(method).config_class
    field_name = config_class.preserve_field
    if preserve is not None and field_name is None:
        raise ValueError(f"Method {method!r} has no preservation prompts; drop --preserve.")
    if preserve is None:
        preserve = default_preserve(config_class, concepts, world)
    kwargs = {**world.method_preset(config_class), **(method_kwargs or {})}  # the world's preset, then the user's
    if field_name is not None and preserve is not None:
        kwargs.setdefault(field_name, list(dict.fromkeys(preserve)))
    return config_class.from_dict({"concepts": concepts, "seed": seed, **kwargs})


def unlearn_and_save(config, output_dir: str, pretrained_model_name_or_path: str | None = None, domain=None,
                     accelerator=None, data_dir: str | None = None, checkpointing_steps: int | None = None,
                     checkpoints_total_limit: int | None = 2, resume_from_checkpoint: str | None = None,
                     overwrite: bool = False, progress: bool = True):
    """Run the method of ``config`` on the base pipeline and save it: ``(folder, UnlearnResult)``, the folder None on
    processes other than the main one. What every entry point shares (``igmu unlearn``, ``train_unlearn.py`` and
    the seed methods' scripts over it, the benchmark).

    A trained method runs on the training scaffold: ``accelerator`` (default: a new ``Accelerator``), checkpoints
    in ``<output_dir>-checkpoints``, and the data it prepares once (DUO's pairs, Dark Miner's pool, FMN's and MACE's
    images) in ``data_dir`` (default ``<output_dir>-<its name>``), built by the processes together and reused.
    """
    from contextlib import nullcontext

    from .domains import domain_for_model, get_domain
    from .hub import check_output_dir
    from .methods import get_method
    from .outputs import folder_lock

    unlearner_cls = get_method(config.method)
    world = get_domain(domain) if domain is not None else domain_for_model(pretrained_model_name_or_path)
    base = pretrained_model_name_or_path or world.default_pretrained_model_name_or_path()
    if unlearner_cls.trained:
        from accelerate import Accelerator

        from .training import warn_single_process_launch

        warn_single_process_launch()
        accelerator = accelerator or Accelerator()
    main = accelerator is None or accelerator.is_main_process
    with folder_lock(output_dir, "unlearn") if main else nullcontext():  # a second run on the folder stops here
        if main:  # fail before any work, under the lock
            from .hub import expected_outputs

            check_output_dir(output_dir, config.config_hash(), overwrite, config=config.to_dict(),
                             outputs=expected_outputs(base))
        if unlearner_cls.trained and resume_from_checkpoint is None and main:
            from .checkpointing import list_checkpoints

            found = list_checkpoints(Path(output_dir).with_name(Path(output_dir).name + "-checkpoints"))
            if found:
                print(f"Note: {found[-1].parent.name}/ holds {found[-1].name} of an earlier run; this run starts over "
                      f"(pass --resume_from_checkpoint latest to continue it).", file=sys.stderr)
        return _unlearn_and_save(unlearner_cls, config, output_dir, base, world, accelerator, data_dir,
                                 checkpointing_steps, checkpoints_total_limit, resume_from_checkpoint, overwrite,
                                 progress)


def _unlearn_and_save(unlearner_cls, config, output_dir, base, world, accelerator, data_dir, checkpointing_steps,
                      checkpoints_total_limit, resume_from_checkpoint, overwrite, progress):
    from .hub import load_pipeline, save_unlearned_pipeline

    kwargs = dict(unlearner_cls.domain_kwargs(world))
    out = Path(output_dir)
    if unlearner_cls.trained:
        pipe = load_pipeline(base).to(accelerator.device)
        pipe.set_progress_bar_config(disable=True)
        unlearner_cls.check_family(pipe)  # refuse before preparing any data
        unlearner_cls.check_texts(pipe, config)
        show = progress and accelerator.is_local_main_process
        if unlearner_cls.prepared_data is not None:
            folder = data_dir or str(out.with_name(f"{out.name}-{unlearner_cls.prepared_data}"))
            kwargs.update(unlearner_cls.prepared_data_kwargs(pipe, config, accelerator, folder, world, show))
        kwargs.update(accelerator=accelerator, output_dir=str(out.with_name(out.name + "-checkpoints")),
                      checkpointing_steps=checkpointing_steps, resume_from_checkpoint=resume_from_checkpoint,
                      checkpoints_total_limit=checkpoints_total_limit, progress=show)
    else:
        pipe = load_pipeline(base)
        if accelerator is not None:
            pipe = pipe.to(accelerator.device)
    result = unlearner_cls(config, **kwargs).unlearn(pipe)
    result.extra["domain"] = world.name
    if accelerator is not None:
        result.extra["num_processes"] = accelerator.num_processes
        accelerator.wait_for_everyone()
        if not accelerator.is_main_process:
            return None, result
    folder = save_unlearned_pipeline(result, output_dir, base_model=base, overwrite=overwrite)
    return folder, result


def run_evaluate(unlearned: list[str], output_dir: str, original: str | None = None, task: str | None = None,
                 images_per_prompt: int = 1, seed: int = 0, progress: bool = True, attack: str | None = None,
                 attack_kwargs: dict | None = None, update_model_card: bool = False, overwrite: bool = False,
                 model_dirs: dict | None = None, **config_kwargs) -> dict:
    """Library entry of ``igmu evaluate``: EvalIGMU of the original and each unlearned pipeline; writes the report
    folder (``report.json``, ``report.md``, grids, radar chart, ``model_index/``) and returns the report.

    ``config_kwargs`` are further :class:`~igmu_hf.evaluator.EvalIGMUConfig` fields (``num_prompts``, ``metrics``,
    ``forget_prompts``, ``multclf`` ...). With ``attack``, every model (the original too) is attacked on the forget
    prompts and its ASR is the robustness aspect; outcomes go to ``output_dir/attacks/<model>``. With
    ``update_model_card``, each unlearned folder's model card gets its ``model-index`` results. A folder holding
    files igmu_hf did not write, or another command's output, is refused unless ``overwrite``
    (:func:`igmu_hf.outputs.output_folder`; a second process on the same folder is refused too). ``model_dirs``
    (model name, e.g. ``"original"`` -> folder) caches that model's images and attack outcomes outside
    ``output_dir`` (:meth:`igmu_hf.evaluator.EvalIGMU.run`).
    """
    from .evaluator import EvalIGMU, EvalIGMUConfig
    from .hub import default_pretrained_model_name_or_path, load_pipeline
    from .outputs import check_writable_dir, output_folder
    from .training import process_state

    check_writable_dir(output_dir)
    runs = [run_info(folder) for folder in unlearned]
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
    evaluator.load_named_detectors()  # a detector the user named loads, or the command stops before any work
    main = process_state().is_main_process
    with output_folder(output_dir, "evaluate", overwrite, main_process=main):
        pipes, run_infos, folders = {"original": load_pipeline(original)}, {}, {}
        for folder, run in zip(unlearned, runs):
            name = run.get("method", Path(folder).name)
            name = name if name not in pipes else Path(folder).name
            pipes[name], run_infos[name], folders[name] = load_pipeline(folder), run, folder
        report = evaluator.run(pipes, output_dir, runs=run_infos, progress=progress, model_dirs=model_dirs)
    if update_model_card and main:
        from .hub import add_model_index
        from .report import model_index

        for name, folder in folders.items():
            add_model_index(folder, model_index(report, name))
    return report


def write_json(path: Path, data) -> None:
    from .atomic import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))


def summary_lines(report: dict) -> list[str]:
    from .report import aspect_scores

    lines = [f"EvalIGMU of {report['task']['target']!r} ({report['task']['category']}); aspects 0..1, higher is better:"]
    for name, scores in aspect_scores(report).items():
        cells = " | ".join(f"{a} {'n/a' if v is None else f'{v:.2f}'}" for a, v in scores.items())
        lines.append(f"  {name:>10}: {cells}")
        rate = report["models"][name]["forgetting"].get("multclf_forgetting_rate", {})
        if "forgetting_rate" in rate:
            from .metrics.intervals import interval_text

            lines[-1] += f" (forgetting rate {interval_text(rate, 'forgetting_rate', '.2f')})"
    return lines


def run_info(folder: str) -> dict:
    """The ``igmu_run.json`` of an unlearned pipeline folder ({} for a Hub id or a folder without one); a path that
    does not exist is refused here, before any work."""
    from .hub import RUN_FILE, check_pipeline_path, looks_like_hub_id

    path = Path(folder)
    if not path.exists():
        if looks_like_hub_id(str(folder)):
            return {}
        raise FileNotFoundError(f"Unlearned pipeline {str(folder)!r} does not exist; pass the folder written by "
                                f"`igmu unlearn --output_dir` (or a Hub id).")
    check_pipeline_path(str(folder))
    run_file = path / RUN_FILE
    if not run_file.exists():
        return {}
    try:
        return json.loads(run_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{str(run_file)!r} is not valid JSON ({err}); re-run `igmu unlearn` into that folder.") \
            from None


def run_attack(method: str, unlearned: str, output_dir: str, task: str | None = None, original: str | None = None,
               prompts: list[str] | None = None, judge: str | None = None, threshold: float | None = None,
               preset: str | None = None, attack_kwargs: dict | None = None, seed: int = 0, progress: bool = True,
               overwrite: bool = False):
    """Library entry of ``igmu attack``: runs the attack, writes outcomes.jsonl and summary.json, returns the result.
    Everything the user named is checked before any pipeline is loaded."""
    from .attacks import get_attack, preset_config
    from .domains import domain_for_model
    from .hub import default_pretrained_model_name_or_path, load_pipeline, resolve_id
    from .outputs import check_writable_dir, output_folder
    from .training import process_state
    from .taxonomy import task_spec

    attack_cls = get_attack(method)
    check_writable_dir(output_dir)
    run = run_info(unlearned)
    if task is None:
        concepts = run.get("concepts", [])
        if len(concepts) != 1:
            raise ValueError(f"Pass --task: the unlearned run names {concepts or 'no'} concept(s).")
        task = concepts[0]
    task_spec(task)  # an unknown task is named as such
    original = resolve_id(original or run.get("base_model"))
    world = domain_for_model(original)
    config = preset_config(attack_cls, preset, world, attack_kwargs, seed)
    the_judge = world.judge(task, judge, threshold)
    with output_folder(output_dir, "attack", overwrite, main_process=process_state().is_main_process):
        unlearned_pipe = load_pipeline(unlearned)
        original_pipe = None
        if attack_cls.needs_original:
            original_pipe = load_pipeline(original or default_pretrained_model_name_or_path())
        return attack_cls(config).run(unlearned_pipe, the_judge, task, prompts=prompts, original=original_pipe,
                                      output_dir=output_dir, progress=progress)


def read_prompts(path: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, one prompt per line; a missing file, a folder, a binary file or an
    empty one is refused naming the file."""
    file = Path(path)
    if not file.exists():
        raise FileNotFoundError(f"Prompts file {str(path)!r} does not exist; pass a text file with one prompt per line.")
    if not file.is_file():
        raise ValueError(f"Prompts file {str(path)!r} is a folder; pass a text file with one prompt per line.")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"Prompts file {str(path)!r} is not UTF-8 text (a binary file?); pass a text file with one "
                         f"prompt per line.") from None
    if "\x00" in text:
        raise ValueError(f"Prompts file {str(path)!r} holds NUL bytes (a binary file?); pass a text file with one "
                         f"prompt per line.")
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    from .validation import check_prompt_list

    check_prompt_list(f"Prompts file {Path(path).name}", prompts)
    if not prompts:
        raise ValueError(f"Prompts file {str(path)!r} holds no prompt (one prompt per line).")
    return prompts
