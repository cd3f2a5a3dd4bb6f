"""Output folders the commands write into: checked before any work, locked against a second process, and never
stripped of what the user put there.

Each command declares the top-level names it writes (``report.json``, ``images``, ``grid_*.png`` ...).
:func:`output_folder` refuses a folder holding anything igmu_hf did not write there (a user's own ``report.md``) or
the output of another command (a demo into an evaluate folder) unless ``overwrite`` is given; it records in
:data:`RECORD_FILE` which entries each command wrote, so with ``overwrite`` only those are replaced and the user's
other files stay. A lock file beside the folder (``.<name>.igmu-lock``, ``fcntl.flock``, released by the kernel
when the process dies) makes a second process on the same folder stop at once with a clear message.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .atomic import write_text_atomic


RECORD_FILE = ".igmu_outputs.json"
# What each command writes at the top level of its folder (fnmatch patterns).
COMMAND_OUTPUTS: dict[str, tuple[str, ...]] = {
    "evaluate": ("images", "attacks", "model_index", "report.json", "report.md", "radar.png", "grid_*.png"),
    "attack": ("images", "outcomes.jsonl", "outcomes.rank*.jsonl", "summary.json"),
    "demo": ("task.json", "model", "images", "attacks", "model_index", "report.json", "report.md", "radar.png",
             "grid_*.png"),
    "benchmark": ("benchmark.json", "cells", "shared", "report.json", "report.md", "index.html", "leaderboard_*.md",
                  "radar_*.png", "grid_*.png"),
}
_HELD: dict[Path, "OutputFolder"] = {}  # folders this process holds (a demo's evaluate runs inside its claim)


class OutputFolderError(ValueError):
    """The output folder cannot be used as asked (a user error: one line naming the fix)."""


@dataclass
class OutputFolder:
    path: Path
    command: str
    written: set[str] = field(default_factory=set)
    kept: set[str] = field(default_factory=set)  # the user's files it was told (--overwrite) to write beside

    def save_record(self) -> None:
        """Record which top-level entries igmu_hf wrote (those the commands' patterns name and that exist now)."""
        if not self.path.is_dir():
            return
        patterns = {p for c in {self.command, *(h.command for h in _HELD.values() if h.path == self.path)}
                    for p in COMMAND_OUTPUTS.get(c, ())}
        now = {e.name for e in self.path.iterdir() if any(fnmatch.fnmatch(e.name, p) for p in patterns)}
        self.written |= now
        self.kept -= self.written
        write_text_atomic(self.path / RECORD_FILE, json.dumps({"command": self.command, "written": sorted(self.written),
                                                               "kept": sorted(self.kept)}, indent=2) + "\n")


def check_writable_dir(path: str | os.PathLike, what: str = "output_dir") -> Path:
    """``path`` as a folder that can be created or written: a clear error when it or a parent is a file, or when the
    file system refuses (read-only, permissions)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputFolderError(f"`{what}` {str(out)!r} is a file; pass a folder path.")
    for parent in out.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputFolderError(f"`{what}` {str(out)!r} lies under {str(parent)!r}, which is a file; pass a "
                                        f"folder path.")
            target = out if out.exists() else parent
            if not os.access(target, os.W_OK | os.X_OK):
                raise OutputFolderError(f"`{what}` {str(out)!r} cannot be written ({str(target)!r} is read-only or "
                                        f"not yours); choose a writable folder.")
            break
    return out


def lock_path(folder: Path) -> Path:
    return folder.absolute().parent / f".{folder.name}.igmu-lock"


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a file beside it) for the block; another process holding it -> a clear
    error at once, not a wait. Re-entrant within a process (a demo's evaluate runs inside the demo's lock)."""
    folder = check_writable_dir(folder).absolute()
    if folder in _LOCKS:
        yield
        return
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputFolderError(f"`output_dir` {str(folder.name)!r} is in use by {holder}; wait for it to finish "
                                    f"or choose another output_dir.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"igmu {command} (pid {os.getpid()})")
        handle.flush()
        _LOCKS[folder] = handle
        try:
            yield
        finally:
            del _LOCKS[folder]
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


_LOCKS: dict[Path, object] = {}


@contextmanager
def output_folder(path: str | os.PathLike, command: str, overwrite: bool = False, main_process: bool = True
                  ) -> Iterator[OutputFolder]:
    """Claim ``path`` for ``command`` (see the module docstring). On processes other than the main one it only
    yields (the main process checks, locks and records). The record is saved when the block ends, crash or not."""
    out = check_writable_dir(path)
    claim = OutputFolder(out.absolute(), command)
    if not main_process:
        yield claim
        return
    if claim.path in _HELD:  # a nested command inside one that holds the folder
        outer = _HELD[claim.path]
        try:
            yield claim
        finally:
            claim.written, claim.kept = outer.written, outer.kept
            claim.save_record()
            outer.written = claim.written
        return
    with folder_lock(out, command):
        _check_contents(claim, overwrite)
        out.mkdir(parents=True, exist_ok=True)
        claim.save_record()  # at once: a run killed later is still known as this command's
        _HELD[claim.path] = claim
        try:
            yield claim
        finally:
            del _HELD[claim.path]
            claim.save_record()


def _check_contents(claim: OutputFolder, overwrite: bool) -> None:
    out = claim.path
    if not out.exists():
        return
    entries = sorted(e.name for e in out.iterdir() if e.name != RECORD_FILE)
    record = {}
    if (out / RECORD_FILE).exists():
        try:
            record = json.loads((out / RECORD_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = {}
    # ours: what the record lists, and what the recorded command's outputs are named (a run killed before it could
    # update the record leaves its images behind; the record was written when it claimed the folder)
    patterns = COMMAND_OUTPUTS.get(record.get("command"), ())
    claim.written = (set(record.get("written", ())) | {e for e in entries if any(fnmatch.fnmatch(e, p)
                                                                                 for p in patterns)}) & set(entries)
    claim.kept = set(record.get("kept", ())) & set(entries)
    foreign = [e for e in entries if e not in claim.written and e not in claim.kept]
    if overwrite:
        claim.kept |= set(foreign)
        return
    if not entries:
        return
    if foreign:
        shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
        raise OutputFolderError(f"`output_dir` {out.name!r} holds files igmu_hf did not write ({shown}); choose an "
                                f"empty folder, or pass --overwrite to write beside them (only igmu_hf's own outputs "
                                f"are replaced).")
    if record.get("command") not in (None, claim.command):
        raise OutputFolderError(f"`output_dir` {out.name!r} holds the output of `igmu {record['command']}`; choose "
                                f"another folder, or pass --overwrite to replace it.")
