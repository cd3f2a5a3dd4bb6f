"""What a concept world provides (see the package docstring), and the registry that picks one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable


if TYPE_CHECKING:
    from ..taxonomy import TaskSpec


class Domain:
    """A concept world: its CatIGMU targets, prompt sets, preserve prompts, judges and detectors, sampling
    defaults and per-method presets. Subclasses override what differs."""

    name: str = ""
    # sampling settings of every generation in this world (methods' and attacks' configs, evaluation)
    generation_kwargs: dict[str, Any] = {}
    # the attacks' budget preset ("fast" or "paper") used when the user names none
    attack_preset: str = "paper"
    # detectors the metrics use (MultClf, CLIP, YOLO, FID features), by id
    metric_detectors: dict[str, str] = {}
    # whether ``target_prompts`` are good attack prompts (the mini world's are; real attacks use I2P-like sets)
    builtin_attack_prompts: bool = False
    # CLIP of Dark Miner's verification
    verification_clip: str = "openai/clip-vit-large-patch14"

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # ---- models ----
    def default_pretrained_model_name_or_path(self) -> str:
        raise NotImplementedError

    def owns_model(self, pretrained_model_name_or_path: str | os.PathLike | None) -> bool:
        return False

    # ---- CatIGMU ----
    def taxonomy_entries(self) -> dict[str, Any]:
        """Targets this world adds to CatIGMU's tables (normalised name -> entry)."""
        return {}

    def owns_concept(self, concept: str) -> bool:
        """True when this world knows ``concept`` (a name or synonym) as one of its own targets."""
        return False

    def preserve_prompts(self, spec: "TaskSpec") -> list[str]:
        """Prompts that do not touch the target, for preservation terms (UCE's c_p) and evaluation."""
        return []

    def target_prompts(self, spec: "TaskSpec", n: int = 8) -> list[str]:
        """Prompts that ask for the target (DUO's x⁻, attacks' default prompts)."""
        raise ValueError(f"The {self.name} world has no built-in prompts for {spec.target!r}; pass prompts "
                         f"(--prompts_file / unsafe_prompts).")

    def task_prompts(self, target: str, n: int = 8) -> dict | None:
        """The evaluator's prompt sets of a target of this world (``target_prompts``, ``unrelated``), or None when
        the world has none (the user passes prompts)."""
        return None

    # ---- judges and detectors ----
    def zero_shot_candidates(self, spec: "TaskSpec") -> list[str]:
        """Classes of the legacy CLIP zero-shot metric: the target and its CatIGMU alternatives."""
        return [spec.target, *[a for a in spec.alternatives if a != spec.target]]

    def bound_subject_class(self, spec: "TaskSpec") -> str | None:
        """A detector class (besides 'person') whose presence must survive unlearning ``spec`` (YOLO rate)."""
        return None

    def judge(self, task: str, name: str | None = None, threshold: float | None = None):
        """The :class:`~igmu_hf.judges.ConceptJudge` of ``task`` (or the judge called ``name``)."""
        from ..judges import MiniConceptJudge, NudeNetJudge

        name = name or self.default_judge(task)
        if name == "mini":
            return MiniConceptJudge.from_pretrained(task, threshold=threshold)
        if name == "nudenet":
            return NudeNetJudge() if threshold is None else NudeNetJudge(threshold=threshold)
        raise ValueError(f"No judge for task {task!r} in the {self.name} world: pass --judge mini (mini-world "
                         f"concepts) or --judge nudenet (nudity), or call the library with your own ConceptJudge.")

    def default_judge(self, task: str) -> str | None:
        from ..judges import is_nudity

        return "nudenet" if is_nudity(task) else None

    def concept_detector(self, concepts: list[str]) -> Callable[[list], list[bool]]:
        """``detector(images) -> list[bool]``: True where an image shows *any* of ``concepts`` (DUO's pair filter)."""
        judges = []
        for concept in concepts:
            try:
                judges.append(self.judge(concept))
            except ValueError as err:
                raise ValueError(f"No default detector for {concept!r} in the {self.name} world ({err}) Pass "
                                 f"`detector=`, or method_kwargs {{\"pair_filter\": \"none\"}} to keep every pair "
                                 f"unfiltered.") from None

        def detect(images) -> list[bool]:
            hits = [j.detect(images) for j in judges]
            return [bool(any(bool(h[i]) for h in hits)) for i in range(len(images))]

        return detect

    # ---- presets ----
    def sampling_fields(self, config_class) -> dict[str, Any]:
        """This world's sampling settings, for the fields ``config_class`` has."""
        names = getattr(config_class, "__dataclass_fields__", {})
        return {k: v for k, v in self.generation_kwargs.items() if k in names}

    # ---- prompts a method builds its data from ----
    def prompt_pairs(self, target: str) -> tuple[list[str], list[str]] | None:
        """``(base, target)`` prompts differing only by ``target`` in this world's grammar (ConceptPrune), or None
        for the method's own templates."""
        return None

    def concept_prompts(self, target: str) -> list[str] | None:
        """Prompts that draw ``target`` in this world's grammar (FMN's instance prompts), or None for the method's
        own templates."""
        return None

    def method_preset(self, config_class) -> dict[str, Any]:
        """Config overrides of a method in this world (none in the real world: the papers' defaults)."""
        return {}


_DOMAINS: dict[str, Domain] = {}


def register_domain(domain: Domain) -> None:
    _DOMAINS[domain.name] = domain


def list_domains() -> list[str]:
    return list(_DOMAINS)


def get_domain(name: "str | Domain | None") -> Domain:
    """The domain called ``name`` (a :class:`Domain` is returned as is; ``None`` is the mini world, the default
    of every command)."""
    if isinstance(name, Domain):
        return name
    name = name or "mini"
    if name not in _DOMAINS:
        raise ValueError(f"Unknown domain {name!r}; domains: {', '.join(_DOMAINS)}.")
    return _DOMAINS[name]


def domain_for_model(pretrained_model_name_or_path: str | os.PathLike | None) -> Domain:
    """The world a base model lives in: the domain that owns it (the mini world owns its embedded pipeline and
    ``None``, the default model); every other model is the real world's."""
    for domain in _DOMAINS.values():
        if domain.owns_model(pretrained_model_name_or_path):
            return domain
    return _DOMAINS["real"]


def domain_of_concept(concept: str) -> Domain:
    """The world whose target ``concept`` is (for calls that name a concept but no model); the real world knows
    CatIGMU's tables and everything else."""
    for domain in _DOMAINS.values():
        if domain.owns_concept(concept):
            return domain
    return _DOMAINS["real"]


def _same_path(a, b) -> bool:
    from ..hub import resolve_id

    a, b = resolve_id(a), resolve_id(b)
    try:
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, TypeError):
        return False
