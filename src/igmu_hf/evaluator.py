"""EvalIGMU end to end (seed 000 §5.3): generate paired image sets, score the five aspects, write the report.

    evaluator = EvalIGMU(EvalIGMUConfig(task="circle"))
    report = evaluator.run({"original": original_pipe, "uce": unlearned_pipe}, output_dir="eval",
                           runs={"uce": run_metadata})

Image sets (one image per prompt and sample, seed = ``seed + k`` for the k-th (prompt, sample) of a set, the same
for every model, so images are paired by their id):

* ``forget-<i>-<j>``: the forget prompt i, every model;
* ``do1-<i>-<j>``: prompt i with every target word removed (CatIGMU do-1), the original model only, same seed;
* ``unrelated-<i>-<j>``: prompts that do not touch the target, every model.

Images are cached as ``output_dir/images/<model>/<id>.png`` (written atomically), so a crashed run resumes without
regenerating. Generation and per-image scoring run in fixed chunks split across processes with accelerate, so two
processes give the same report as one. Metrics that do not apply to the task are skipped with the reason.
"""

import json
import logging
import os
import time
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any, Callable, ClassVar

from PIL import Image
from tqdm.auto import tqdm

from .atomic import save_image_atomic, write_text_atomic
from .config import ConfigBase
from .detectors.yolo import UntrustedPickleError, check_yolo_name
from .metrics.registry import ScoreContext, Skipped, list_metrics, metric_groups  # noqa: F401  (Skipped re-exported)


logger = logging.getLogger(__name__)

ASPECTS = ("forgetting", "preservation", "quality", "robustness", "efficiency")
METRIC_LIBRARIES = ("evaluate", "lpips", "ultralytics", "nudenet", "scipy")
HUMAN_WORDS = ("person", "people", "man", "woman", "men", "women", "human", "girl", "boy")


@dataclass
class EvalIGMUConfig(ConfigBase):
    """What to evaluate and with which detectors (``None`` = the mini world's for mini tasks, real ids otherwise)."""

    identity_keys: ClassVar[tuple[str, ...]] = ()
    task: str = field(default="", metadata={"help": "CatIGMU target, e.g. 'nudity', 'Van Gogh style', 'circle'."})
    forget_prompts: list[str] = field(default_factory=list, metadata={"help": "Prompts that ask for the target "
                                      "(default: the mini world's for a mini target)."})
    unrelated_prompts: list[str] = field(default_factory=list, metadata={"help": "Prompts that do not touch the "
                                         "target (default: the mini world's other values, or CatIGMU's preserve)."})
    num_prompts: int = field(default=8, metadata={"help": "Default prompt count per set (mini world)."})
    images_per_prompt: int = field(default=1, metadata={"help": "Images per prompt, seeds seed.."})
    seed: int = 0
    generation_kwargs: dict = field(default_factory=dict, metadata={"help": "Pipeline call kwargs (steps, CFG)."})
    batch_size: int = field(default=16, metadata={"help": "Images per generation/scoring chunk (fixed, so the "
                            "number of processes does not change any image)."})
    metrics: list[str] = field(default_factory=lambda: list(metric_groups()),
                               metadata={"help": "Metric groups to compute (default: every registered one)."})
    multclf: str | None = None
    clip: str | None = None
    yolo: str | None = None
    fid_feature_extractor: str | None = None
    lpips_net: str = "alex"
    lpips_pretrained_backbone: bool | None = None
    nudenet_threshold: float = 0.6
    yolo_conf: float = 0.5
    yolo_iou: float = 0.6
    attack: str | None = field(default=None, metadata={"help": "Attack for the robustness aspect, e.g. "
                               "'unlearndiffatk' (None: robustness is skipped)."})
    attack_kwargs: dict = field(default_factory=dict)
    attack_num_prompts: int | None = field(default=None, metadata={"help": "Attack the first N forget prompts only "
                                           "(each attacked prompt is an optimisation; None: every forget prompt). "
                                           "The ASR's interval says how many it rests on."})
    domain: str | None = field(default=None, metadata={"help": "Concept world of the models ('mini', 'real'): its "
                               "prompt sets, detectors and sampling settings; None: the world that owns the task."})

    def __post_init__(self):
        super().__post_init__()
        if not self.task:
            raise ValueError("`task` is empty; name the CatIGMU target to evaluate, e.g. 'nudity' or 'circle'.")
        from .validation import MAX_IMAGES, check_prompt_list

        check_prompt_list("forget_prompts", self.forget_prompts)
        check_prompt_list("unrelated_prompts", self.unrelated_prompts)
        per_set = max(self.num_prompts, len(self.forget_prompts), len(self.unrelated_prompts))
        if per_set * self.images_per_prompt > MAX_IMAGES:
            raise ValueError(f"{per_set:,} prompts x {self.images_per_prompt:,} images per prompt is more than "
                             f"{MAX_IMAGES:,} images per set; lower --num_prompts or --images_per_prompt.")
        unknown = sorted(set(self.metrics) - set(metric_groups()))
        if unknown:
            raise ValueError(f"Unknown metric(s) {unknown}; metrics: {', '.join(metric_groups())}.")
        if self.attack is not None:
            from .attacks import get_attack

            get_attack(self.attack)  # an unknown attack is named before any work
            if "asr" not in self.metrics:
                raise ValueError(f"--attack {self.attack} feeds the `asr` metric, which --metrics leaves out; add "
                                 f"asr to --metrics or drop --attack.")
        elif self.attack_kwargs:
            raise ValueError("`attack_kwargs` given without `attack`; pass --attack NAME or drop --attack_kwargs.")
        if self.attack_num_prompts is not None:
            from .validation import check_number

            check_number("attack_num_prompts", self.attack_num_prompts, 1, MAX_IMAGES, integer=True)


# the detectors a user can name (loader key -> config field), and what each must be
NAMED_DETECTOR_FIELDS = {"multclf": "multclf", "clip": "clip", "yolo": "yolo", "fid": "fid_feature_extractor"}
DETECTOR_KINDS = {"multclf": "MultClf folder or Hub id (examples/train_multclf.py writes one)",
                  "clip": "CLIP model folder or Hub id (e.g. openai/clip-vit-large-patch14)",
                  "yolo": "YOLO folder written by `igmu convert-yolo` (or its Hub id)",
                  "fid": "FID feature extractor: 'inception' or 'clip:<CLIP folder or Hub id>'"}


@dataclass
class ImageJob:
    id: str
    prompt: str
    seed: int




class EvalIGMU:
    """Runs the five-aspect evaluation; see the module docstring."""

    def __init__(self, config: EvalIGMUConfig):
        from .taxonomy import task_spec

        self.config = config
        self.spec = task_spec(config.task)
        from .domains import domain_of_concept, get_domain

        self.domain = get_domain(config.domain) if config.domain is not None else domain_of_concept(self.spec.target)
        # the world's prompt sets, when it has them for the task (the real world has none: pass prompts)
        self.world_prompts = self.domain.task_prompts(self.spec.target, config.num_prompts) \
            if self.domain.owns_concept(self.spec.target) else None
        if config.attack is not None:  # the attack's fields are checked before any work
            from .attacks import get_attack, preset_config

            preset_config(get_attack(config.attack), None, self.domain, config.attack_kwargs, config.seed)
        self.detectors = {k: getattr(config, k) or v for k, v in self.domain.metric_detectors.items()}
        from .hub import looks_like_hub_id, resolve_id

        for key, field_name in NAMED_DETECTOR_FIELDS.items():  # a named path that does not exist: before any work
            named = getattr(config, field_name)
            if not named or named in ("mini", "default", "inception"):
                continue
            path = str(named).removeprefix("clip:") if key == "fid" else str(named)
            if not Path(str(resolve_id(path))).exists() and not looks_like_hub_id(path):
                raise ValueError(f"The {key} detector you named ({field_name}={named!r}) does not exist; pass a "
                                 f"{DETECTOR_KINDS[key]}, or drop the flag to use the default.")
        if self.detectors.get("yolo"):  # a pickle named as detector is refused before any work
            from .metrics.loaders import resolve

            check_yolo_name(resolve("yolo", self.detectors["yolo"]))
        self.generation_kwargs = {**self.domain.generation_kwargs, **config.generation_kwargs}
        self.forget_prompts, self.unrelated_prompts = self._prompts()
        self._loaded: dict[str, Any] = {}
        self._model_dirs: dict[str, Path] = {}
        self.attack_seconds = 0.0

    # ------------------------------------------------------------------ prompts and jobs
    def _prompts(self) -> tuple[list[str], list[str]]:
        forget, unrelated = list(self.config.forget_prompts), list(self.config.unrelated_prompts)
        if self.world_prompts:
            task_prompts = self.domain.task_prompts
            n = self.config.num_prompts
            tp = self.world_prompts
            if not forget:  # alternate prompts that keep context after do-1 (CSDR's pairs) with bare ones
                pool = list(dict.fromkeys(task_prompts(self.spec.target, 64)["target_prompts"]))
                rich = [p for p in pool if self.spec.do1(p).strip()]
                bare = [p for p in pool if not self.spec.do1(p).strip()]
                mixed = [p for pair in zip_longest(rich, bare) for p in pair if p is not None]
                forget = [mixed[k % len(mixed)] for k in range(n)]
            if not unrelated:  # every other value of the factor, round robin, num_prompts in all
                lists = list(tp["unrelated"].values())
                unrelated = [lists[k % len(lists)][k // len(lists)] for k in range(self.config.num_prompts)]
        unrelated = unrelated or list(self.spec.preserve_prompts)
        if not forget:
            raise ValueError(f"No forget prompts for {self.spec.target!r}: pass `forget_prompts` (prompts that ask "
                             f"for the target, e.g. I2P for nudity).")
        if not unrelated:
            raise ValueError(f"No unrelated prompts for {self.spec.target!r}: pass `unrelated_prompts` (prompts that "
                             f"do not mention the target).")
        return forget, unrelated

    def jobs(self, model: str, is_original: bool) -> list[ImageJob]:
        """The images ``model`` must generate, in a fixed order."""
        n = self.config.images_per_prompt
        out = []
        for i, p in enumerate(self.forget_prompts):
            out += [ImageJob(f"forget-{i:04d}-{j}", p, self.config.seed + i * n + j) for j in range(n)]
        if is_original:
            for i, p in enumerate(self.forget_prompts):
                out += [ImageJob(f"do1-{i:04d}-{j}", self.spec.do1(p), self.config.seed + i * n + j) for j in range(n)]
        base = self.config.seed + len(self.forget_prompts) * n
        for i, p in enumerate(self.unrelated_prompts):
            out += [ImageJob(f"unrelated-{i:04d}-{j}", p, base + i * n + j) for j in range(n)]
        return out

    # ------------------------------------------------------------------ generation (cached, sharded)
    def generate(self, name: str, pipe, folder: Path, is_original: bool, state, progress: bool = True,
                 fingerprint: str | None = None) -> dict:
        """Generate the missing images of ``name`` into ``folder``; return ``{id: PIL image}`` (all of them).

        ``fingerprint`` (the run's config hash) guards the cache: images of another model are never reused."""
        from .evaluation import generate_images

        jobs = self.jobs(name, is_original)
        manifest = {"model": name, "fingerprint": fingerprint, "generation_kwargs": self.generation_kwargs,
                    "jobs": [vars(j) for j in jobs],
                    "batch_size": self.config.batch_size}
        manifest_file = folder / "generation.json"
        if state.is_main_process:
            if manifest_file.exists():
                old = json.loads(manifest_file.read_text())
                old_jobs = {j["id"]: j for j in old["jobs"]}
                clash = [j.id for j in jobs if j.id in old_jobs and old_jobs[j.id] != vars(j)]
                if clash or old.get("generation_kwargs") != self.generation_kwargs or \
                        old.get("fingerprint") != fingerprint:
                    raise ValueError(f"{str(folder)!r} caches images of other prompts, seeds or generation settings "
                                     f"(e.g. {clash[:3] or 'generation settings or model'}); use another output_dir or delete "
                                     f"its images/ folder.")
            write_text_atomic(manifest_file, json.dumps(manifest, indent=2))
        state.wait_for_everyone()
        chunks = [jobs[k:k + self.config.batch_size] for k in range(0, len(jobs), self.config.batch_size)]
        todo = [c for c in chunks if any(not (folder / f"{j.id}.png").exists() for j in c)]
        with state.split_between_processes(todo) as mine:
            for chunk in tqdm(mine, desc=f"generate {name}", disable=not (progress and state.is_main_process)):
                # the whole chunk, even if some images exist: a fixed batch makes every image independent of
                # how many processes share the work and of where a crash happened
                images = generate_images(pipe, [j.prompt for j in chunk], [j.seed for j in chunk],
                                         batch_size=len(chunk), progress=False, **self.generation_kwargs)
                for job, img in zip(chunk, images):
                    if not (folder / f"{job.id}.png").exists():
                        save_image_atomic(img, folder / f"{job.id}.png")
        state.wait_for_everyone()
        return {j.id: _load_png(folder / f"{j.id}.png") for j in jobs}

    # ------------------------------------------------------------------ detectors (loaded once, failures = skips)
    def _get(self, key: str) -> Any:
        if key not in self._loaded:
            try:
                self._loaded[key] = self._load(key)
            except Skipped as err:
                self._loaded[key] = err
            except UntrustedPickleError:
                raise  # never skipped quietly: the user named a pickle
            except Exception as err:  # offline hub ids, missing weights: skip the metric, say why
                field_name = NAMED_DETECTOR_FIELDS.get(key)
                named = getattr(self.config, field_name) if field_name else None
                if named and type(err) is ValueError:
                    raise  # igmu_hf's own loaders' refusals already name the problem and the fix
                if named:  # the user named it: it loads or the run stops
                    from .hub import first_line

                    raise ValueError(f"The {key} detector you named ({field_name}={named!r}) could not be loaded "
                                     f"({type(err).__name__}: {first_line(err)[:200]}); pass a "
                                     f"{DETECTOR_KINDS[key]}, or drop the flag to use the default.") from None
                logger.warning("Could not load %s (%s); its metrics are skipped.", key, err)
                name = self.detectors.get(key, self.detectors.get(f"{key}_feature_extractor", ""))
                self._loaded[key] = Skipped(f"could not load {key} {name!r}: "
                                            f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
        value = self._loaded[key]
        if isinstance(value, Skipped):
            raise value
        return value

    def _load(self, key: str) -> Any:
        from .metrics.loaders import load_detector

        if key == "multclf":
            model, processor, info = load_detector("multclf", self.detectors["multclf"])
            return model, processor, {**info, "task_head": self._multclf_task(model)}
        if key == "clip":
            return load_detector("clip", self.detectors["clip"])
        if key == "yolo":
            model, _, info = load_detector("yolo", self.detectors["yolo"])
            return model, {**info, "conf": self.config.yolo_conf, "iou": self.config.yolo_iou}
        if key == "lpips":
            from .judges import state_dict_sha256
            from .metrics.perceptual import load_lpips

            model, info = load_lpips(self.config.lpips_net, self.config.lpips_pretrained_backbone)
            return model, {**info, "checkpoint_sha256": state_dict_sha256(model)}
        if key == "fid":
            return load_detector("fid_feature_extractor", self.detectors["fid_feature_extractor"])[0]
        raise KeyError(key)

    def _multclf_task(self, model) -> str:
        for name in [self.spec.target, *self.spec.aliases]:
            if name in model.config.tasks:
                return name
        raise Skipped(f"the MultClf {self.detectors['multclf']!r} has no head for {self.spec.target!r} (heads: "
                      f"{model.config.tasks}); train one with examples/train_multclf.py")

    def yolo_class(self) -> str:
        """The detector class whose presence must survive unlearning, or :class:`Skipped` when none applies."""
        from .judges import is_nudity

        words = " ".join([self.spec.target, self.spec.subject or ""]).lower().split()
        if is_nudity(self.spec.target) or any(w in HUMAN_WORDS for w in words):
            return "person"
        bound = self.domain.bound_subject_class(self.spec)  # e.g. the mini world's textures are bound to the object
        if bound:
            return bound
        raise Skipped(f"the YOLO person rate applies to human-bound tasks (nudity, person); {self.spec.target!r} is "
                      f"{self.spec.category}")

    # ------------------------------------------------------------------ the run
    def run(self, pipelines: dict[str, Any], output_dir: str | Path, runs: dict[str, dict] | None = None,
            original: str = "original", progress: bool = True,
            model_dirs: dict[str, str | Path] | None = None) -> dict:
        """Evaluate ``pipelines`` (name -> pipeline; ``original`` names the reference) and write the report.

        ``model_dirs`` (name -> folder) caches a model's images (``<folder>/images``) and attack outcomes
        (``<folder>/attack``) outside ``output_dir``, so several reports share them (``igmu benchmark`` generates
        and attacks the original once per task); the default is ``output_dir/images/<name>``,
        ``output_dir/attacks/<name>``."""
        from .training import process_state

        if original not in pipelines:
            raise ValueError(f"`pipelines` needs the original model under the name {original!r}; got {list(pipelines)}.")
        if len(pipelines) < 2:
            raise ValueError("Pass at least one unlearned pipeline besides the original.")
        state = process_state()
        out = Path(output_dir)
        runs = runs or {}
        self.load_named_detectors()  # a detector the user named loads, or the run stops before generating
        start = time.perf_counter()
        self._model_dirs = {name: Path(d) for name, d in (model_dirs or {}).items()}
        self.attack_seconds = 0.0
        images = {}
        for name, pipe in pipelines.items():
            folder = self._model_dirs[name] / "images" if name in self._model_dirs else out / "images" / name
            images[name] = self.generate(name, pipe, folder, name == original, state, progress,
                                         fingerprint=(runs.get(name) or {}).get("config_hash"))
        generation_seconds = time.perf_counter() - start
        models = {name: self.score(name, images, original, runs.get(name), pipelines, out, state, progress)
                  for name in pipelines}
        report = {
            "task": self.spec.to_dict(), "config": self.config.to_dict(), "config_hash": self.config.config_hash(),
            "original": original, "detectors": self._detector_infos(),
            "generation": {"kwargs": self.generation_kwargs, "seed": self.config.seed,
                           "images_per_prompt": self.config.images_per_prompt, "num_processes": state.num_processes},
            "prompts": {"forget": self.forget_prompts, "do1": [self.spec.do1(p) for p in self.forget_prompts],
                        "unrelated": self.unrelated_prompts},
            "models": models, "runs": runs,
            "timing": {"generation_seconds": generation_seconds, "attack_seconds": self.attack_seconds,
                       "total_seconds": time.perf_counter() - start},
        }
        from .methods import library_versions

        report["library_versions"] = library_versions(extra=METRIC_LIBRARIES)
        if state.is_main_process:
            from .report import write_report

            write_report(report, images, out)
        state.wait_for_everyone()
        return report

    def load_named_detectors(self) -> None:
        """Load, before any work, every detector the config names explicitly that a selected metric reads; one that
        cannot load is a one-line error (:meth:`_get`). Defaults that cannot load are skipped with the reason."""
        from .metrics.registry import list_metrics

        needed = {d for e in list_metrics() if e.group in set(self.config.metrics) for d in e.detectors}
        for key, field_name in NAMED_DETECTOR_FIELDS.items():
            if getattr(self.config, field_name) and key in needed:
                try:
                    self._get(key)
                except Skipped:
                    pass  # loaded, but does not apply to the task (e.g. no MultClf head for it): said in the report

    def _detector_infos(self) -> dict:
        infos = {}
        for key in ("multclf", "clip", "yolo", "lpips"):
            value = self._loaded.get(key)
            if value is not None and not isinstance(value, Skipped):
                infos[key] = value[-1]
        if "fid" in self._loaded and not isinstance(self._loaded["fid"], Skipped):
            infos["fid"] = self._loaded["fid"].info
        return infos

    def score(self, name: str, images: dict, original: str, run: dict | None, pipelines: dict, out: Path, state,
              progress: bool) -> dict:
        """The five aspects (and legacy detectors) of one model; each metric is a value or ``{"skipped": why}``."""
        cfg, want = self.config, set(self.config.metrics)
        mine, ref = images[name], images[original]
        forget_ids = sorted(i for i in mine if i.startswith("forget-"))
        unrelated_ids = sorted(i for i in mine if i.startswith("unrelated-"))
        do1_prompts = {f"forget-{i:04d}-{j}": self.spec.do1(p) for i, p in enumerate(self.forget_prompts)
                       for j in range(cfg.images_per_prompt)}
        shard = _Sharder(state, cfg.batch_size)
        result = {a: {} for a in ASPECTS}
        result["legacy"] = {}
        result["num_images"] = {"forget": len(forget_ids), "unrelated": len(unrelated_ids)}
        ctx = ScoreContext(self, name, original, mine, ref, run, pipelines, out, progress, shard, forget_ids,
                           unrelated_ids, do1_prompts)
        for entry in list_metrics():  # the registry (igmu_hf.metrics.evaligmu and any registered later)
            if entry.group not in want:
                continue
            try:
                result[entry.aspect][entry.key] = entry.compute(ctx)
            except Skipped as why:
                result[entry.aspect][entry.key] = {"skipped": str(why)}
        return result

    def _attack(self, name: str, pipelines: dict, original: str, out: Path, progress: bool) -> dict:
        from .attacks import get_attack, preset_config
        from .metrics.robustness import asr_from_outcomes

        attack_cls = get_attack(self.config.attack)
        config = preset_config(attack_cls, None, self.domain, self.config.attack_kwargs, self.config.seed)
        folder = self._model_dirs[name] / "attack" if name in self._model_dirs else out / "attacks" / name
        start = time.perf_counter()
        result = attack_cls(config).run(pipelines[name], self.domain.judge(self.spec.target), self.spec.target,
                                        prompts=self.forget_prompts[:self.config.attack_num_prompts],
                                        original=pipelines[original],
                                        output_dir=str(folder), progress=progress)
        self.attack_seconds += time.perf_counter() - start
        outcomes = Path(os.path.relpath(folder / "outcomes.jsonl", out)).as_posix()  # relative: no local paths
        per_item = {f"prompt-{k:04d}": int(bool(o.success or o.pre_attack_success))
                    for k, o in enumerate(result.outcomes)}
        return {**asr_from_outcomes(result.outcomes), "attack": self.config.attack, "judge": result.judge,
                "config_hash": result.summary["config_hash"], "outcomes": outcomes, "per_item": per_item}


class _Sharder:
    """Per-item scores computed in fixed chunks split across processes, gathered on every process."""

    def __init__(self, state, chunk_size: int):
        self.state, self.chunk_size = state, chunk_size

    def map(self, ids: list[str], fn: Callable[[list[str]], list]) -> dict[str, Any]:
        chunks = [ids[k:k + self.chunk_size] for k in range(0, len(ids), self.chunk_size)]
        with self.state.split_between_processes(chunks) as mine:
            local = {i: v for chunk in mine for i, v in zip(chunk, fn(chunk))}
        if self.state.num_processes == 1:
            return local
        from accelerate.utils import gather_object

        merged = {}
        for part in gather_object([local]):
            merged.update(part)
        return merged


def _load_png(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")
