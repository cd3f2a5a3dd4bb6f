"""The training scaffold every trained method shares (DUO, Dark Miner, and the baselines to come).

A :class:`TrainingRun` holds what is the same across methods, so a method writes only its loss and its loop:

- accelerate: the ``Accelerator`` (``mixed_precision``), device and process rank;
- seeded global-batch draws split across processes (:meth:`TrainingRun.share`): every process draws the same
  global batch from a generator seeded by the step, and keeps its slice, so N processes compute the 1-process step;
- gradient averaging by hand (:meth:`TrainingRun.reduce_mean_`) for methods whose trainable set changes between
  stages (DDP wraps one fixed module), and work sharded over processes with the results gathered in order
  (:meth:`TrainingRun.sharded`);
- checkpoint/resume of only the trainable tensors, optimizer and loop position (``checkpointing.py``), every
  ``checkpointing_steps`` steps, the newest ``checkpoints_total_limit`` kept; resuming under a different config is
  refused with the difference listed;
- a progress bar on the local main process and a ``callback(step)`` after each step;
- the run's wall time over its segments (:func:`run_clock`): checkpoints record the time spent so far, and a
  resumed run adds it to its own, so the efficiency aspect reports the true total runtime.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from .checkpointing import check_same_config, load_checkpoint, resolve_checkpoint, save_checkpoint


logger = logging.getLogger(__name__)


def process_state():
    """The accelerate ``PartialState`` of this launch. CPU processes (torchrun with ``ACCELERATE_USE_CPU=1``) must
    say so: without a GPU, a plain ``PartialState()`` is one process, and being a singleton it would stay so."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    warn_single_process_launch()
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


_WARNED_LAUNCH = False


def warn_single_process_launch() -> None:
    """Say so (once, on stderr) when ``accelerate launch --num_processes N`` started a single process: without GPUs
    (or ``--multi_gpu``) its simple launcher runs the script once, sets MASTER_ADDR for the processes it never
    starts, and the run silently has one process."""
    global _WARNED_LAUNCH
    import os
    import sys

    env = os.environ
    if _WARNED_LAUNCH or "MASTER_ADDR" not in env or "ACCELERATE_MIXED_PRECISION" not in env or "WORLD_SIZE" in env \
            or "RANK" in env:
        return
    _WARNED_LAUNCH = True
    print("igmu_hf: `accelerate launch` started ONE process (its simple launcher: no GPUs or no --multi_gpu); on CPUs "
          "start several with `ACCELERATE_USE_CPU=1 torchrun --nproc_per_node N ...`.", file=sys.stderr)


class SegmentClock:
    """Wall time of one unlearning run: this segment's plus what the checkpoint it resumed from had recorded."""

    def __init__(self):
        self.start, self.earlier = time.perf_counter(), 0.0

    def elapsed(self) -> float:
        return self.earlier + time.perf_counter() - self.start


_CLOCK: SegmentClock | None = None


@contextmanager
def run_clock():
    """Time an unlearning run (``Unlearner.unlearn``); the TrainingRuns inside record and resume the total."""
    global _CLOCK
    outer, _CLOCK = _CLOCK, SegmentClock()
    try:
        yield _CLOCK
    finally:
        _CLOCK = outer


class DivergedError(ValueError):
    """Training produced non-finite weights (a user error: the learning rate or steps are too high). Nothing is
    saved: neither a checkpoint nor the model."""


def check_finite(tensors: dict[str, torch.Tensor], config: dict[str, Any], where: str) -> None:
    """Raise :class:`DivergedError`, naming the config's learning-rate and step fields with their values, when any of
    ``tensors`` holds NaN or ±Inf."""
    bad, total = 0, 0
    for t in tensors.values():
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            bad += int((~torch.isfinite(t.detach())).sum())
            total += t.numel()
    if not bad:
        return
    import re

    def fields(pattern: str) -> str:
        hits = [f"{k}={v}" for k, v in (config or {}).items() if re.fullmatch(pattern, k) and v is not None
                and not re.search(r"inference|ddim|sampling", k)]  # the sampler's steps do not train
        return ", ".join(hits[:4])

    lr = fields(r"(.*_)?(lr|learning_rate)(_.*)?")
    steps = fields(r"iterations|(.*_)?(steps|epochs|iterations)|max_.*steps")
    method = (config or {}).get("method", "the method")
    raise DivergedError(f"{method} diverged: {bad} of {total} trained weights ({where}) are not finite (NaN or "
                        f"±Inf), so nothing was saved; lower its learning rate{f' ({lr})' if lr else ''} or steps"
                        f"{f' ({steps})' if steps else ''} and run again.")


class TrainingRun:
    """One resumable, data-parallel training run of a method's trainable tensors.

    Args:
        run_config: what defines the run (the method's ``config.to_dict()`` plus e.g. a data fingerprint); a
            checkpoint written under another one is refused, except for the keys in ``resumable_changes``.
        accelerator: an ``accelerate.Accelerator`` (default: a new one with ``mixed_precision``).
        output_dir: where ``checkpoint-<step>`` folders go (None: no checkpoints).
        checkpointing_steps: write a checkpoint every N steps (None: only when the method forces one).
        checkpoints_total_limit: checkpoints kept (newest first).
        resume_from_checkpoint: a checkpoint folder or ``"latest"`` in ``output_dir``.
        callback: ``callback(step)`` after every step (raising from it stops the run like a crash).
    """

    def __init__(self, run_config: dict[str, Any], accelerator=None, output_dir: str | None = None,
                 checkpointing_steps: int | None = None, checkpoints_total_limit: int | None = 2,
                 resume_from_checkpoint: str | None = None, progress: bool = True,
                 callback: Callable[[Any], None] | None = None, resumable_changes: tuple[str, ...] = (),
                 mixed_precision: str | None = None):
        from accelerate import Accelerator

        if accelerator is None:
            warn_single_process_launch()
        self.accelerator = accelerator or Accelerator(mixed_precision=mixed_precision)
        self.run_config = run_config
        self.output_dir, self.checkpointing_steps = output_dir, checkpointing_steps
        self.checkpoints_total_limit, self.resume_from_checkpoint = checkpoints_total_limit, resume_from_checkpoint
        self.progress, self.callback, self.resumable_changes = progress, callback, tuple(resumable_changes)
        if checkpointing_steps is not None and checkpointing_steps < 1:
            raise ValueError(f"`checkpointing_steps` must be ≥ 1 or None, got {checkpointing_steps}.")

    # ---- processes ----
    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def check_divisible(self, name: str, global_batch: int) -> int:
        """The per-process share of a global batch, or an error naming the field when it does not divide."""
        if global_batch % self.num_processes:
            raise ValueError(f"`{name}` ({global_batch}) must be a multiple of the number of processes "
                             f"({self.num_processes}); it is the global batch that the processes share.")
        return global_batch // self.num_processes

    def share(self, global_batch: int) -> slice:
        """This process's rows of a global batch drawn identically on every process."""
        per = global_batch // self.num_processes
        return slice(self.process_index * per, (self.process_index + 1) * per)

    def reduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average the gradients of ``tensors`` over processes in place (what DDP does for a fixed module; by hand
        for trainable sets that change between stages)."""
        if self.num_processes == 1:
            return
        for t in tensors:
            if t.grad is not None:
                t.grad = self.accelerator.reduce(t.grad, reduction="mean")

    def sharded(self, items: list, fn: Callable[[list], list]) -> list:
        """``fn(items)`` with the items split over the processes (interleaved) and the results gathered in order."""
        if self.num_processes == 1:
            return fn(items)
        from accelerate.utils import gather_object

        n, r = self.num_processes, self.process_index
        mine = items[r::n]
        out = fn(mine) if mine else []
        gathered = gather_object([list(zip(range(r, len(items), n), out))])
        flat = dict(pair for part in gathered for pair in part)
        return [flat[i] for i in range(len(items))]

    # ---- checkpoints ----
    def resume(self, tensors: dict[str, torch.Tensor] | None = None) -> tuple[dict, dict, dict | None] | None:
        """Load the checkpoint named by ``resume_from_checkpoint`` (None when there is none yet).

        Refuses a checkpoint written under another config; copies the saved values into ``tensors`` (the method's
        trainable tensors, by name) and returns ``(state, saved tensors, optimizer state)``.
        """
        path = resolve_checkpoint(self.resume_from_checkpoint, self.output_dir or ".")
        if path is None:
            return None
        state, saved, optimizer_state = load_checkpoint(path)
        check_same_config(state["config"], self.run_config, ignore=self.resumable_changes)
        if _CLOCK is not None:  # the segments before the crash count in the run's runtime
            _CLOCK.earlier = max(_CLOCK.earlier, float(state.get("elapsed_seconds", 0.0)))
        if tensors:
            missing = sorted(set(tensors) - set(saved))
            if missing:
                raise ValueError(f"Checkpoint {path.name} lacks trainable tensor(s) {missing[:3]}; it was written by "
                                 f"another run: start a fresh run in another output_dir.")
            with torch.no_grad():
                for name, t in tensors.items():
                    t.copy_(saved[name])
        logger.info("Resumed from %s (step %d).", path, state["step"])
        return state, saved, optimizer_state

    def resume_training(self, tensors: dict[str, torch.Tensor], optimizer, key: str, default: Any
                        ) -> tuple[Any, int]:
        """Resume a plain step loop: restore ``tensors`` and the optimizer from the checkpoint (if any) and return
        ``(state[key], step)`` saved there, else ``(default, 0)``."""
        resumed = self.resume(tensors)
        if resumed is None:
            return default, 0
        saved, _, optimizer_state = resumed
        optimizer.load_state_dict(optimizer_state)
        return saved[key], saved["step"]

    def checkpoint(self, step: int, state: dict[str, Any], tensors: dict[str, torch.Tensor],
                   optimizer_state: dict | None = None, force: bool = False) -> None:
        """Write ``checkpoint-<step>`` (main process only) when ``step`` is a multiple of ``checkpointing_steps``,
        or always with ``force``; nothing without ``output_dir``."""
        due = force or (self.checkpointing_steps and step % self.checkpointing_steps == 0)
        if not (self.output_dir and due and self.accelerator.is_main_process):
            return
        check_finite(tensors, self.run_config, f"at step {step}")  # a diverged state is never checkpointed
        elapsed = {"elapsed_seconds": _CLOCK.elapsed()} if _CLOCK is not None else {}
        save_checkpoint(self.output_dir, step, {"config": self.run_config, **state, **elapsed}, tensors,
                        optimizer_state, self.checkpoints_total_limit)

    # ---- loop ----
    def steps(self, first: int, total: int, desc: str):
        """``range(first, total)`` with a progress bar on the local main process."""
        return tqdm(range(first, total), desc=f"{desc} training (steps)", initial=first, total=total,
                    disable=not (self.progress and self.accelerator.is_local_main_process))

    def after_step(self, value: Any) -> None:
        if self.callback is not None:
            self.callback(value)


def shared_dataset(folder: str | Path, build: Callable[[], Any], accelerator, fingerprint: dict[str, Any]):
    """The data a method prepares once before training (DUO's pairs, Dark Miner's image pool), shared by every
    process and reused by the next run: a ``datasets`` folder written atomically by the main process.

    ``build()`` is called on every process (so it may shard its work with :meth:`TrainingRun.sharded`); the main
    process's return value is saved. ``fingerprint`` (the config fields that define the data) is stored beside it; a
    folder built under other values is refused rather than silently reused.
    """
    import json
    import shutil

    from datasets import load_from_disk

    folder = Path(folder)
    record = folder / "igmu_prepared.json"
    wanted = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
    if not (folder / "dataset_info.json").exists():
        data = build()
        if accelerator.is_main_process:
            tmp = folder.with_name(folder.name + ".tmp")
            if tmp.exists():  # left by a crashed run
                shutil.rmtree(tmp)
            data.save_to_disk(str(tmp))
            (tmp / "igmu_prepared.json").write_text(json.dumps(wanted, indent=2, sort_keys=True))
            tmp.rename(folder)
        accelerator.wait_for_everyone()
    elif record.exists():
        found = json.loads(record.read_text())
        diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        if diff:
            raise ValueError(f"{folder.name} was prepared with other values of {', '.join(diff)} (e.g. {diff[0]}: "
                             f"{found.get(diff[0])!r}, now {wanted.get(diff[0])!r}); point the run at another "
                             f"folder (--data_dir) or delete this one to rebuild it.")
    return load_from_disk(str(folder))
