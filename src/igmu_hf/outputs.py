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
import glob
import json
import os
import secrets
import shutil
import stat
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .atomic import write_text_atomic


RECORD_FILE = ".igmu_outputs.json"
LOCK_SUFFIX = ".igmu-lock"
# Folders igmu_hf assembles beside an output folder (``.<name>.igmu-tmp-XXXX``) and the previous run it moves aside
# while swapping a new one in (``.<name>.igmu-backup-XXXX``) carry this marker file; only a folder with it (naming
# its kind and the output folder) is ever treated as igmu_hf's own, so a user's ``.<name>.old`` is never touched.
MARKER_FILE = ".igmu_partial"
PARTIAL_TAGS = {"tmp": ".igmu-tmp-", "backup": ".igmu-backup-"}
# What each command writes at the top level of its folder (fnmatch patterns).
COMMAND_OUTPUTS: dict[str, tuple[str, ...]] = {
    "evaluate": ("images", "attacks", "model_index", "report.json", "report.md", "radar.png", "grid_*.png"),
    "attack": ("images", "outcomes.jsonl", "outcomes.rank*.jsonl", "summary.json"),
    "demo": ("task.json", "model", "images", "attacks", "model_index", "report.json", "report.md", "radar.png",
             "grid_*.png"),
    "benchmark": ("benchmark.json", "cells", "shared", "report.json", "report.md", "index.html", "leaderboard_*.md",
                  "radar_*.png", "grid_*.png", "errorbars_*.png"),
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
    """``path`` as a folder that can be created or written: a clear error when it or a parent is a file, when it is
    a symbolic link (igmu_hf never writes through a link it did not create: pass the folder it points to), or when
    the file system refuses (read-only, permissions)."""
    out = Path(path)
    if out.is_symlink():
        raise OutputFolderError(f"`{what}` {str(out)!r} is a symbolic link (to {os.readlink(out)!r}); igmu_hf does "
                                f"not write through links: pass the folder it points to if you mean to write there.")
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
    return folder.absolute().parent / f".{folder.name}{LOCK_SUFFIX}"


def _open_lock(path: Path) -> int:
    """The lock file's descriptor, opened without following a symbolic link and only if it is a regular file."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OutputFolderError(f"A symbolic link sits where igmu_hf's lock file goes ({path.name!r}); igmu_hf "
                                    f"does not write through links: remove it and run again.") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputFolderError(f"{path.name!r}, where igmu_hf's lock file goes, is not a regular file; remove it and "
                                f"run again.")
    return fd


@contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (a file beside it) for the block; another process holding it -> a clear
    error at once, not a wait. Re-entrant within a process (a demo's evaluate runs inside the demo's lock). The lock
    file is removed when the block ends (a lock taken on a file that was meanwhile removed is taken again)."""
    folder = check_writable_dir(folder).absolute()
    if folder in _LOCKS:
        yield
        return
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(50):
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise OutputFolderError(f"`output_dir` {str(folder.name)!r} is in use by {holder}; wait for it to finish "
                                    f"or choose another output_dir.") from None
        try:
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder before us removed the file as we opened it: take the new one
    else:
        raise OutputFolderError(f"Could not lock `output_dir` {folder.name!r} (its lock file keeps changing); run "
                                f"again.")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"igmu {command} (pid {os.getpid()})".encode(), 0)
        _LOCKS[folder] = fd
        try:
            yield
        finally:
            del _LOCKS[folder]
            try:
                if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


_LOCKS: dict[Path, int] = {}


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


def is_bookkeeping(entry: Path) -> bool:
    """igmu_hf's own bookkeeping inside an output folder: its record, lock files of folders inside it, and marked
    partial folders (never anything a user could have made by accident under another name)."""
    name = entry.name
    if name in (RECORD_FILE, MARKER_FILE):
        return not entry.is_symlink()
    if name.startswith(".") and name.endswith(LOCK_SUFFIX):
        return entry.is_file() and not entry.is_symlink()
    return partial_kind(entry) is not None


def partial_kind(folder: Path) -> str | None:
    """``"tmp"`` or ``"backup"`` for a folder igmu_hf made beside an output folder (it holds the marker file naming
    its kind and the output folder), else None."""
    marker = folder / MARKER_FILE
    if folder.is_symlink() or not folder.is_dir() or marker.is_symlink() or not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    tag = PARTIAL_TAGS.get(kind)
    if tag is None or not folder.name.startswith(f".{data.get('of')}{tag}"):
        return None
    return kind


def partial_path(out: Path, kind: str) -> Path:
    """A new, unused name for a partial folder of ``kind`` beside ``out`` (the caller holds ``out``'s lock)."""
    while True:
        path = out.with_name(f".{out.name}{PARTIAL_TAGS[kind]}{secrets.token_hex(4)}")
        if not os.path.lexists(path):
            return path


def make_partial(out: Path, kind: str) -> Path:
    """A new marked folder beside ``out`` (:data:`MARKER_FILE`); the caller removes the marker when it is done."""
    folder = partial_path(out, kind)
    folder.mkdir()
    mark(folder, kind, out)
    return folder


def mark(folder: Path, kind: str, out: Path) -> None:
    """Write the marker naming ``kind`` and ``out`` into ``folder`` (new, or about to be renamed to a partial name)."""
    marker = folder / MARKER_FILE
    if marker.is_symlink():
        marker.unlink()
    marker.write_text(json.dumps({"kind": kind, "of": out.name}))


def partial_folders(out: Path, kind: str) -> list[Path]:
    """igmu_hf's marked partial folders of ``kind`` beside ``out``, oldest first."""
    found = [p for p in out.parent.glob(f".{glob.escape(out.name)}{PARTIAL_TAGS[kind]}*") if partial_kind(p) == kind]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def remove_partials(out: Path, kind: str) -> None:
    for folder in partial_folders(out, kind):
        shutil.rmtree(folder, ignore_errors=True)


def shown(names: list[str]) -> str:
    """The first few names of a list, for a one-line message."""
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def collision_error(folder: str, colliding: list[str], writer: str) -> OutputFolderError:
    """The refusal when files igmu_hf did not write sit where ``writer`` writes (``--overwrite`` never replaces
    them)."""
    return OutputFolderError(f"`output_dir` {folder!r} holds {shown(colliding)}, which igmu_hf did not write, where "
                             f"{writer} writes; move them away or choose another output_dir (--overwrite replaces "
                             f"only igmu_hf's own files).")


def say_kept(folder: str, names: list[str]) -> None:
    """Tell the user (stderr) which of their files an --overwrite run kept."""
    if names:
        print(f"igmu_hf: Kept {len(names)} file(s) in {folder} that igmu_hf did not write: {shown(names)}",
              file=sys.stderr)


def _check_contents(claim: OutputFolder, overwrite: bool) -> None:
    out = claim.path
    if not out.exists():
        return
    entries = sorted(e.name for e in out.iterdir() if not is_bookkeeping(e))
    record = {}
    if (out / RECORD_FILE).is_file():
        try:
            record = json.loads((out / RECORD_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = {}
    record = record if isinstance(record, dict) else {}
    # ours: what the record lists, and what the recorded command's outputs are named (a run killed before it could
    # update the record leaves its images behind; the record was written when it claimed the folder)
    patterns = COMMAND_OUTPUTS.get(record.get("command"), ())
    claim.written = (set(record.get("written", ())) | {e for e in entries if any(fnmatch.fnmatch(e, p)
                                                                                 for p in patterns)}) & set(entries)
    claim.kept = set(record.get("kept", ())) & set(entries)
    foreign = [e for e in entries if e not in claim.written and e not in claim.kept]
    mine = COMMAND_OUTPUTS.get(claim.command, ())
    linked = [e for e in sorted(claim.written) if (out / e).is_symlink()]
    if linked:
        raise OutputFolderError(f"`output_dir` {out.name!r} holds a symbolic link where igmu_hf writes "
                                f"({shown(linked)}); igmu_hf does not write through links: remove it and run again.")
    if overwrite:
        colliding = [e for e in foreign + sorted(claim.kept) if any(fnmatch.fnmatch(e, p) for p in mine)]
        if colliding:
            raise collision_error(out.name, colliding, f"`igmu {claim.command}`")
        say_kept(out.name, foreign)
        claim.kept |= set(foreign)
        return
    if not entries:
        return
    if foreign:
        raise OutputFolderError(f"`output_dir` {out.name!r} holds files igmu_hf did not write ({shown(foreign)}); "
                                f"choose an empty folder, or pass --overwrite to write beside them (only igmu_hf's "
                                f"own outputs are replaced).")
    if record.get("command") not in (None, claim.command):
        raise OutputFolderError(f"`output_dir` {out.name!r} holds the output of `igmu {record['command']}`; choose "
                                f"another folder, or pass --overwrite to replace it.")
