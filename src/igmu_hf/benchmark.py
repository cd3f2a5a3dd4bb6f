"""``igmu benchmark``: the IGMU paper's re-evaluation (seed 000 §6, Fig. 8, Table 8) as one resumable command.

    igmu benchmark --methods all --tasks circle sketch striped --output_dir B --budget fast --attack unlearndiffatk

Every (task, method) *cell* unlearns the task with the method (``igmu unlearn``'s config: the concept world's preset,
then the budget's and the user's overrides) and evaluates it with EvalIGMU against the original model (``igmu
evaluate``'s report), so a cell's figures are those of running the two commands by hand with the same seeds. The
original's images (and attack outcomes) are generated once per task and shared by the task's cells. Then one report
is written over all cells: a leaderboard per task, a radar chart per method (Fig. 8: one outline per task), an
efficiency table (Table 8), image grids of the same seeds across methods, the Pareto front of forgetting,
preservation and robustness, and whether any method is balanced, all computed from the cells' numbers.

Every figure carries its count and 95 % interval; with ``seeds`` each method unlearns once per training seed (one
cell each, ``cells/<task>/<method>/seed_<s>/``) and the figures pool the seeds (:mod:`igmu_hf.benchmark_stats`);
the fronts, the balanced verdict and the ranks carry the share of bootstrap resamples in which they hold.

Layout of ``output_dir``::

    benchmark.json                 the config, its hash and library versions
    cells/<task>/<method>/         cell.json (status, fingerprint, timings), model/ (the unlearned pipeline, its
                                   card carries the cell's model-index), eval/ (the EvalIGMU report and images);
                                   with --seeds, one such folder per seed: cells/<task>/<method>/seed_<s>/
    shared/<task>/<hash>/original/ the original's images and attack outcomes for the task (per evaluation config)
    report.json, report.md, index.html, leaderboard_<task>.md, radar_<method>.png, grid_<task>.png,
    errorbars_<task>.png

Resumable at three levels: a finished cell (same fingerprint) is reused, a trained method resumes from its
checkpoints, an evaluation from its cached images. A finished cell whose config changed is refused unless ``redo``
names it. Under ``accelerate launch`` / ``torchrun`` the processes share every cell's work (trained methods train
data-parallel, generation and scoring are split in fixed chunks).
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .atomic import atomic_path, write_text_atomic
from .config import ConfigBase
from .hub import portable_id
from .metrics.intervals import required_sample_size


logger = logging.getLogger(__name__)

DEFAULT_TASKS = ("circle", "sketch", "striped")  # a shape, a style and a texture of the mini world
CELL_FILE = "cell.json"
# what refuses a (method, task) cell as not applicable: recorded as the cell's reason, the matrix goes on
_REFUSALS = (ValueError, NotImplementedError)

# Sample size of the `preset` budget, chosen by power (benchmarks/sample_size.py writes the table): images per
# prompt set that tell apart two methods whose forgetting rates differ by PRESET_RESOLUTION near 0.1 (where methods
# that work are compared), with power 0.8 at the 5 % level (a two-sided test of two independent proportions; the
# paired seeds only help). Near 0.5 the same images resolve about 0.18 (the report says so); 0.15 there would take
# 170 images per set, about twice the generation time.
PRESET_RESOLUTION = 0.15
PRESET_IMAGES = required_sample_size(0.1, 0.1 + PRESET_RESOLUTION)  # 97
PRESET_PROMPTS = 24  # the mini world's prompt lists cycle; each prompt is drawn with several seeds

# Budgets: overrides on top of the concept world's method presets. "preset" runs each method at its world preset
# (the mini presets, or the papers' settings on real models) and evaluates on enough images to resolve
# PRESET_RESOLUTION; "fast" cuts every trained method's steps about 4x and evaluates on 4 prompts, so the whole mini
# matrix fits a CPU budget: it shows the pipeline and the study's shape, and its report says how coarse it is.
# ``attack_num_prompts``: the attack runs on the first forget prompts only (each attacked prompt costs an optimisation).
BUDGETS: dict[str, dict[str, Any]] = {
    "preset": {"num_prompts": PRESET_PROMPTS, "images_per_prompt": math.ceil(PRESET_IMAGES / PRESET_PROMPTS),
               "attack_num_prompts": 8, "method_kwargs": {}},
    "fast": {"num_prompts": 4, "images_per_prompt": 1, "attack_num_prompts": None, "method_kwargs": {
        "advunlearn": {"iterations": 40, "warmup_iterations": 10},
        "ca": {"max_train_steps": 100},
        "darkminer": {"mining_epochs": 40, "mining_decay_epoch": 30, "circumvent_epochs": 40,
                      "circumvent_decay_epoch": 30, "max_loops": 1},
        "doco": {"max_train_steps": 200, "warm_up": 100},  # the preset's warm-up share (half) kept
        "duo": {"max_train_steps": 150},
        "esd": {"iterations": 100},
        "receler": {"iterations": 40},
        "salun": {"num_train_epochs": 3},
        "spm": {"iterations": 80},
    }},
}


@dataclass
class BenchmarkConfig(ConfigBase):
    """What ``igmu benchmark`` runs: methods × tasks, the budget, the evaluation and attack settings."""

    identity_keys: ClassVar[tuple[str, ...]] = ()
    methods: list[str] = field(default_factory=list, metadata={"help": "Registered methods (empty or ['all']: every "
                                                                       "registered method)."})
    tasks: list[str] = field(default_factory=lambda: list(DEFAULT_TASKS),
                             metadata={"help": "CatIGMU targets, one unlearning task each (default: circle, sketch, "
                                               "striped: a shape, a style and a texture of the mini world)."})
    pretrained_model_name_or_path: str | None = field(default=None, metadata={
        "help": "Original pipeline (default: the embedded mini world)."})
    budget: str = field(default="preset", metadata={"help": f"Method steps and prompt count: {', '.join(BUDGETS)}."})
    num_prompts: int | None = field(default=None, metadata={"help": "Prompts per set (default: the budget's)."})
    images_per_prompt: int | None = field(default=None, metadata={"help": "Images per prompt, paired seeds "
                                                                          "(default: the budget's)."})
    attack_num_prompts: int | None = field(default=None, metadata={"help": "Forget prompts the attack runs on "
                                                                           "(default: the budget's; None: all)."})
    seed: int = field(default=0, metadata={"help": "Generation seed (images are paired across methods and training "
                                                   "seeds), and the training seed when `seeds` is not given."})
    seeds: list[int] | None = field(default=None, metadata={"help": "Training seeds: each method unlearns once per "
                                                                    "seed; figures pool them (default: [seed])."})
    bootstrap_resamples: int = field(default=1000, metadata={"help": "Resamples behind the verdicts' confidence "
                                                                     "(Pareto front, balanced, rank)."})
    attack: str | None = field(default=None, metadata={"help": "Attack for the robustness aspect, e.g. "
                                                               "'unlearndiffatk' (None: robustness is not measured)."})
    attack_kwargs: dict = field(default_factory=dict)
    method_kwargs: dict = field(default_factory=dict, metadata={"help": "{method: {field: value}} over the budget."})
    metrics: list[str] = field(default_factory=list, metadata={"help": "Metric groups (empty: every registered one)."})
    balanced_threshold: float = field(default=0.5, metadata={"help": "A method is balanced when every measured aspect "
                                                                     "score (0..1) is at least this on every task."})

    def __post_init__(self):
        super().__post_init__()
        from .methods import get_method, list_methods
        from .taxonomy import task_spec

        if isinstance(self.methods, str):
            self.methods = [m for m in self.methods.split(",") if m]
        if not self.methods or self.methods == ["all"]:
            self.methods = list_methods()
        for m in self.methods:
            get_method(m)  # an unknown method is named with the list
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"`methods` names a method twice: {self.methods}.")
        if not self.tasks:
            raise ValueError("`tasks` is empty; name at least one CatIGMU target, e.g. circle.")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"`tasks` names a task twice: {self.tasks}.")
        for t in self.tasks:
            task_spec(t)  # an unknown target is named as such
        if self.budget not in BUDGETS:
            raise ValueError(f"Unknown budget {self.budget!r}; budgets: {', '.join(BUDGETS)}.")
        stray = sorted(set(self.method_kwargs) - set(self.methods))
        if stray:
            raise ValueError(f"`method_kwargs` names {stray}, which `methods` does not run; methods: {self.methods}.")
        if any(not isinstance(v, dict) for v in self.method_kwargs.values()):
            raise ValueError("`method_kwargs` must map each method to a dict of its config fields, e.g. "
                             '{"esd": {"iterations": 100}}.')
        if self.attack is not None:
            from .attacks import get_attack

            get_attack(self.attack)
        budget = BUDGETS[self.budget]
        if self.num_prompts is None:
            self.num_prompts = budget["num_prompts"]
        if self.images_per_prompt is None:
            self.images_per_prompt = budget["images_per_prompt"]
        if self.attack_num_prompts is None:
            self.attack_num_prompts = budget["attack_num_prompts"]
        if isinstance(self.seeds, str):
            self.seeds = [int(x) for x in self.seeds.split(",") if x.strip()]
        if self.seeds is not None:
            if not self.seeds:
                raise ValueError("`seeds` is empty; name at least one training seed, e.g. --seeds 0,1.")
            if len(set(self.seeds)) != len(self.seeds):
                raise ValueError(f"`seeds` names a seed twice: {self.seeds}.")
            from .validation import MAX_SEED, check_number

            for s in self.seeds:
                check_number("seeds", s, 0, MAX_SEED, integer=True)
        if self.bootstrap_resamples < 100:
            raise ValueError(f"`bootstrap_resamples` must be at least 100 (got {self.bootstrap_resamples}); the "
                             f"verdicts' shares would move in steps of 1 %+.")

    @property
    def training_seeds(self) -> list[int]:
        """The seeds each method unlearns with (``seeds``, or just ``seed``)."""
        return list(self.seeds) if self.seeds is not None else [self.seed]

    def public_dict(self) -> dict:
        """``to_dict()`` with the original model named without an absolute local path (reports are shared)."""
        d = self.to_dict()
        if d["pretrained_model_name_or_path"]:
            d["pretrained_model_name_or_path"] = portable_id(d["pretrained_model_name_or_path"])
        return d

    def overrides(self, method: str) -> dict:
        """The config fields of ``method`` over its world preset: the budget's, then the user's."""
        return {**BUDGETS[self.budget]["method_kwargs"].get(method, {}), **self.method_kwargs.get(method, {})}

    def evaluate_kwargs(self) -> dict:
        """The EvalIGMU arguments every cell evaluates with (``api.run_evaluate``)."""
        kwargs = {"images_per_prompt": self.images_per_prompt, "seed": self.seed, "attack": self.attack,
                  "attack_kwargs": dict(self.attack_kwargs), "num_prompts": self.num_prompts}
        if self.attack is not None and self.attack_num_prompts is not None:
            kwargs["attack_num_prompts"] = self.attack_num_prompts
        if self.metrics:
            kwargs["metrics"] = list(self.metrics)
        return kwargs


@dataclass
class Cell:
    """One (task, method) unlearning and its evaluation; ``seed`` is set when the benchmark runs several training
    seeds (one folder per seed under the method's)."""

    task: str
    method: str
    seed: int | None = None

    @property
    def name(self) -> str:
        return f"{self.task}/{self.method}" + ("" if self.seed is None else f"/seed_{self.seed}")

    def folder(self, root: Path) -> Path:
        from .api import seed_folders

        base = root / "cells" / _slug(self.task) / self.method
        return Path(seed_folders(str(base), None if self.seed is None else [self.seed])[0][1])


def benchmark_cells(config: "BenchmarkConfig") -> list[Cell]:
    """Every cell of the matrix: tasks × methods (× training seeds when ``seeds`` is given)."""
    seeds = [None] if config.seeds is None else config.seeds
    return [Cell(t, m, s) for t in config.tasks for m in config.methods for s in seeds]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text.strip())


def parse_redo(redo: list[str] | None, config: BenchmarkConfig) -> set[str]:
    """``--redo`` items (``TASK/METHOD``, ``TASK``, ``METHOD`` or ``all``) as the set of cell names they cover."""
    cells = {c.name for c in benchmark_cells(config)}
    out = set()
    for item in redo or []:
        if item == "all":
            out |= cells
            continue
        hit = {c for c in cells if c == item or c.startswith(item + "/") or c.split("/")[0] == item
               or c.split("/")[1] == item}
        if not hit:
            raise ValueError(f"`--redo {item}` names no cell of this benchmark; cells are TASK/METHOD, e.g. "
                             f"{sorted(cells)[0]}, or a task, a method, or all.")
        out |= hit
    return out


class Benchmark:
    """Runs the matrix; see the module docstring. ``Benchmark(config).run(output_dir)`` returns the summary."""

    def __init__(self, config: BenchmarkConfig):
        from .domains import domain_for_model
        from .evaluator import EvalIGMU, EvalIGMUConfig

        self.config = config
        self.world = domain_for_model(config.pretrained_model_name_or_path)
        self.base = config.pretrained_model_name_or_path or self.world.default_pretrained_model_name_or_path()
        self.cells = benchmark_cells(config)
        self.method_configs: dict[str, Any] = {}
        self.refused: dict[str, str] = {}
        from .api import method_config

        for cell in self.cells:  # every config is built (and checked) before any work
            try:
                self.method_configs[cell.name] = method_config(cell.method, [cell.task], self.world,
                                                               method_kwargs=config.overrides(cell.method),
                                                               seed=config.seed if cell.seed is None else cell.seed)
            except _REFUSALS as err:
                if cell.method in config.method_kwargs:  # the user's own fields: their error, said at once
                    raise
                self.refused[cell.name] = f"{type(err).__name__}: {err}"
        eval_kwargs = config.evaluate_kwargs()
        self.eval_configs = {t: EvalIGMUConfig(task=t, domain=self.world.name, **eval_kwargs) for t in config.tasks}
        for eval_config in self.eval_configs.values():  # prompts, detectors and attack of every task, before any work
            EvalIGMU(eval_config)

    def fingerprint(self, cell: Cell) -> str:
        """What decides a cell's figures: the method's config, the evaluation's config and the original model."""
        import hashlib

        method = self.method_configs.get(cell.name)
        parts = {"method": method.to_dict() if method is not None else self.refused.get(cell.name),
                 "evaluate": self.eval_configs[cell.task].to_dict(), "base": portable_id(self.base)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ the run
    def run(self, output_dir: str | os.PathLike, redo: list[str] | None = None, overwrite: bool = False,
            progress: bool = True) -> dict:
        from .outputs import check_writable_dir, output_folder
        from .training import process_state

        out = check_writable_dir(output_dir)
        redo_cells = parse_redo(redo, self.config)
        state = process_state()
        with output_folder(out, "benchmark", overwrite, main_process=state.is_main_process):
            stale = [c.name for c in self.cells if c.name not in redo_cells and _cell_record(c.folder(out))
                     .get("fingerprint") not in (None, self.fingerprint(c))]
            if stale:  # every process reads the same records; refused before any work
                raise ValueError(f"Cell(s) {stale} of {out.name!r} were run with another config (method, evaluation "
                                 f"or original model); pass --redo {stale[0]} (or a task, a method, all) to run them "
                                 f"again, or use another output_dir.")
            state.wait_for_everyone()
            if state.is_main_process:
                from .methods import library_versions

                write_text_atomic(out / "benchmark.json", json.dumps({
                    "config": self.config.public_dict(), "config_hash": self.config.config_hash(),
                    "base_model": portable_id(self.base), "domain": self.world.name,
                    "library_versions": library_versions()}, indent=2, sort_keys=True, default=str))
            start = time.perf_counter()
            records = {}
            for k, cell in enumerate(self.cells):
                if progress and state.is_main_process:
                    print(f"[{k + 1}/{len(self.cells)}] {cell.name}", flush=True)
                records[cell.name] = self._cell(cell, out, cell.name in redo_cells, state, progress)
            summary = None
            if state.is_main_process:
                summary = summarize(self.config, records, out, time.perf_counter() - start)
                write_benchmark_report(summary, out)
            state.wait_for_everyone()
        return summary

    def _cell(self, cell: Cell, out: Path, redo: bool, state, progress: bool) -> dict:
        folder = cell.folder(out)
        fingerprint = self.fingerprint(cell)
        record = _cell_record(folder)
        state.wait_for_everyone()  # every process has read the record before the main one changes anything
        if not redo and record.get("fingerprint") == fingerprint and record.get("status") in ("done", "n/a"):
            return record
        if redo and state.is_main_process and folder.exists():
            shutil.rmtree(folder)  # its model, checkpoints, prepared data and evaluation
        state.wait_for_everyone()
        if cell.name in self.refused:
            return self._write_cell(folder, state, {"status": "n/a", "reason": self.refused[cell.name]},
                                    cell, fingerprint)
        try:
            model_dir, unlearn_seconds = self._unlearn(cell, folder, state, progress)
        except _REFUSALS as err:  # FamilyNotSupportedError is a ValueError: refused on this family
            logger.warning("%s is not applicable: %s", cell.name, err)
            return self._write_cell(folder, state, {"status": "n/a", "reason": f"{type(err).__name__}: {err}"},
                                    cell, fingerprint)
        from .api import run_evaluate

        # the original's images and attack outcomes, shared by the cells evaluated with the same settings
        original_dir = Path("shared") / _slug(cell.task) / self.eval_configs[cell.task].config_hash() / "original"
        report = run_evaluate([str(model_dir)], str(folder / "eval"), original=self.base, task=cell.task,
                              progress=progress, update_model_card=True, domain=self.world.name,
                              model_dirs={"original": out / original_dir}, **self.config.evaluate_kwargs())
        timing = report["timing"]
        scoring = max(0.0, timing["total_seconds"] - timing["generation_seconds"] - timing["attack_seconds"])
        return self._write_cell(folder, state, {
            "status": "done", "method_config_hash": self.method_configs[cell.name].config_hash(),
            "original_dir": original_dir.as_posix(),
            "timing": {"unlearning_seconds": unlearn_seconds, "generation_seconds": timing["generation_seconds"],
                       "scoring_seconds": scoring, "attack_seconds": timing["attack_seconds"]}}, cell, fingerprint)

    def _unlearn(self, cell: Cell, folder: Path, state, progress: bool) -> tuple[Path, float]:
        """The cell's unlearned pipeline folder (reused when it holds this config's run) and the wall seconds spent."""
        from .api import unlearn_and_save
        from .hub import RUN_FILE
        from .methods import get_method

        config = self.method_configs[cell.name]
        model_dir = folder / "model"
        run_file = model_dir / RUN_FILE
        done = run_file.exists() and json.loads(run_file.read_text()).get("config_hash") == config.config_hash()
        state.wait_for_everyone()
        if done:
            return model_dir, 0.0
        start = time.perf_counter()
        # every process runs the method (a trained one data-parallel on a fresh Accelerator, a closed-form one on its
        # own device); the main process saves, and the others wait for it here
        accelerator = None if get_method(cell.method).trained or state.num_processes == 1 else state
        unlearn_and_save(config, str(model_dir), self.base, domain=self.world, accelerator=accelerator,
                         overwrite=True, progress=progress)
        state.wait_for_everyone()
        return model_dir, time.perf_counter() - start

    def _write_cell(self, folder: Path, state, record: dict, cell: Cell, fingerprint: str) -> dict:
        record = {"task": cell.task, "method": cell.method, "fingerprint": fingerprint, **record}
        if state.is_main_process:
            folder.mkdir(parents=True, exist_ok=True)
            write_text_atomic(folder / CELL_FILE, json.dumps(record, indent=2, sort_keys=True))
        state.wait_for_everyone()
        return record


def _cell_record(folder: Path) -> dict:
    path = folder / CELL_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}  # a torn record: the cell runs again (its model and images are reused where they match)


# ---------------------------------------------------------------------- the summary (computed from the cells)
LEADERBOARD = (  # (header, aspect, metric key, value key, format)
    ("forgetting rate ↓", "forgetting", "multclf_forgetting_rate", "forgetting_rate", ".2f"),
    ("CSDR % ↓", "preservation", "csdr", "csdr", ".1f"),
    ("LPIPS do-1 ↓", "preservation", "lpips_do1", "lpips", ".3f"),
    ("FID ↓", "quality", "fid", "fid", ".2f"),
    ("CLIP score ↑", "quality", "clip_score_unrelated", "clip_score", ".2f"),
    ("ASR ↓", "robustness", "attack_success_rate", "asr", ".2f"),
    ("runtime s", "efficiency", "run", "runtime_seconds", ".1f"),
    ("edited share", "efficiency", "run", "edited_parameter_share", ".2e"),
    ("multi-concept", "efficiency", "run", "multi_concept", ""),
)
OBJECTIVES = ("forgetting", "preservation", "robustness")
_HEADER_OF = {key: h for h, _, key, _, _ in LEADERBOARD if key != "run"} | {"run": "edited share"}


def _metric(model: dict, aspect: str, key: str, value: str):
    entry = model.get(aspect, {}).get(key)
    if not isinstance(entry, dict):
        return None
    if "skipped" in entry:
        return {"skipped": entry["skipped"]}
    return entry.get(value)


def pareto_front(points: dict[str, dict[str, float | None]], objectives: tuple[str, ...] = OBJECTIVES
                 ) -> tuple[list[str], list[str]]:
    """The names on the Pareto front (higher is better on every objective) and the objectives used: an objective
    that some point lacks (``None``) is left out for all, so every point is compared on the same axes."""
    used = [o for o in objectives if points and all(p.get(o) is not None for p in points.values())]
    front = []
    for name, p in points.items():
        dominated = any(all(q[o] >= p[o] for o in used) and any(q[o] > p[o] for o in used)
                        for other, q in points.items() if other != name)
        if not dominated:
            front.append(name)
    return front, used


def _task_reports(config: BenchmarkConfig, records: dict[str, dict], out: Path, task: str, method: str
                  ) -> tuple[list[tuple[int | None, dict, dict]], str | None]:
    """``[(training seed, cell record, EvalIGMU report)]`` of one (task, method) over its seeds, or the reason it did
    not run (a seed that did not run makes the method's row a reason, never a partial pool)."""
    found = []
    for cell in (c for c in benchmark_cells(config) if c.task == task and c.method == method):
        rec = records[cell.name]
        if rec["status"] != "done":
            return [], rec.get("reason", rec["status"])
        report = json.loads((cell.folder(out) / "eval" / "report.json").read_text())
        found.append((cell.seed, rec, report))
    return found, None


def summarize(config: BenchmarkConfig, records: dict[str, dict], out: Path, wall_seconds: float) -> dict:
    """Everything the report shows, computed from the cells' records and EvalIGMU reports: each figure pooled over
    the training seeds with its interval, per-seed figures, and the verdicts with the share of bootstrap resamples
    in which they hold (:mod:`igmu_hf.benchmark_stats`)."""
    from .benchmark_stats import ASPECT_METRICS, pooled_figure, task_resamples, verdict_confidence
    from .methods import get_method, library_versions
    from .metrics.intervals import detectable_difference
    from .report import aspects_from_values

    import numpy as np

    tasks: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    timing = {"unlearning_seconds": 0.0, "generation_seconds": 0.0, "scoring_seconds": 0.0, "attack_seconds": 0.0}
    runs: dict[str, list[dict]] = {m: [] for m in config.methods}
    resampled: dict[str, dict] = {}
    rng = np.random.default_rng(config.seed)
    for task in config.tasks:
        rows, aspects, reasons, original, ref_items = {}, {}, {}, None, {}
        items: dict[str, dict[str, list[dict]]] = {}
        fixed: dict[str, dict[str, list[float]]] = {}
        for method in config.methods:
            found, reason = _task_reports(config, records, out, task, method)
            if reason is not None:
                reasons[method] = reason
                continue
            models = []
            for seed, rec, report in found:
                name = next(n for n in report["models"] if n != report["original"])
                models.append(report["models"][name])
                runs[method].append(report["runs"].get(name, {}))
                for k in timing:
                    timing[k] += rec["timing"][k]
            seed0, rec0, report0 = found[0]
            if original is None:
                ref = report0["models"][report0["original"]]
                original = {h: None if a == "efficiency" else _metric(ref, a, k, v)  # nothing was unlearned
                            for h, a, k, v, _ in LEADERBOARD}
                original["intervals"] = {h: _interval_of(ref.get(a, {}).get(k)) for h, a, k, v, _ in LEADERBOARD
                                         if a != "efficiency"}
                ref_items = {k: (ref.get(a, {}).get(k) or {}).get("per_item") or {}
                             for k, (a, _) in ASPECT_METRICS.items()}
                provenance[task] = {"detectors": report0["detectors"], "generation": report0["generation"],
                                    "evaluate_config": report0["config"],
                                    "evaluate_config_hash": report0["config_hash"], "prompts": report0["prompts"],
                                    "original_dir": rec0["original_dir"],
                                    "num_images": ref.get("num_images", {})}
            row: dict[str, Any] = {"intervals": {}, "per_seed": {}}
            for h, a, k, v, _ in LEADERBOARD:
                if h == "multi-concept":
                    row[h] = _metric(models[0], a, k, v)
                    continue
                fig = pooled_figure([m.get(a, {}).get(k) for m in models], v, seed=config.seed,
                                    has_interval=not (k == "run" and v != "edited_parameter_share"))
                row[h] = None if fig is None else fig if "skipped" in fig else fig["value"]
                if fig is not None and "skipped" not in fig:
                    row["intervals"][h] = {x: fig[x] for x in ("low", "high", "n", "seeds", "interval") if x in fig}
            for (seed, _, _), m in zip(found, models):
                row["per_seed"][str(config.seed if seed is None else seed)] = {
                    h: _metric(m, a, k, v) for h, a, k, v, _ in LEADERBOARD if h != "multi-concept"}
            rows[method] = row
            pooled_values = {key: row.get(_HEADER_OF[key]) if isinstance(row.get(_HEADER_OF[key]), (int, float))
                             else None for key in ASPECT_METRICS if key in _HEADER_OF}
            ref_cs = original.get("CLIP score ↑") if isinstance(original.get("CLIP score ↑"), (int, float)) else None
            aspects[method] = aspects_from_values(pooled_values, ref_cs)
            items[method] = {key: [(m.get(a, {}).get(key) or {}).get("per_item") for m in models]
                             for key, (a, _) in ASPECT_METRICS.items()}
            items[method] = {key: v for key, v in items[method].items() if all(isinstance(x, dict) and x for x in v)}
            share = [_metric(m, "efficiency", "run", "edited_parameter_share") for m in models]
            if all(isinstance(x, (int, float)) for x in share):
                fixed[method] = {"run": share}
            relative = Cell(task, method).folder(Path()).as_posix()
            row["cell"] = {"fingerprint": rec0["fingerprint"], "method_config_hash": rec0["method_config_hash"],
                           "report": f"{relative}{'' if seed0 is None else '/seed_*'}/eval/report.json",
                           "model": f"{relative}{'' if seed0 is None else '/seed_*'}/model",
                           "seeds": [s for s, _, _ in found if s is not None] or [config.seed]}
        front, used = pareto_front(aspects)
        forget_n = (provenance.get(task) or {}).get("num_images", {}).get("forget")
        tasks[task] = {"original": original, "rows": rows, "aspect_scores": aspects, "not_run": reasons,
                       "pareto_front": front, "pareto_objectives": used,
                       "resolution": None if not forget_n else {
                           "forget_images": forget_n, "power": 0.8, "alpha": 0.05,
                           "near_0.5": detectable_difference(forget_n, 0.5),
                           "near_0.25": detectable_difference(forget_n, 0.25)}}
        resampled[task] = task_resamples(items, ref_items, fixed, config.bootstrap_resamples, rng)
    # across tasks: each method's mean aspect over the tasks it ran (methods that ran every task only)
    complete = [m for m in config.methods if all(m in tasks[t]["aspect_scores"] for t in config.tasks)]
    mean_aspects = {m: {a: _mean([tasks[t]["aspect_scores"][m][a] for t in config.tasks])
                        for a in ("forgetting", "preservation", "quality", "robustness", "efficiency")}
                    for m in complete}
    front, used = pareto_front(mean_aspects)
    balanced, shortfalls = [], {}
    for m in complete:
        low = sorted({f"{a} on {t} ({v:.2f})" for t in config.tasks
                      for a, v in tasks[t]["aspect_scores"][m].items() if v is not None and v < config.balanced_threshold})
        if low:
            shortfalls[m] = low
        else:
            balanced.append(m)
    confidence = verdict_confidence({t: {m: a for m, a in resampled[t].items() if m in tasks[t]["rows"]}
                                     for t in config.tasks},
                                    {t: tasks[t]["aspect_scores"] for t in config.tasks}, OBJECTIVES,
                                    config.balanced_threshold)
    for task in config.tasks:
        tasks[task].update(confidence["tasks"][task])
    efficiency = {}
    for m, rs in runs.items():
        if not rs:
            continue
        cls = get_method(m)
        efficiency[m] = {"modules_edited": modules_edited(rs), "technique": rs[0].get("technique", cls.technique),
                         "artifact_kind": rs[0].get("artifact_kind", cls.artifact_kind),
                         "runtime_seconds_mean": _mean([r.get("runtime_seconds") for r in rs]),
                         "edited_parameter_share": _mean([r.get("edited_parameter_share") for r in rs]),
                         "multi_task": bool(cls.multi_concept), "tasks_run": len(rs)}
    return {"config": config.public_dict(), "config_hash": config.config_hash(), "tasks": tasks,
            "overall": {"mean_aspect_scores": mean_aspects, "pareto_front": front, "pareto_objectives": used,
                        "balanced_threshold": config.balanced_threshold, "balanced": balanced,
                        "shortfalls": shortfalls, **confidence["overall"]},
            "uncertainty": {k: confidence[k] for k in ("resamples", "confidence", "how")},
            "efficiency": efficiency, "provenance": provenance, "library_versions": library_versions(),
            "timing": {**timing, "cells_wall_seconds": wall_seconds}}


def _interval_of(entry) -> dict | None:
    if not isinstance(entry, dict) or "skipped" in entry or entry.get("low") is None:
        return None
    return {x: entry[x] for x in ("low", "high", "n", "interval") if x in entry}


def modules_edited(runs: list[dict]) -> str:
    """Which modules a method edits, from its runs' edited parameter names: ``unet: attn2.to_k, attn2.to_v``."""
    import re

    kinds: dict[str, set[str]] = {}
    for run in runs:  # names as methods return them: the denoiser's bare, other components' prefixed
        components = run.get("edited_components", [])
        denoiser = "transformer" if "transformer" in components else "unet"
        for name in run.get("edited_parameters", []):
            head, _, rest = name.partition(".")
            component, pname = (head, rest) if head in components and head != denoiser else (denoiser, name)
            parts = [p for p in pname.split(".") if not p.isdigit() and p not in ("weight", "bias")]
            tail = [p for p in parts if not re.fullmatch(r"(down|up|mid)_blocks?|attentions|transformer_blocks|"
                                                         r"resnets|text_model|encoder|layers|blocks|base_layer", p)]
            kinds.setdefault(component, set()).add(".".join(tail[-2:]) if tail else "all")
    if not kinds:
        return "none (inference-time)"
    return "; ".join(f"{c}: {', '.join(sorted(v)[:6])}{' ...' if len(v) > 6 else ''}" for c, v in sorted(kinds.items()))


def _mean(values):
    values = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sum(values) / len(values) if values else None


# ---------------------------------------------------------------------- writing it out
def _cell_text(value, fmt: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, dict) and "skipped" in value:
        return "skipped"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, fmt) if isinstance(value, (int, float)) else str(value)


def _with_interval(value, interval: dict | None, fmt: str) -> str:
    text = _cell_text(value, fmt)
    if not interval or not isinstance(value, (int, float)) or isinstance(value, bool):
        return text
    if str(interval.get("interval", "")).startswith("exact") or interval["low"] == interval["high"] == value:
        return text
    return f"{text} [{_cell_text(interval['low'], fmt)}, {_cell_text(interval['high'], fmt)}]"


def _rank_text(rank: dict | None) -> str:
    if not rank:
        return ""
    return f"{rank['rank']}" + ("" if rank["low"] == rank["high"] else f" ({rank['low']}–{rank['high']})")


def _pct(share: float | None) -> str:
    return "" if share is None else f"{100 * share:.0f} %"


def leaderboard_markdown(summary: dict, task: str) -> str:
    """The task's table: each figure with its 95 % interval, the share of resamples that put the method on the
    Pareto front, and its rank with the rank's 95 % range (overlapping ranges are not an order)."""
    t = summary["tasks"][task]
    lines = [f"| method | {' | '.join(h for h, *_ in LEADERBOARD)} | on the front | rank (95 % range) |",
             "|---|" + "---|" * (len(LEADERBOARD) + 2)]
    if t["original"]:
        iv = t["original"].get("intervals", {})
        lines.append("| original | " + " | ".join(_with_interval(t["original"][h], iv.get(h), f)
                                                   for h, *_, f in LEADERBOARD) + " | | |")
    for m, row in t["rows"].items():
        iv = row.get("intervals", {})
        share = t.get("front_share", {}).get(m)
        star = "★ " if m in t["pareto_front"] else ""
        lines.append(f"| {m} | " + " | ".join(_with_interval(row[h], iv.get(h), f) for h, *_, f in LEADERBOARD) +
                     f" | {star}{_pct(share)} | {_rank_text(t.get('rank', {}).get(m))} |")
    for m, why in t["not_run"].items():
        lines.append(f"| {m} | not run: {why} |" + " |" * (len(LEADERBOARD) + 1))
    return "\n".join(lines)


def sample_note(summary: dict, task: str) -> str:
    """What the task's figures rest on and the smallest forgetting-rate difference they resolve."""
    t, c = summary["tasks"][task], summary["config"]
    res = t.get("resolution")
    seeds = c.get("seeds") or [c["seed"]]
    text = (f"Figures: value [95 % interval]; rates over n images (Wilson), means bootstrapped over images, FID "
            f"jackknifed; {len(seeds)} training seed(s) ({', '.join(map(str, seeds))})"
            + (", pooled by a two-level bootstrap (seeds, then images)" if len(seeds) > 1 else "") + ".")
    if res:
        text += (f" With {res['forget_images']} forget images per model, two forgetting rates near 0.5 are told "
                 f"apart (power 0.8, 5 % level) only when they differ by ≥ {res['near_0.5']:.2f} (near 0.25: ≥ "
                 f"{res['near_0.25']:.2f}); smaller gaps are not findings.")
    return text


def per_seed_markdown(summary: dict, task: str) -> str:
    """Each training seed's figures and their spread (max − min over the seeds), for methods run with several."""
    t = summary["tasks"][task]
    headers = [(h, f) for h, *_, f in LEADERBOARD if h != "multi-concept"]
    lines = ["| method | seed | " + " | ".join(h for h, _ in headers) + " |", "|---|---|" + "---|" * len(headers)]
    for m, row in t["rows"].items():
        per = row.get("per_seed", {})
        if len(per) < 2:
            continue
        for seed, figs in per.items():
            lines.append(f"| {m} | {seed} | " + " | ".join(_cell_text(figs.get(h), f) for h, f in headers) + " |")
        spread = []
        for h, f in headers:
            vals = [v.get(h) for v in per.values() if isinstance(v.get(h), (int, float))]
            spread.append(_cell_text(max(vals) - min(vals), f) if len(vals) == len(per) else "–")
        lines.append(f"| {m} | spread | " + " | ".join(spread) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def conclusions(summary: dict) -> list[str]:
    """The report's findings, each computed from its numbers, with the share of bootstrap resamples in which it
    holds; methods are never said better or worse than each other where only a point estimate separates them."""
    o = summary["overall"]
    lines = []
    for task, t in summary["tasks"].items():
        if t["rows"]:
            shares = t.get("front_share", {})
            held = ", ".join(f"{m} ({_pct(shares.get(m))})" if m in shares else m for m in t["pareto_front"])
            near = [m for m, sh in shares.items() if m not in t["pareto_front"] and sh >= 0.05]
            lines.append(f"On {task}, the Pareto front of {', '.join(t['pareto_objectives']) or 'no objective'} "
                         f"holds {held} ({len(t['pareto_front'])} of {len(t['rows'])}; in parentheses: the share of "
                         f"resamples in which each is on it)."
                         + (f" Also on it in ≥ 5 % of resamples: {', '.join(f'{m} ({_pct(shares[m])})' for m in near)}."
                            if near else ""))
    if o["mean_aspect_scores"]:
        shares = o.get("front_share", {})
        held = ", ".join(f"{m} ({_pct(shares.get(m))})" if m in shares else m for m in o["pareto_front"])
        lines.append(f"Over all tasks (mean aspect scores), the front of {', '.join(o['pareto_objectives'])} holds "
                     f"{held}.")
    unmeasured = sorted({a for t in summary["tasks"].values() for s in t["aspect_scores"].values()
                         for a, v in s.items() if v is None})
    if o["mean_aspect_scores"]:
        thr = o["balanced_threshold"]
        caveat = f" (on the measured aspects only: {', '.join(unmeasured)} not measured)" if unmeasured else ""
        bal = o.get("balanced_share", {})
        if o["balanced"]:
            lines.append(f"Balanced (every measured aspect ≥ {thr} on every task){caveat}: "
                         f"{', '.join(f'{m} ({_pct(bal.get(m))} of resamples)' for m in o['balanced'])}.")
        else:
            lines.append(f"No method is balanced{caveat}: every method scores below {thr} on at least one aspect of "
                         f"one task.")
        maybe = [m for m, sh in bal.items() if m not in o["balanced"] and sh >= 0.05]
        if maybe:
            lines.append(f"Balanced in ≥ 5 % of resamples all the same: "
                         f"{', '.join(f'{m} ({_pct(bal[m])})' for m in maybe)}.")
        for m, low in o["shortfalls"].items():
            lines.append(f"- {m}: {'; '.join(low[:4])}{' ...' if len(low) > 4 else ''}")
        ranks = o.get("rank", {})
        if ranks:
            order = sorted(ranks, key=lambda m: ranks[m]["rank"])
            ties = [(a, b) for i, a in enumerate(order) for b in order[i + 1:]
                    if ranks[b]["low"] <= ranks[a]["high"]]
            lines.append(f"Overall rank (mean of {', '.join(o.get('rank_aspects', []))}; 95 % range): "
                         + ", ".join(f"{m} {_rank_text(ranks[m])}" for m in order)
                         + (f". Overlapping ranges are not an order ({len(ties)} pair(s) overlap)." if ties else "."))
    if unmeasured:
        lines.append(f"Not measured (no score, not counted as 0): {', '.join(unmeasured)}.")
    return lines


def efficiency_markdown(summary: dict) -> str:
    lines = ["| method | modules edited | technique | artifact | runtime s (mean) | edited share | multi-task |",
             "|---|---|---|---|---|---|---|"]
    for m, e in summary["efficiency"].items():
        lines.append(f"| {m} | {e['modules_edited']} | {e['technique']} | {e['artifact_kind']} | "
                     f"{_cell_text(e['runtime_seconds_mean'], '.1f')} | {_cell_text(e['edited_parameter_share'], '.2e')}"
                     f" | {'yes' if e['multi_task'] else 'no'} |")
    return "\n".join(lines)


def timing_markdown(summary: dict) -> str:
    t = summary["timing"]
    return ("| unlearning s | generation s | scoring s | attacks s | cells wall s |\n|---|---|---|---|---|\n"
            f"| {t['unlearning_seconds']:.1f} | {t['generation_seconds']:.1f} | {t['scoring_seconds']:.1f} | "
            f"{t['attack_seconds']:.1f} | {t['cells_wall_seconds']:.1f} |")


def write_benchmark_report(summary: dict, out: Path) -> None:
    """report.json, report.md, index.html, leaderboard_<task>.md, radar_<method>.png and grid_<task>.png."""
    from .report import radar_chart

    figures = {"radar": {}, "grid": {}}
    methods = list(summary["efficiency"])
    figures["errorbars"] = {}
    for m in methods:
        scores = {t: s["aspect_scores"][m] for t, s in summary["tasks"].items() if m in s["aspect_scores"]}
        bounds = {t: s.get("aspect_intervals", {}).get(m, {}) for t, s in summary["tasks"].items()
                  if m in s["aspect_scores"]}
        figures["radar"][m] = f"radar_{m}.png"
        radar_chart(scores, out / figures["radar"][m], title=m, bounds=bounds)
    for task in summary["tasks"]:
        if summary["tasks"][task]["rows"]:
            figures["errorbars"][task] = f"errorbars_{_slug(task)}.png"
            errorbar_chart(summary, task, out / figures["errorbars"][task])
        grid = _task_grid(summary, task, out)
        if grid is not None:
            figures["grid"][task] = f"grid_{_slug(task)}.png"
            with atomic_path(out / figures["grid"][task]) as tmp:
                grid.save(tmp, format="PNG")
        write_text_atomic(out / f"leaderboard_{_slug(task)}.md", leaderboard_markdown(summary, task) + "\n")
    keep = set(figures["radar"].values()) | set(figures["grid"].values()) | set(figures["errorbars"].values())
    for stale in [*out.glob("radar_*.png"), *out.glob("grid_*.png"), *out.glob("errorbars_*.png")]:
        if stale.name not in keep:
            stale.unlink()
    summary["figures"] = figures
    write_text_atomic(out / "report.json", json.dumps(summary, indent=2, sort_keys=True, default=str))
    write_text_atomic(out / "report.md", benchmark_markdown(summary))
    write_text_atomic(out / "index.html", benchmark_html(summary))


def errorbar_chart(summary: dict, task: str, path: Path) -> None:
    """Left: each method's forgetting rate with its 95 % interval (the original's for reference). Right: forgetting
    against preservation aspect scores (0..1, higher is better) with their bootstrap intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = summary["tasks"][task]
    header = LEADERBOARD[0][0]
    names = ([("original", t["original"])] if t["original"] else []) + list(t["rows"].items())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 2.2))
    for k, (name, row) in enumerate(names):
        value, iv = row.get(header), row.get("intervals", {}).get(header)
        if not isinstance(value, (int, float)):
            continue
        err = [[value - iv["low"]], [iv["high"] - value]] if iv else None
        left.errorbar([value], [k], xerr=err, fmt="o", color="gray" if name == "original" else "C0", capsize=3)
    left.set_yticks(range(len(names)), [n for n, _ in names])
    left.set_xlim(-0.02, 1.02)
    left.invert_yaxis()
    left.set_xlabel(f"{header} (95 % interval)")
    for k, (m, scores) in enumerate(t["aspect_scores"].items()):
        x, y = scores.get("forgetting"), scores.get("preservation")
        if x is None or y is None:
            continue
        bounds = t.get("aspect_intervals", {}).get(m, {})
        xe, ye = bounds.get("forgetting"), bounds.get("preservation")
        right.errorbar([x], [y], xerr=None if not xe else [[max(0.0, x - xe[0])], [max(0.0, xe[1] - x)]],
                       yerr=None if not ye else [[max(0.0, y - ye[0])], [max(0.0, ye[1] - y)]], fmt="o",
                       capsize=3, color=f"C{k % 10}", label=m)
    right.set_xlabel("forgetting (1 − rate)")
    right.set_ylabel("preservation")
    right.set_xlim(-0.02, 1.02)
    right.set_ylim(-0.02, 1.02)
    right.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{task}: 95 % intervals")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _task_grid(summary: dict, task: str, out: Path, columns: int = 6):
    """Original and every method on the same seeds: the first forget and unrelated images of the task."""
    from PIL import Image

    from .report import comparison_grid

    t = summary["tasks"][task]
    if not t["rows"]:
        return None
    shared = out / summary["provenance"][task]["original_dir"] / "images"
    ids = sorted(p.stem for p in shared.glob("forget-*.png"))[:columns // 2]
    ids += sorted(p.stem for p in shared.glob("unrelated-*.png"))[:columns - len(ids)]
    prompts = summary["provenance"][task]["prompts"]
    headers = [f"{i.split('-')[0].upper()}: {prompts[i.split('-')[0]][int(i.split('-')[1])]}" for i in ids]

    def load(path: Path):
        with Image.open(path) as img:
            return img.convert("RGB")

    rows = [[load(shared / f"{i}.png") for i in ids]]
    labels = ["original"]
    for m in t["rows"]:
        seed = (summary["config"].get("seeds") or [None])[0]  # the first training seed's images
        folder = Cell(task, m, seed).folder(out) / "eval" / "images" / m
        rows.append([load(folder / f"{i}.png") for i in ids])
        labels.append(m)
    return comparison_grid(rows, labels, headers=headers)


def benchmark_markdown(summary: dict) -> str:
    c = summary["config"]
    lines = ["# igmu benchmark", "",
             f"{len(c['methods'])} methods × {len(c['tasks'])} tasks ({', '.join(c['tasks'])}), budget "
             f"`{c['budget']}`, {c['num_prompts']} prompts per set, {c['images_per_prompt']} image(s) per prompt, "
             f"generation seed {c['seed']}, training seed(s) {', '.join(map(str, c.get('seeds') or [c['seed']]))}, "
             f"attack {c['attack'] or 'none (robustness not measured)'}"
             + (f" on {c['attack_num_prompts']} prompts" if c['attack'] and c.get('attack_num_prompts') else "")
             + f"; verdict shares from {summary['uncertainty']['resamples']} bootstrap resamples.", "",
             "## Findings (computed from the tables below)", "", *conclusions(summary), ""]
    for task in summary["tasks"]:
        lines += [f"## {task}", "", sample_note(summary, task), "", leaderboard_markdown(summary, task), ""]
        seeds_table = per_seed_markdown(summary, task)
        if seeds_table:
            lines += ["Per training seed:", "", seeds_table, ""]
        for kind, what in (("errorbars", "figures with their 95 % intervals"), ("grid", "original and every method, "
                                                                                         "same seeds")):
            fig = summary["figures"].get(kind, {}).get(task)
            if fig:
                lines += [f"![{task}: {what}]({fig})", ""]
    lines += ["## Efficiency (Table 8)", "", efficiency_markdown(summary), "", "## Five aspects per method (Fig. 8)",
              ""]
    lines += [f"![{m}]({f})" for m, f in summary["figures"]["radar"].items()]
    lines += ["", "## Where the time went", "", timing_markdown(summary), "",
              "Every figure's provenance (detectors and their checkpoint hashes, thresholds, seeds, prompts, configs "
              "and library versions): `report.json`; each cell's own EvalIGMU report: `cells/<task>/<method>/eval/`.",
              ""]
    return "\n".join(lines)


def _md_table_html(markdown_table: str) -> str:
    rows = [r.strip().strip("|").split("|") for r in markdown_table.splitlines() if r.strip()]
    head, body = rows[0], [r for r in rows[2:]]
    out = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h.strip())}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in r) + "</tr>" for r in body]
    return "\n".join(out + ["</table>"])


def benchmark_html(summary: dict) -> str:
    """A self-contained page (relative image links) with the findings, tables and pictures."""
    c = summary["config"]
    parts = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'><title>igmu benchmark</title>",
             "<style>body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #999;padding:3px 8px;font-size:13px}th{background:#eee}"
             "img{image-rendering:pixelated;margin:4px}</style></head><body>",
             "<h1>igmu benchmark</h1>",
             f"<p>{len(c['methods'])} methods × {len(c['tasks'])} tasks, budget <code>{html.escape(c['budget'])}</code>"
             f", {c['num_prompts']} prompts × {c['images_per_prompt']} image(s) per set, training seed(s) "
             f"{', '.join(map(str, c.get('seeds') or [c['seed']]))}, attack "
             f"{html.escape(str(c['attack'] or 'none'))}.</p>", "<h2>Findings</h2><ul>"]
    parts += [f"<li>{html.escape(line.lstrip('- '))}</li>" for line in conclusions(summary)]
    parts.append("</ul>")
    for task in summary["tasks"]:
        parts += [f"<h2>{html.escape(task)}</h2>", f"<p>{html.escape(sample_note(summary, task))}</p>",
                  _md_table_html(leaderboard_markdown(summary, task))]
        seeds_table = per_seed_markdown(summary, task)
        if seeds_table:
            parts += ["<p>Per training seed:</p>", _md_table_html(seeds_table)]
        for kind in ("errorbars", "grid"):
            fig = summary["figures"].get(kind, {}).get(task)
            if fig:
                parts.append(f"<img src='{html.escape(fig)}' alt='{html.escape(task)} {kind}'>")
    parts += ["<h2>Efficiency (Table 8)</h2>", _md_table_html(efficiency_markdown(summary)),
              "<h2>Five aspects per method (Fig. 8)</h2><div>"]
    parts += [f"<img src='{html.escape(f)}' alt='{html.escape(m)}' title='{html.escape(m)}' width='360'>"
              for m, f in summary["figures"]["radar"].items()]
    parts += ["</div>", "<h2>Where the time went</h2>", _md_table_html(timing_markdown(summary)),
              "<p>Provenance of every figure: <a href='report.json'>report.json</a>.</p>", "</body></html>"]
    return "\n".join(parts)


def run_benchmark(output_dir: str, redo: list[str] | None = None, overwrite: bool = False, progress: bool = True,
                  **config_kwargs) -> dict:
    """Library entry of ``igmu benchmark``: :class:`BenchmarkConfig` fields as keyword arguments."""
    return Benchmark(BenchmarkConfig(**config_kwargs)).run(output_dir, redo=redo, overwrite=overwrite,
                                                           progress=progress)
