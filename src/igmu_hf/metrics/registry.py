"""The EvalIGMU metric registry: each metric declares its aspect, the image sets it reads, the detectors it needs,
its report columns, and computes from a :class:`ScoreContext` (raising :class:`Skipped` with the reason when it
does not apply). The evaluator loops over the registry and the report takes its columns and labels from it, so
adding a metric is one registration (``tests/test_toy_metric.py`` adds a toy one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


class Skipped(Exception):
    """A metric that does not apply (or cannot run); the message is the reason written in the report."""


@dataclass(frozen=True)
class Column:
    """One report column (and model-index entry) of a metric: ``header`` over ``result[value]`` in ``fmt``."""

    header: str
    value: str
    fmt: str = ".3f"
    model_index: str | None = None  # "Name shown on the Hub" when the value goes into the model card's model-index
    model_index_type: str | None = None  # its type there, "igmu/<type>" (default: the metric's key)


@dataclass(frozen=True)
class MetricEntry:
    key: str  # the result's name in report["models"][model][aspect]
    aspect: str  # forgetting, preservation, quality, robustness, efficiency, legacy
    group: str  # what ``EvalIGMUConfig.metrics`` selects it by (several entries may share one)
    compute: Callable[["ScoreContext"], dict]
    image_sets: tuple[str, ...] = ()  # forget, do1, unrelated
    detectors: tuple[str, ...] = ()  # multclf, clip, yolo, lpips, fid
    columns: tuple[Column, ...] = ()
    description: str = ""


@dataclass
class ScoreContext:
    """What a metric computes from for one model: its images and the original's, by id, and the evaluator's
    detectors (``get``), prompt sets, config and process sharding (``shard.map``)."""

    evaluator: Any
    name: str
    original: str
    mine: dict
    ref: dict
    run: dict | None
    pipelines: dict
    out: Any
    progress: bool
    shard: Any
    forget_ids: list[str] = field(default_factory=list)
    unrelated_ids: list[str] = field(default_factory=list)
    do1_prompts: dict[str, str] = field(default_factory=dict)

    @property
    def config(self):
        return self.evaluator.config

    @property
    def spec(self):
        return self.evaluator.spec

    @property
    def is_original(self) -> bool:
        return self.name == self.original

    @property
    def csdr_ids(self) -> list[str]:
        """Forget images whose do-1 prompt keeps words ("a circle" minus "circle" leaves none)."""
        return [i for i in self.forget_ids if self.do1_prompts[i].strip()]

    def get(self, detector: str):
        return self.evaluator._get(detector)


_METRICS: dict[str, MetricEntry] = {}


def register_metric(entry: MetricEntry) -> MetricEntry:
    """Add a metric (its ``key`` must be new); returns it."""
    if entry.key in _METRICS and _METRICS[entry.key] is not entry:
        raise ValueError(f"Metric {entry.key!r} is already registered.")
    if entry.aspect not in ("forgetting", "preservation", "quality", "robustness", "efficiency", "legacy"):
        raise ValueError(f"Metric {entry.key!r} has unknown aspect {entry.aspect!r}.")
    _METRICS[entry.key] = entry
    return entry


def unregister_metric(key: str) -> None:
    _METRICS.pop(key, None)


def list_metrics() -> list[MetricEntry]:
    """Every registered metric, in registration order (EvalIGMU's first)."""
    from . import evaligmu  # noqa: F401  (registers the built-in metrics)

    return list(_METRICS.values())


def metric_groups() -> tuple[str, ...]:
    """The names ``EvalIGMUConfig.metrics`` accepts."""
    return tuple(dict.fromkeys(e.group for e in list_metrics()))
