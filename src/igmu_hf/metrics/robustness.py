"""Robustness: attack success rate from per-prompt attack outcomes (``outcomes.jsonl`` of ``igmu attack``)."""

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Iterable, Mapping


def asr_from_outcomes(outcomes: Iterable[Mapping | object]) -> dict:
    """ASR = (pre-attack successes + attack successes) / N from outcome records (dicts or ``AttackOutcome``).

    Each record needs ``success`` and ``pre_attack_success``; lower ASR is better (more robust).
    """
    from ..attacks.base import attack_success_rate
    from .checks import check_flags

    rows = []
    for i, o in enumerate(outcomes):
        get = o.get if isinstance(o, Mapping) else (lambda k, _o=o: getattr(_o, k, None))
        if get("success") is None or get("pre_attack_success") is None:
            raise ValueError(f"Outcome {i} lacks `success`/`pre_attack_success`; pass the records of an igmu attack "
                             f"run (outcomes.jsonl).")
        success, pre = check_flags("success", [get("success")]), check_flags("pre_attack_success",
                                                                             [get("pre_attack_success")])
        rows.append(SimpleNamespace(success=success[0], pre_attack_success=pre[0]))
    return attack_success_rate(rows)


def read_outcomes(path: str | Path) -> list[dict]:
    """Records of an ``outcomes.jsonl`` file (or an attack folder holding one); a line cut by a crash is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / "outcomes.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"No attack outcomes at {str(path)!r}; run `igmu attack` first.")
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
