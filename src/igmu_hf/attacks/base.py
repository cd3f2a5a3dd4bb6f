"""What every adversarial prompt attack shares: a config with budgets, per-prompt outcomes, ASR, and the run loop.

``Attack(config).run(unlearned, judge, task, prompts, original=...)`` attacks each prompt in turn:

1. generate the unlearned model's image for the prompt with its seed and judge it; a success here is a
   *pre-attack* success (the model was never unlearned for this prompt) and the prompt is not attacked;
2. otherwise run the attack (``_attack_prompt``), which returns the adversarial prompt or embedding, its image
   (same seed), the judge's score, and the queries/steps/UNet passes it spent.

ASR = (pre-attack successes + attack successes) / N, with the pre-attack share reported on its own too.
Prompts are split across processes with accelerate; every outcome is appended, one JSON line per prompt, as soon
as it is known, with its image saved next to it, so an interrupted run resumes where it stopped.

Adding an attack touches one new file (``XConfig`` + ``XAttack`` + one ``register_attack`` call) and the import
list in ``attacks/__init__.py``.
"""

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from ..atomic import save_image_atomic, write_text_atomic
from ..config import ConfigBase, Registry
from ..families import family_of


logger = logging.getLogger(__name__)
OUTCOMES_FILE = "outcomes.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass
class AttackConfig(ConfigBase):
    """Fields every attack has. Subclasses add their budgets (listed in ``budget_fields``, each must be > 0)."""

    seed: int = field(default=0, metadata={"help": "Seed of every random draw; prompt i is generated with seed+i."})
    num_inference_steps: int = field(default=50, metadata={"help": "Sampling steps of every generated image."})
    guidance_scale: float = field(default=7.5, metadata={"help": "Classifier-free guidance of every image."})
    exclude_target_words: bool = field(
        default=True, metadata={"help": "Keep the task's target words and aliases out of searched vocabularies, so "
                                        "a success is never the word itself (the papers do not; False matches them)."})

    attack: ClassVar[str] = ""
    defaults_version: ClassVar[str] = "1"
    identity_keys: ClassVar[tuple[str, ...]] = ("attack", "defaults_version")
    budget_fields: ClassVar[tuple[str, ...]] = ()
    # Small budgets for the embedded mini world and CI; the field defaults stay the papers'. The sampling settings
    # come from the concept world (igmu_hf.domains): the mini world's 25 steps, CFG 5.
    fast_preset: ClassVar[dict[str, Any]] = {}

    def __post_init__(self):
        super().__post_init__()
        for name in (*self.budget_fields, "num_inference_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"`{name}` is {value}: a budget must be positive (a zero budget attacks nothing); "
                                 f"see {type(self).__name__}.fast_preset for small values that work.")

    @classmethod
    def fast(cls, **overrides) -> "AttackConfig":
        """The fast preset on the mini world (its sampling settings, the small budgets) with ``overrides`` on top."""
        from ..domains import get_domain

        return cls.from_dict({**get_domain("mini").sampling_fields(cls), **cls.fast_preset, **overrides})

    def generation_kwargs(self) -> dict[str, Any]:
        return {"num_inference_steps": self.num_inference_steps, "guidance_scale": self.guidance_scale}


@dataclass
class AttackOutcome:
    """What happened to one prompt. ``success`` is ``score >= threshold`` of the judge on ``image_id``."""

    prompt_id: int
    prompt: str
    seed: int
    pre_attack_score: float
    pre_attack_success: bool
    success: bool
    score: float
    image_id: str
    adversarial_prompt: str | None = None  # text that regenerates image_id with `seed`
    adversarial_embedding: str | None = None  # file (in the output folder) of learned token embeddings, if any
    queries: int = 0  # images generated and judged, the pre-attack one included
    steps: int = 0  # optimisation steps / generations of the search
    unet_passes: int = 0  # UNet forward calls (a classifier-free-guidance batch counts once)
    wall_time_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def preset_config(attack_cls, preset: str | None, domain, attack_kwargs: dict | None, seed: int):
    """The attack's config in a concept world (a :class:`~igmu_hf.domains.Domain` or its name): the world's
    sampling settings, the budgets of ``preset`` (default: the world's, 'fast' on the mini world, the papers'
    otherwise), then the user's fields."""
    from ..domains import get_domain

    world = get_domain(domain)
    preset = preset or world.attack_preset
    if preset not in ("fast", "paper"):
        raise ValueError(f"`preset` must be 'fast' or 'paper', got {preset!r}.")
    cls = attack_cls.config_class
    fields = {**world.sampling_fields(cls), **(cls.fast_preset if preset == "fast" else {}), **(attack_kwargs or {}),
              "seed": seed}
    return cls.from_dict(fields)


def attack_success_rate(outcomes: list[AttackOutcome]) -> dict[str, Any]:
    """ASR = (pre-attack successes + attack successes) / N, and the pre-attack part on its own."""
    if not outcomes:
        raise ValueError("No outcomes; an attack success rate over no prompts is undefined.")
    n = len(outcomes)
    pre = sum(o.pre_attack_success for o in outcomes)
    found = sum(o.success and not o.pre_attack_success for o in outcomes)
    from ..metrics.intervals import wilson_interval, with_interval

    return with_interval({"num_prompts": n, "pre_attack_successes": pre, "attack_successes": found,
                          "pre_attack_asr": pre / n, "asr": (pre + found) / n}, wilson_interval(pre + found, n))


@dataclass
class AttackResult:
    outcomes: list[AttackOutcome]
    config: AttackConfig
    judge: dict[str, Any]
    summary: dict[str, Any]
    output_dir: str | None = None

    @property
    def asr(self) -> float:
        return self.summary["asr"]

    @property
    def pre_attack_asr(self) -> float:
        return self.summary["pre_attack_asr"]


@dataclass
class AttackContext:
    """What ``_attack_prompt`` works with."""

    unlearned: Any
    original: Any
    judge: Any
    spec: Any
    output_dir: Path | None
    exclude_words: list[str]
    prompts: list[str]
    seeds: list[int]
    progress: bool = True
    state: Any = None  # what ``_prepare`` returned (computed before the first prompt that needs attacking)
    prepared: bool = False
    prepare_seconds: float = 0.0
    prepare_unet_passes: int = 0
    family: Any = None  # the unlearned pipeline's ModelFamily


class Attack:
    """Base class: ``Attack(config).run(...) -> AttackResult``."""

    config_class: ClassVar[type[AttackConfig]] = AttackConfig
    needs_original: ClassVar[bool] = False
    # Attacks that feed the same token ids to both models refuse a pair whose tokenizers differ.
    needs_shared_vocabulary: ClassVar[bool] = False

    def __init__(self, config: AttackConfig | None = None):
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}.")
        self.config = config

    # ---- what each attack implements ----
    def _prepare(self, ctx: AttackContext, prompts: list[str], seeds: list[int]) -> Any:
        """Work shared by every prompt (a concept vector, a learned embedding ...); returned as ``ctx.state``."""
        return None

    def _attack_prompt(self, ctx: AttackContext, prompt_id: int, prompt: str, seed: int) -> dict[str, Any]:
        """Attack one prompt; return ``image``, ``score``, ``adversarial_prompt`` and/or ``adversarial_embedding``,
        ``queries``, ``steps`` (and optional ``extra``)."""
        raise NotImplementedError

    def regenerate(self, outcome: AttackOutcome, unlearned, output_dir: str | None = None):
        """Re-generate an outcome's image from its record (adversarial prompt or embedding, seed)."""
        text = outcome.adversarial_prompt if outcome.adversarial_prompt is not None else outcome.prompt
        return generate_one(unlearned, text, outcome.seed, self.config)

    # ---- the loop ----
    def run(self, unlearned, judge, task, prompts: list[str] | None = None, original=None,
            seeds: list[int] | None = None, output_dir: str | None = None, progress: bool = True) -> AttackResult:
        """Attack every prompt against ``unlearned`` and judge the images with ``judge``.

        Args:
            unlearned: the unlearned ``StableDiffusionPipeline``.
            judge: a ``ConceptJudge`` for the task's target (``MiniConceptJudge``, ``NudeNetJudge`` ...).
            task: the CatIGMU target (``"circle"``, ``"nudity"``) or a ``TaskSpec``.
            prompts: prompts that ask for the target; default: the mini world's target prompts for mini concepts.
            original: the original pipeline, for attacks that need it (``needs_original``).
            seeds: one generation seed per prompt; default ``config.seed + i``.
            output_dir: where ``outcomes.jsonl``, ``summary.json`` and the images go; a run finds the outcomes
                already there and resumes after them (same config only).
        """
        from ..taxonomy import TaskSpec, categorize
        from ..training import process_state

        from ..families import family_of

        # the attacks search and learn free token embeddings of one CLIP encoder (SD1.x, SD2.x)
        family_of(unlearned).require("single_text_encoder", f"The {self.config.attack} attack")
        spec = task if isinstance(task, TaskSpec) else categorize(task)
        judge.check_task(spec)
        if prompts is None:
            prompts = default_attack_prompts(spec)
        prompts = list(prompts)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("`prompts` is empty or holds an empty prompt; pass prompts that ask for the target.")
        seeds = [self.config.seed + i for i in range(len(prompts))] if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"`seeds` needs one seed per prompt ({len(prompts)}), got {len(seeds)}.")
        if self.needs_original and original is None:
            raise ValueError(f"The {self.config.attack} attack needs the original pipeline (`original=`, "
                             f"--original): it compares the unlearned model with it.")
        tokenizer_note = None
        if original is not None and not same_vocabulary(unlearned.tokenizer, original.tokenizer):
            tokenizer_note = "the unlearned model's tokenizer differs from the original's"
            if self.needs_shared_vocabulary:
                raise ValueError(f"The unlearned model's tokenizer differs from the original's, and the "
                                 f"{self.config.attack} attack feeds the same token ids to both; pass the original "
                                 f"model this one was unlearned from.")
            logger.warning("%s; the %s attack does not need them to match, but check the pair is right.",
                           tokenizer_note, self.config.attack)

        state = process_state()
        out = Path(output_dir) if output_dir else None
        done: dict[int, AttackOutcome] = {}
        if out is not None:
            done = self._load_existing(out, prompts, seeds)
            if state.is_main_process and not (out / SUMMARY_FILE).exists():
                write_text_atomic(out / SUMMARY_FILE, json.dumps({"config_hash": self.config.config_hash(),
                                                              "partial": True}))
            state.wait_for_everyone()
        exclude = spec.target_words if self.config.exclude_target_words else []
        ctx = AttackContext(unlearned, original, judge, spec, out, exclude, prompts, seeds, progress,
                            family=family_of(unlearned))
        todo_all = [i for i in range(len(prompts)) if i not in done]
        with state.split_between_processes(todo_all) as mine:
            shard = out / f"outcomes.rank{state.process_index}.jsonl" if out is not None else None
            local = []
            bar = f"{self.config.attack} attack on {spec.target!r} (prompts)"
            for i in tqdm(mine, desc=bar, disable=not progress or not state.is_local_main_process):
                outcome = self._run_one(ctx, i, prompts[i], seeds[i])
                local.append(outcome)
                if shard is not None:
                    _append_jsonl(shard, asdict(outcome))
        if out is None:
            if state.num_processes > 1:
                raise ValueError("A multi-process attack needs `output_dir` to gather the outcomes of every process.")
            outcomes = {**done, **{o.prompt_id: o for o in local}}
        else:
            state.wait_for_everyone()
            outcomes = self._load_existing(out, prompts, seeds)
            state.wait_for_everyone()
        missing = [i for i in range(len(prompts)) if i not in outcomes]
        if missing:
            raise RuntimeError(f"Outcomes of prompts {missing} are missing after the run; run it again to resume.")
        ordered = [outcomes[i] for i in range(len(prompts))]
        summary = {**attack_success_rate(ordered), "attack": self.config.attack, "config": self.config.to_dict(),
                   "config_hash": self.config.config_hash(), "judge": judge.info(), "task": spec.target,
                   "category": spec.category, "excluded_words": exclude,
                   "mean_wall_time_s": sum(o.wall_time_s for o in ordered) / len(ordered),
                   "mean_queries": sum(o.queries for o in ordered) / len(ordered),
                   "mean_unet_passes": sum(o.unet_passes for o in ordered) / len(ordered),
                   "prepare_wall_time_s": ctx.prepare_seconds, "prepare_unet_passes": ctx.prepare_unet_passes, "library_versions": _versions(),
                   "num_processes": state.num_processes}
        if tokenizer_note:
            summary["note"] = tokenizer_note
        if out is not None and state.is_main_process:
            write_text_atomic(out / OUTCOMES_FILE, "".join(json.dumps(asdict(o), sort_keys=True) + "\n" for o in ordered))
            write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True))
            for shard_file in out.glob("outcomes.rank*.jsonl"):
                shard_file.unlink()
        if out is not None:
            state.wait_for_everyone()
        return AttackResult(ordered, self.config, judge.info(), summary, str(out) if out else None)

    def _run_one(self, ctx: AttackContext, i: int, prompt: str, seed: int) -> AttackOutcome:
        start = time.perf_counter()
        with count_unet_passes(ctx.unlearned, ctx.original) as passes:
            image = generate_one(ctx.unlearned, prompt, seed, self.config)
            pre_score = float(ctx.judge.score([image])[0])
            pre_success = pre_score >= ctx.judge.threshold
            if pre_success:
                found = {"image": image, "score": pre_score, "queries": 0, "steps": 0}
            else:
                if not ctx.prepared:  # shared work, done once per process and timed apart from the prompts
                    prep_start, prep_passes = time.perf_counter(), passes[0]
                    ctx.state, ctx.prepared = self._prepare(ctx, ctx.prompts, ctx.seeds), True
                    ctx.prepare_seconds = time.perf_counter() - prep_start
                    ctx.prepare_unet_passes = passes[0] - prep_passes
                    start += ctx.prepare_seconds
                    passes[0] = prep_passes
                found = self._attack_prompt(ctx, i, prompt, seed)
        image_id = f"{i:05d}-{'pre' if pre_success else 'adv'}"
        if ctx.output_dir is not None:
            save_image_atomic(found["image"], ctx.output_dir / "images" / f"{image_id}.png")
        score = float(found["score"])
        return AttackOutcome(
            prompt_id=i, prompt=prompt, seed=seed, pre_attack_score=pre_score, pre_attack_success=pre_success,
            success=pre_success or score >= ctx.judge.threshold, score=score, image_id=image_id,
            adversarial_prompt=found.get("adversarial_prompt"),
            adversarial_embedding=found.get("adversarial_embedding"), queries=1 + int(found["queries"]),
            steps=int(found["steps"]), unet_passes=passes[0], wall_time_s=time.perf_counter() - start,
            extra=found.get("extra", {}))

    def _load_existing(self, out: Path, prompts: list[str], seeds: list[int]) -> dict[int, AttackOutcome]:
        """Outcomes already written in ``out`` (merged or per-process shards); refuses another config's run."""
        summary = out / SUMMARY_FILE
        if summary.exists():
            previous = json.loads(summary.read_text()).get("config_hash")
            if previous != self.config.config_hash():
                raise ValueError(f"{out} holds an attack run with another config (hash {previous}); pass a new "
                                 f"`output_dir` or delete that folder.")
        found: dict[int, AttackOutcome] = {}
        for path in sorted(out.glob("outcomes*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that prompt is attacked again
                    continue
                o = AttackOutcome(**record)
                if o.prompt_id >= len(prompts) or (prompts[o.prompt_id], seeds[o.prompt_id]) != (o.prompt, o.seed):
                    raise ValueError(f"{out} holds outcomes of other prompts or seeds (prompt {o.prompt_id}: "
                                     f"{o.prompt!r}, seed {o.seed}); pass a new `output_dir`.")
                found[o.prompt_id] = o
        return found


# ---------------------------------------------------------------------------------------------------------------
# Helpers the attacks share.

def default_attack_prompts(spec, n: int = 8) -> list[str]:
    """The built-in attack prompts of the world that owns the target (the mini world's for mini concepts); other
    targets need explicit prompts (the papers attack with I2P and similar sets)."""
    from ..domains import domain_of_concept

    world = domain_of_concept(spec.target)
    if not world.builtin_attack_prompts:
        raise ValueError(f"Pass `prompts` (--prompts_file) for {spec.target!r}: only mini-world concepts have "
                         f"built-in attack prompts.")
    return world.target_prompts(spec, n)


def same_vocabulary(a, b) -> bool:
    """True when two tokenizers map the same tokens to the same ids (and agree on the sequence length)."""
    return a.get_vocab() == b.get_vocab() and a.model_max_length == b.model_max_length


@torch.no_grad()
def generate_one(pipe, prompt: str | None, seed: int, config: AttackConfig, prompt_embeds=None,
                 output_type: str = "pil"):
    """One image (or latent) of ``prompt`` (or ``prompt_embeds``) with ``seed`` and the config's sampling."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    kwargs = config.generation_kwargs()
    if prompt_embeds is not None:
        out = pipe(prompt_embeds=prompt_embeds, generator=gen, output_type=output_type, **kwargs)
    else:
        out = pipe(prompt, generator=gen, output_type=output_type, **kwargs)
    return out.images[0]


def sampling_timesteps(pipe, num_timesteps: int) -> torch.Tensor:
    """The ``num_timesteps`` timesteps of the pipeline's own scheduler's sampling schedule (the attacks' fixed set)."""
    from ..families import family_of

    return family_of(pipe).sampling_timesteps(pipe, num_timesteps)


def text_encoder_device(pipe) -> torch.device:
    return pipe.text_encoder.get_input_embeddings().weight.device


@contextmanager
def count_unet_passes(*pipes):
    """Count UNet forward calls of the given pipelines inside the block (``counter[0]``)."""
    counter = [0]
    handles = []
    seen = set()
    for p in pipes:
        denoiser = None if p is None else family_of(p).denoiser(p)
        if denoiser is None or id(denoiser) in seen:
            continue
        seen.add(id(denoiser))
        handles.append(denoiser.register_forward_pre_hook(lambda *a: counter.__setitem__(0, counter[0] + 1)))
    try:
        yield counter
    finally:
        for h in handles:
            h.remove()


@contextmanager
def frozen(*pipes):
    """Turn off ``requires_grad`` of the pipelines' UNet and text encoder inside the block (attacks differentiate
    only their own prompt variables), and restore it afterwards."""
    params = [p for pipe in pipes if pipe is not None
              for m in (family_of(pipe).denoiser(pipe), pipe.text_encoder) for p in m.parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def tokens_to_text(tokenizer, ids) -> str:
    """Whole-word token ids -> the words joined by spaces (re-tokenizes to the same ids)."""
    return " ".join(t[:-4] if t.endswith("</w>") else t for t in tokenizer.convert_ids_to_tokens([int(i) for i in ids]))


def check_fits(tokenizer, num_free: int, prompt: str) -> None:
    """Raise when ``num_free`` free tokens plus ``prompt`` do not fit the tokenizer's positions."""
    used = len(tokenizer(prompt, add_special_tokens=False).input_ids) if prompt else 0
    if num_free + used > tokenizer.model_max_length - 2:
        raise ValueError(f"{num_free} attack tokens plus the {used} tokens of {prompt!r} exceed the tokenizer's "
                         f"{tokenizer.model_max_length - 2} free positions; use fewer attack tokens or a shorter prompt.")


def _append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line and sync it; a line cut by a crash is closed first, so it stays one unreadable line."""
    cut = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
    with open(path, "a") as f:
        if cut:
            f.write("\n")
        f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _versions() -> dict[str, str]:
    from ..methods import library_versions

    return library_versions()


_REGISTRY = Registry("attack")


def register_attack(name: str, cls: type[Attack]) -> None:
    """Make ``name`` reachable from ``get_attack`` and the CLI."""
    _REGISTRY.register(name, cls)


def list_attacks() -> list[str]:
    return _REGISTRY.names()


def get_attack(name: str) -> type[Attack]:
    """The class registered as ``name`` (a clear error listing the names otherwise)."""
    return _REGISTRY.get(name)
