"""Resumable training state: atomic ``checkpoint-<step>`` folders that hold only what a run cannot recompute.

accelerate's ``save_state`` stores every prepared model in full (3.4 GB for an SD1.4 UNet); an adapter method only
needs its trainable tensors, its optimizer and the loop position, so this small format is written by hand. Each
folder holds ``state.json`` (position, config, anything JSON), ``tensors.safetensors`` and, optionally,
``optimizer.pt``. A checkpoint is written to a temporary folder and renamed into place, so a crash never leaves a
half-written one; the newest ``checkpoints_total_limit`` are kept.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch


STATE_FILE = "state.json"
TENSORS_FILE = "tensors.safetensors"
OPTIMIZER_FILE = "optimizer.pt"


def save_checkpoint(output_dir: str | os.PathLike, step: int, state: dict[str, Any],
                    tensors: dict[str, torch.Tensor], optimizer_state: dict | None = None,
                    checkpoints_total_limit: int | None = None) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically; return its path."""
    from safetensors.torch import save_file

    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"checkpoint-{step}"
    tmp = Path(tempfile.mkdtemp(prefix=f".checkpoint-{step}.", dir=root))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / TENSORS_FILE))
        if optimizer_state is not None:
            torch.save(optimizer_state, tmp / OPTIMIZER_FILE)
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2, sort_keys=True))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if checkpoints_total_limit is not None:
        for old in list_checkpoints(root)[:-max(1, checkpoints_total_limit)]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints under ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("checkpoint-*") if p.is_dir() and (p / STATE_FILE).exists()
             and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def resolve_checkpoint(resume_from_checkpoint: str | os.PathLike | None, output_dir: str | os.PathLike) -> Path | None:
    """``"latest"`` → the newest checkpoint in ``output_dir`` (None if there is none yet); a path → that folder."""
    if resume_from_checkpoint is None:
        return None
    if str(resume_from_checkpoint) == "latest":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(resume_from_checkpoint)
    if not (path / STATE_FILE).exists():
        raise ValueError(f"`resume_from_checkpoint` {str(path)!r} is not a checkpoint folder (no {STATE_FILE}); pass "
                         f"a `checkpoint-<step>` folder or 'latest'.")
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict | None]:
    """``(state, tensors, optimizer_state)`` of a checkpoint folder."""
    from safetensors.torch import load_file

    path = Path(path)
    state = json.loads((path / STATE_FILE).read_text())
    tensors = load_file(str(path / TENSORS_FILE))
    opt = path / OPTIMIZER_FILE
    return state, tensors, (torch.load(opt, weights_only=True) if opt.exists() else None)


def config_diff(saved: dict[str, Any], current: dict[str, Any], ignore: tuple[str, ...] = (),
                before: str = "before") -> list[str]:
    """``"field: <before>=… now=…"`` for every field whose value differs between two config dicts."""
    keys = sorted((set(saved) | set(current)) - set(ignore))
    return [f"{k}: {before}={saved.get(k, '<absent>')!r} now={current.get(k, '<absent>')!r}" for k in keys
            if _jsonable(saved.get(k)) != _jsonable(current.get(k))]


def check_same_config(saved: dict[str, Any], current: dict[str, Any], ignore: tuple[str, ...] = ()) -> None:
    """Refuse to resume a run under a different config: raise ``ValueError`` listing every differing field."""
    diff = config_diff(saved, current, ignore, before="checkpoint")
    if diff:
        raise ValueError("Cannot resume: the checkpoint was written under a different config (" + "; ".join(diff) +
                         "). Resume with the checkpoint's settings, or start a fresh run in another output_dir.")


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
