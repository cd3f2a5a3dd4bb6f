"""The one numeric validator: every config field (methods, attacks, the evaluator), every CLI flag, metric argument
and judge threshold goes through :func:`check_number`, so NaN, ±Infinity and out-of-range values are refused with
the field's name before any work (``NaN <= 0`` is False, so ad-hoc ``if x <= 0`` checks let NaN through).

Ranges come from the config class's ``field_ranges`` (``{name: (low, high, low_inclusive)}``) when it names the
field, else from :data:`RANGE_RULES`, which
gives each family of names the range its meaning implies (learning rates > 0, step counts ≥ 1, probabilities and
thresholds in [0, 1] ...). A numeric field no rule names is only required to be finite.
"""

from __future__ import annotations

import math
import re
from dataclasses import fields, is_dataclass
from numbers import Real
from typing import Any

# (name pattern, low, high, low_inclusive). First match wins; the patterns match whole field names.
# Seeds stay below 2**30: every random generator takes them (torch's, numpy's 32-bit ones) after the offsets the
# methods add (seed + image index, Dark Miner's per-stage mix) without overflowing.
MAX_SEED = 2**30 - 1
# Prompt sets and image counts a run may ask for: far beyond any paper's evaluation, far below what fills memory.
MAX_PROMPTS = 100_000
MAX_IMAGES = 1_000_000
RANGE_RULES: tuple[tuple[str, float | None, float | None, bool], ...] = (
    (r"seed", 0, MAX_SEED, True),
    (r"image_seed_offset|max_edit_retries", 0, None, True),
    (r"num_prompts", 1, MAX_PROMPTS, True),
    (r"images_per_prompt", 1, 10_000, True),
    (r"(.*_)?(threshold|strength|prob|probability|ratio|rate|conf|iou)", 0, 1, True),
    (r"(.*_)?(lr|learning_rate|lr_decayed)|beta|lamb|uce_lamb|base_lambda|erase_scale|eta|(.*_)?max_grad_norm",
     0, None, False),
    (r"num_.*|.*_steps|.*_size|.*epochs|.*_epoch|iterations|generations|(lora_)?rank|lora_alpha|max_.*|.*_images"
     r"|.*_length|timesteps|eval_every|insert_every|resolution|images_per_prompt", 1, None, True),
    (r".*weight_decay|.*_scale|.*guidance|alpha_.*|.*_lambda", 0, None, True),
)


def check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                 low_inclusive: bool = True, integer: bool = False) -> float:
    """``value`` as a float when it is a finite real number within the bounds; a ``ValueError`` naming ``name``, the
    value and the accepted range otherwise (strings, booleans, NaN and ±Infinity included)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"`{name}` must be a number, got {value!r} ({type(value).__name__}).")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"`{name}` is {v}; it must be a finite number{_range_text(low, high, low_inclusive)}.")
    if integer and v != int(v):
        raise ValueError(f"`{name}` is {value}; it must be a whole number.")
    if (low is not None and (v < low or (v == low and not low_inclusive))) or (high is not None and v > high):
        raise ValueError(f"`{name}` is {value}; it must be{_range_text(low, high, low_inclusive)}.")
    return v


def _range_text(low, high, low_inclusive) -> str:
    if low is not None and high is not None:
        return f" in {'[' if low_inclusive else '('}{low}, {high}]"
    if low is not None:
        return f" {'≥' if low_inclusive else '>'} {low}"
    if high is not None:
        return f" ≤ {high}"
    return ""


def range_for(name: str) -> tuple[float | None, float | None, bool] | None:
    """The ``(low, high, low_inclusive)`` :data:`RANGE_RULES` give a field name, or None."""
    for pattern, low, high, inclusive in RANGE_RULES:
        if re.fullmatch(pattern, name):
            return low, high, inclusive
    return None


def declared_range(config_class: type, name: str) -> tuple[float | None, float | None, bool] | None:
    """The range of field ``name``: the class's ``field_ranges`` entry (a ClassVar; dataclass metadata would reach
    argparse through HfArgumentParser), else :func:`range_for`."""
    ranges = getattr(config_class, "field_ranges", {}) or {}
    return ranges[name] if name in ranges else range_for(name)


def check_config_numbers(config: Any) -> None:
    """Check every numeric value of a config dataclass (lists and dicts of numbers too) with :func:`check_number`:
    finite always; within the class's ``field_ranges`` entry for it or its :data:`RANGE_RULES` range."""
    if not is_dataclass(config):
        raise TypeError(f"check_config_numbers takes a dataclass instance, got {type(config).__name__}.")
    owner = type(config).__name__
    for f in fields(config):
        value = getattr(config, f.name)
        rule = declared_range(type(config), f.name)
        for label, v in _numbers(f"{owner}.{f.name}", value):
            low, high, inclusive = rule if rule is not None and label == f"{owner}.{f.name}" else (None, None, True)
            check_number(label, v, low, high, inclusive)


def _numbers(label: str, value: Any):
    if isinstance(value, bool):
        return
    if isinstance(value, Real):
        yield label, value
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _numbers(f"{label}[{i}]", v)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(f"{label}[{k!r}]", v)


def check_prompt_list(name: str, prompts: Any) -> None:
    """A list of prompts no longer than :data:`MAX_PROMPTS` (a huge file would run for days or fill memory)."""
    if isinstance(prompts, (list, tuple)) and len(prompts) > MAX_PROMPTS:
        raise ValueError(f"`{name}` holds {len(prompts):,} prompts; igmu_hf takes at most {MAX_PROMPTS:,} per set. "
                         f"Split the file, or sample from it.")


def check_templates(config: Any) -> None:
    """Every prompt template of a config (fields named ``*template*``, ``instance_prompt``, ``pool_prompts``) formats
    with the concept (``{}`` or ``{concept}``; ``{{``/``}}`` for literal braces), or a ``ValueError`` naming the field
    and the template, before any work."""
    if not is_dataclass(config):
        return
    for f in fields(config):
        if not ("template" in f.name or f.name in ("instance_prompt", "pool_prompts")):
            continue
        value = getattr(config, f.name)
        for template in ([value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else []):
            if not isinstance(template, str):
                continue
            try:
                template.format("concept", concept="concept")
            except (ValueError, IndexError, KeyError) as err:
                raise ValueError(f"`{f.name}` template {template[:60]!r} does not format ({type(err).__name__}: "
                                 f"{err}); "
                                 f"write the concept as '{{}}' (or '{{concept}}') and literal braces as '{{{{' and "
                                 f"'}}}}'.") from None
