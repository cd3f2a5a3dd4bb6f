"""Efficiency (seed 000 §5.3): runtime, edited-parameter share, editing technique and multi-concept support, read
from the run metadata every method writes (``igmu_run.json``)."""

import json
from pathlib import Path
from typing import Mapping


def efficiency_from_run(run: Mapping | str | Path) -> dict:
    """The efficiency aspect of one unlearning run (a metadata dict or a pipeline folder with ``igmu_run.json``)."""
    if not isinstance(run, Mapping):
        from ..hub import RUN_FILE

        path = Path(run) / RUN_FILE if Path(run).is_dir() else Path(run)
        if not path.exists():
            raise FileNotFoundError(f"No run metadata at {str(path)!r}: efficiency is read from the {RUN_FILE} an "
                                    f"igmu method writes next to the unlearned pipeline.")
        run = json.loads(path.read_text())
    from .checks import check_number

    missing = [k for k in ("runtime_seconds", "edited_parameter_count", "total_parameter_count") if k not in run]
    if missing:
        raise ValueError(f"Run metadata lacks {missing}; it was not written by an igmu_hf method.")
    check_number("runtime_seconds", run["runtime_seconds"], low=0)
    total = check_number("total_parameter_count", run["total_parameter_count"], low=0, low_inclusive=False)
    check_number("edited_parameter_count", run["edited_parameter_count"], low=0, high=total)
    multi = run.get("multi_concept")
    if multi is None and run.get("method"):
        try:
            from ..methods import get_method

            multi = bool(get_method(run["method"]).multi_concept)
        except (KeyError, ValueError):
            multi = None
    return {"runtime_seconds": float(run["runtime_seconds"]),
            "edited_parameter_share": run["edited_parameter_count"] / run["total_parameter_count"],
            "edited_parameter_count": int(run["edited_parameter_count"]), "technique": run.get("technique", ""),
            "multi_concept": multi, "method": run.get("method"), "num_processes": run.get("extra", {}).get(
                "num_processes") if isinstance(run.get("extra"), Mapping) else None,
            # inference-time methods (SLD): what they cost at every generation, e.g. UNet rows per step vs stock 2
            "inference_cost": run.get("inference_cost")}
