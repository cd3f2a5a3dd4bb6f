"""The embedded mini world as a Domain: its concepts in CatIGMU, prompt sets, preserve prompts, shipped judges and
detectors, sampling settings (25 DDIM steps, CFG 5) and the methods' mini presets."""

from __future__ import annotations

import os
from typing import Any

from .base import Domain, _same_path


# Sampling of every generation on the mini world (the model was trained and measured with these).
MINI_GENERATION = {"num_inference_steps": 25, "guidance_scale": 5.0}


class MiniDomain(Domain):
    name = "mini"
    generation_kwargs = MINI_GENERATION
    attack_preset = "fast"
    builtin_attack_prompts = True

    @property
    def metric_detectors(self) -> dict[str, str]:  # all shipped in the package
        from ..mini import CLIP_PATH, MULTCLF_PATH, YOLO_PATH

        return {"multclf": MULTCLF_PATH, "clip": CLIP_PATH, "yolo": YOLO_PATH,
                "fid_feature_extractor": f"clip:{CLIP_PATH}"}

    @property
    def verification_clip(self) -> str:
        from ..mini import CLIP_PATH

        return CLIP_PATH

    def default_pretrained_model_name_or_path(self) -> str:
        from ..mini import PIPELINE_PATH

        return PIPELINE_PATH

    def owns_model(self, pretrained_model_name_or_path: str | os.PathLike | None) -> bool:
        return pretrained_model_name_or_path is None or _same_path(pretrained_model_name_or_path,
                                                                   self.default_pretrained_model_name_or_path())

    # ---- CatIGMU ----
    def taxonomy_entries(self) -> dict[str, Any]:
        """The mini world's concepts, each in the category its factor stands for (``igmu_hf.mini.domain``)."""
        from ..mini import domain
        from ..taxonomy import _k

        out: dict[str, Any] = {}
        for value, syns in domain.STYLES.items():
            if value != "none":
                out[value] = _k("Global/Abstract/Style", *syns, replacement="realistic", anchor="a photo")
        for value, syns in domain.BACKGROUNDS.items():
            if value != "plain":
                out[value] = _k("Global/Concrete/Entity", *syns, replacement="plain", anchor="a plain background")
        for value, syns in domain.TEXTURES.items():
            if value != "solid":
                out[value] = _k("Local/Abstract/Status", *syns, strongly_bound=True, subject="object",
                                replacement="solid", anchor="a solid shape")
        for value in domain.COLOURS:
            out[value] = _k("Local/Abstract/Property", strongly_bound=False, subject="object",
                            replacement=[c for c in domain.COLOURS if c != value][0], anchor="a shape")
        for value, syns in domain.SHAPES.items():
            others = [s for s in domain.SHAPES if s != value]
            out[value] = _k("Local/Concrete/Object", *syns, replacement=others[0], anchor="a shape")
        return out

    def owns_concept(self, concept: str) -> bool:
        from ..mini.domain import concept_of_word

        return isinstance(concept, str) and concept_of_word(concept.strip().lower()) is not None

    def preserve_prompts(self, spec) -> list[str]:
        """Prompts of the mini world that do not touch the target (UCE's preservation term and evaluation).

        Each other value of the target's factor, alone and with every shape (or colour, for shapes), the way the
        mini world's prompts combine them; measured on the shipped model, bare "a square"-style prompts alone let UCE
        on "circle" pull "house" down by 25 points, this set keeps every other shape within 5.
        """
        from ..mini import domain

        factor = domain.concept_of_word(spec.target)[0]
        shapes = list(domain.SHAPES)
        if factor == "shape":
            return [p for s in shapes if s != spec.target for p in [f"a {s}"] + [f"a {c} {s}" for c in domain.COLOURS]]
        if factor == "colour":
            return [f"a {c} {s}" for c in domain.COLOURS if c != spec.target for s in shapes]
        if factor == "texture":
            return [f"a {t} {s}" for t in domain.TEXTURES if t != spec.target for s in shapes]
        if factor == "background":
            return [f"a {s} on a {b} background" for b in domain.BACKGROUNDS if b != spec.target for s in shapes]
        return [f"a {s}, {st} style" for st in domain.STYLES if st not in ("none", spec.target) for s in shapes]

    def prompt_pairs(self, target: str) -> tuple[list[str], list[str]]:
        """``(base, target)`` prompts that differ only by ``target`` (ConceptPrune's paired prompts), in the mini
        world's grammar: every colour and shape (another shape standing in for a shape target)."""
        from ..mini import domain

        factor, value = domain.concept_of_word(target.strip().lower())
        shapes, colours = list(domain.SHAPES), list(domain.COLOURS)
        if factor == "shape":
            others = [s for s in shapes if s != value]
            return [f"a {c} {s}" for s in others for c in colours], [f"a {c} {value}" for _ in others for c in colours]
        if factor == "colour":
            others = [c for c in colours if c != value]
            return [f"a {c} {s}" for c in others for s in shapes], [f"a {value} {s}" for _ in others for s in shapes]
        base = [f"a {c} {s}" for s in shapes for c in colours]
        if factor == "texture":
            return base, [f"a {c} {value} {s}" for s in shapes for c in colours]
        if factor == "background":
            return base, [f"a {c} {s} on a {value} background" for s in shapes for c in colours]
        return base, [f"a {c} {s}, {value} style" for s in shapes for c in colours]

    def concept_prompts(self, target: str) -> list[str]:
        from ..mini.prompts import task_prompts

        return task_prompts(target, 8)["target_prompts"]

    def target_prompts(self, spec, n: int = 8) -> list[str]:
        from ..mini.prompts import task_prompts

        return task_prompts(spec.target, n)["target_prompts"]

    def task_prompts(self, target: str, n: int = 8) -> dict:
        """Target prompts and unrelated prompts (same factor, other values): the evaluator's prompt sets."""
        from ..mini.prompts import task_prompts

        return task_prompts(target, n)

    def zero_shot_candidates(self, spec) -> list[str]:
        """The target and the other values of its factor."""
        from ..mini.prompts import factor_values, task_prompts

        return [spec.target] + [v for v in factor_values(task_prompts(spec.target, 1)["factor"]) if v != spec.target]

    def bound_subject_class(self, spec) -> str | None:
        """Textures (Status) are bound to their object, as nudity to a person: the tiny YOLO's 'object' class."""
        return "object" if spec.task == "Status" else None

    # ---- judges ----
    def default_judge(self, task: str) -> str | None:
        return "mini" if self.owns_concept(task) else super().default_judge(task)

    # ---- presets ----
    def method_preset(self, config_class) -> dict[str, Any]:
        """The mini sampling settings, then the method's ``mini_preset`` (scaled to minutes on a CPU)."""
        return {**self.sampling_fields(config_class), **getattr(config_class, "mini_preset", {})}
