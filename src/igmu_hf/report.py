"""The EvalIGMU report: ``report.json``, ``report.md`` (tables, image grids, radar chart) and model-index blocks."""

import json
import math
from pathlib import Path

import yaml
from PIL import Image, ImageDraw

from .atomic import atomic_path, write_text_atomic


RADAR_HOW = {
    "forgetting": "1 - MultClf forgetting rate",
    "preservation": "1 - CSDR/100 (1 - LPIPS(do-1) when CSDR is skipped)",
    "quality": "CLIP score on unrelated prompts / the original's (capped at 1)",
    "robustness": "1 - attack success rate",
    "efficiency": "1 - edited-parameter share",
}


def _value(entry, key: str):
    return entry.get(key) if isinstance(entry, dict) and "skipped" not in entry else None


ASPECT_SOURCES = {  # aspect -> the metrics it is read from, in order of preference: (metric aspect, key, value)
    "forgetting": (("forgetting", "multclf_forgetting_rate", "forgetting_rate"),),
    "preservation": (("preservation", "csdr", "csdr"), ("preservation", "lpips_do1", "lpips")),
    "quality": (("quality", "clip_score_unrelated", "clip_score"),),
    "robustness": (("robustness", "attack_success_rate", "asr"),),
    "efficiency": (("efficiency", "run", "edited_parameter_share"),),
}


def metric_values(model: dict, field: str | None = None) -> dict[str, float | None]:
    """``{metric key: value}`` of the metrics the aspects read (``field`` ``"low"``/``"high"``: the interval's end)."""
    return {key: _value(model.get(aspect, {}).get(key), field or value)
            for sources in ASPECT_SOURCES.values() for aspect, key, value in sources}


def aspects_from_values(values: dict[str, float | None], ref_clip_score: float | None) -> dict[str, float | None]:
    """The five aspect scores (0..1, higher is better; ``None`` where not measured) from metric values
    (:data:`RADAR_HOW`); the benchmark's bootstrap calls it on resampled values."""
    out = {}
    for aspect, sources in ASPECT_SOURCES.items():
        out[aspect] = None
        for _, key, _ in sources:
            v = values.get(key)
            if v is None:
                continue
            if aspect in ("forgetting", "robustness", "efficiency"):
                out[aspect] = 1 - v
            elif aspect == "preservation":
                out[aspect] = max(0.0, 1 - v / 100) if key == "csdr" else max(0.0, 1 - v)
            else:  # quality: relative to the original's CLIP score
                out[aspect] = None if not ref_clip_score else min(1.0, v / ref_clip_score)
            break
    return out


def _ref_clip_score(report: dict) -> float | None:
    return _value(report["models"][report["original"]]["quality"].get("clip_score_unrelated"), "clip_score")


def aspect_scores(report: dict) -> dict[str, dict[str, float | None]]:
    """Each model's five aspects on a 0..1 higher-is-better scale (``None`` where the aspect was not measured);
    :data:`RADAR_HOW` says how each is derived. The report's raw numbers stay the reference."""
    return {name: aspects_from_values(metric_values(m), _ref_clip_score(report))
            for name, m in report["models"].items()}


def aspect_intervals(report: dict) -> dict[str, dict[str, list[float] | None]]:
    """Each aspect score's interval ``[low, high]``, mapped from its metric's interval through the same monotone
    transform (quality divides by the original's CLIP score, taken as exact)."""
    ref_cs = _ref_clip_score(report)
    out = {}
    for name, m in report["models"].items():
        point = metric_values(m)
        ends = [aspects_from_values({k: v if point[k] is not None else None
                                     for k, v in metric_values(m, f).items()}, ref_cs) for f in ("low", "high")]
        scores = aspects_from_values(point, ref_cs)
        out[name] = {a: sorted([ends[0][a], ends[1][a]]) if scores[a] is not None and None not in
                     (ends[0][a], ends[1][a]) else None for a in RADAR_HOW}
    return out


def radar_chart(scores: dict[str, dict[str, float | None]], path: Path, title: str | None = None,
                bounds: dict[str, dict[str, list[float] | None]] | None = None) -> None:
    """One outline per model (or per task, for one model) over the five aspects; an aspect an outline was not measured
    on is left out of it (a gap, named 'n/a' in the legend) rather than drawn as 0. ``bounds`` (same keys, an
    aspect's ``[low, high]``) draws each outline's 95 % interval as error bars along its spokes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aspects = list(RADAR_HOW)
    angles = [2 * math.pi * k / len(aspects) for k in range(len(aspects))] + [0.0]
    fig = plt.figure(figsize=(5, 5))
    ax = fig.add_subplot(111, polar=True)
    for name, s in scores.items():  # an unmeasured aspect is a gap in the model's outline, never a 0
        values = [s[a] if s[a] is not None else float("nan") for a in aspects]
        missing = [a for a in aspects if s[a] is None]
        label = name + (f" (n/a: {', '.join(missing)})" if missing else "")
        line, = ax.plot(angles, values + values[:1], marker="o", markersize=3, label=label)
        for k, a in enumerate(aspects):
            b = (bounds or {}).get(name, {}).get(a)
            if b is not None and s[a] is not None:  # the interval as a radial error bar on the spoke
                ax.errorbar([angles[k]], [s[a]], yerr=[[max(0.0, s[a] - b[0])], [max(0.0, b[1] - s[a])]],
                            color=line.get_color(), capsize=4, elinewidth=1.5, fmt="none")
        if not missing:
            ax.fill(angles, values + values[:1], alpha=0.1)
    labels = [a if any(s[a] is not None for s in scores.values()) else f"{a}\n(n/a)" for a in aspects]
    ax.set_xticks(angles[:-1], labels)
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title, pad=18)
    ax.legend(loc="lower right", bbox_to_anchor=(1.25, -0.1), fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def model_index(report: dict, name: str) -> dict:
    """The ``model-index`` block (Hub model card metadata) of one evaluated model."""
    m, task = report["models"][name], report["task"]
    from .metrics.registry import list_metrics

    metrics = []
    for entry in list_metrics():  # every registered metric's columns that name a model-index entry
        result = m.get(entry.aspect, {}).get(entry.key)
        for k, col in enumerate(entry.columns):
            value = _value(result, col.value)
            if col.model_index and value is not None:
                metric = {"type": f"igmu/{col.model_index_type or entry.key}", "name": col.model_index,
                          "value": round(float(value), 6)}
                if k == 0 and _value(result, "low") is not None:  # the interval belongs to the first column
                    # `args` is the Hub's free-form field of a metric: the 95 % interval and its count go there
                    metric["args"] = {"ci95_low": round(float(result["low"]), 6),
                                      "ci95_high": round(float(result["high"]), 6), "n": result.get("n"),
                                      "interval": result.get("interval")}
                metrics.append(metric)
    return {"model-index": [{"name": name, "results": [{
        "task": {"type": "text-to-image", "name": f"Concept unlearning: {task['target']} ({task['category']})"},
        "dataset": {"type": "igmu/evaligmu-prompts", "name": f"EvalIGMU prompts for {task['target']}",
                    "config": report["config_hash"]},
        "metrics": metrics}]}]}


def _fmt(entry, key: str, spec: str = ".3f", interval: bool = False) -> str:
    """A table cell; with ``interval``, the value's 95 % interval and count (``0.42 [0.30, 0.55] n=64``)."""
    if not isinstance(entry, dict):
        return "–"
    if "skipped" in entry:
        return "skipped"
    if interval:
        from .metrics.intervals import interval_text

        return interval_text(entry, key, spec)
    v = entry.get(key)
    return "–" if v is None else format(v, spec) if isinstance(v, (int, float)) else str(v)


def markdown(report: dict, grids: dict[str, str]) -> str:
    """The human-readable report."""
    task, models = report["task"], report["models"]
    lines = [f"# EvalIGMU report: unlearning {task['target']!r}", "",
             f"CatIGMU category **{task['category']}**. {len(report['prompts']['forget'])} forget prompts, "
             f"{len(report['prompts']['unrelated'])} unrelated prompts, {report['generation']['images_per_prompt']} "
             f"image(s) per prompt, seeds from {report['generation']['seed']} (paired across models).", "",
             ]
    from .metrics.registry import list_metrics

    columns = [(entry, col, k == 0) for entry in list_metrics() if entry.aspect != "legacy"
               for k, col in enumerate(entry.columns)]
    lines += ["Each figure: value [95 % interval] n = images, pairs or prompts it rests on (Wilson for rates, a "
              "seeded bootstrap for means, a jackknife for FID; `report.json` names each).", "",
              "| model | " + " | ".join(col.header for _, col, _ in columns) + " |",
              "|---|" + "---|" * len(columns)]
    for name, m in models.items():
        cells = [_fmt(m.get(entry.aspect, {}).get(entry.key), col.value, col.fmt, interval=first)
                 for entry, col, first in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    skipped = sorted({f"{aspect}/{k}: {v['skipped']}" for m in models.values() for aspect, d in m.items()
                      if isinstance(d, dict) for k, v in d.items() if isinstance(v, dict) and "skipped" in v})
    if skipped:
        lines += ["", "Skipped (not applicable or not runnable here):", *[f"- {s}" for s in skipped]]
    lines += ["", "## Five aspects", "", "![radar chart](radar.png)", "",
              *[f"- {a}: {how}" for a, how in RADAR_HOW.items()], "", "## Images", ""]
    for name, file in grids.items():
        lines += [f"**{name}** (top: original, bottom: {name}; columns headed FORGET (red) then UNRELATED with their "
                  f"prompts, same seeds)", "",
                  f"![{name}]({file})", ""]
    legacy = [(name, k, v) for name, m in models.items() for k, v in m["legacy"].items() if "skipped" not in v]
    if legacy:
        lines += ["## Legacy detectors (for comparison only; the IGMU paper shows they misjudge forgetting)", ""]
        for name, k, v in legacy:
            nums = ", ".join(f"{kk} {vv:.3f}" for kk, vv in v.items() if isinstance(vv, float)
                             and kk not in ("low", "high", "confidence"))
            ci = f" (95 % interval of the ratio [{v['low']:.3f}, {v['high']:.3f}], n={v['n']})" if "low" in v else ""
            lines.append(f"- {name} / {k}: {nums}{ci}")
        lines.append("")
    lines += ["Detectors, checkpoint hashes, thresholds, seeds and library versions: `report.json`. Model-index "
              "blocks for the model cards: `model_index/`.", ""]
    return "\n".join(lines)


def comparison_grid(rows: list[list[Image.Image]], labels: list[str], scale: int = 3,
                    headers: list[str] | None = None) -> Image.Image:
    """Rows of equally sized images, each row labelled on the left, upscaled ``scale`` times (nearest); with
    ``headers``, a line of text above each column (its set and prompt, wrapped)."""
    import textwrap

    w, h = rows[0][0].size
    w, h = w * scale, h * scale
    pad, label_w = 4, 90
    wrapped = [textwrap.wrap(t, max(8, w // 6))[:4] for t in headers] if headers else []
    top = (12 * max(map(len, wrapped)) + pad) if wrapped else 0
    grid = Image.new("RGB", (label_w + len(rows[0]) * (w + pad), top + len(rows) * (h + pad)), "white")
    draw = ImageDraw.Draw(grid)
    for c, text_lines in enumerate(wrapped):
        for k, line in enumerate(text_lines):
            draw.text((label_w + c * (w + pad), 12 * k), line, fill="darkred" if c < _forget_columns(headers)
                      else "black")
    for r, (row, label) in enumerate(zip(rows, labels)):
        draw.text((4, top + r * (h + pad) + h // 2 - 5), label, fill="black")
        for c, img in enumerate(row):
            grid.paste(img.resize((w, h), Image.NEAREST), (label_w + c * (w + pad), top + r * (h + pad)))
    return grid


def _forget_columns(headers: list[str]) -> int:
    return sum(h.startswith("FORGET") for h in headers)


def _prompt_of(report: dict, image_id: str) -> str:
    """``forget-0003-0`` -> the forget set's prompt 3."""
    kind, index = image_id.split("-")[:2]
    return report["prompts"][kind][int(index)]


def write_report(report: dict, images: dict[str, dict], out: Path, columns: int = 8) -> None:
    """Write everything under ``out`` (each file atomically); grids and model-index files of models no longer in the
    report (an earlier run into the same folder) are removed, so the folder shows this report only."""
    out.mkdir(parents=True, exist_ok=True)
    report["aspect_scores"] = aspect_scores(report)
    report["aspect_intervals"] = aspect_intervals(report)
    ref = images[report["original"]]
    ids = sorted(i for i in ref if i.startswith("forget-"))[:columns // 2]
    ids += sorted(i for i in ref if i.startswith("unrelated-"))[:columns - len(ids)]
    headers = [f"{i.split('-')[0].upper()}: {_prompt_of(report, i)}" for i in ids]
    grids = {}
    for name in report["models"]:
        if name == report["original"]:
            continue
        grid = comparison_grid([[ref[i] for i in ids], [images[name][i] for i in ids]], ["original", name],
                               headers=headers)
        grids[name] = f"grid_{name}.png"
        with atomic_path(out / grids[name]) as tmp:
            grid.save(tmp, format="PNG")
    for stale in out.glob("grid_*.png"):
        if stale.name not in grids.values():
            stale.unlink()
    for stale in (out / "model_index").glob("*.yaml"):
        if stale.stem not in report["models"]:
            stale.unlink()
    radar_chart(report["aspect_scores"], out / "radar.png", bounds=report["aspect_intervals"])
    for name in report["models"]:
        write_text_atomic(out / "model_index" / f"{name}.yaml", yaml.safe_dump(model_index(report, name),
                                                                                  sort_keys=False))
    write_text_atomic(out / "report.json", json.dumps(report, indent=2, sort_keys=True, default=str))
    write_text_atomic(out / "report.md", markdown(report, grids))
