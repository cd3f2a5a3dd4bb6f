"""How the ``igmu`` command and the example scripts end on a user error: one line on stderr naming the problem and
the fix, exit status 2. User errors are what the user can fix: bad values (``ValueError``, which the library raises
with the fix in its message), unknown config fields, and the file system refusing (missing files, a path under a
file, read-only or busy mounts, permissions, a full disk). Programming errors keep their traceback."""

from __future__ import annotations

import errno
import json
import sys
from typing import Any, Callable

from .config import UnknownFieldError


USER_ERRORS = (ValueError, UnknownFieldError, OSError)
_OS_HINTS = {
    errno.EROFS: "the file system is read-only; choose a writable folder",
    errno.EACCES: "permission denied; choose a folder you can write",
    errno.EPERM: "operation not permitted; choose a folder you can write",
    errno.ENOSPC: "the disk is full; free space or choose another disk",
    errno.EBUSY: "the path is busy (a mount point?); choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; fix the path",
    errno.EEXIST: "a file is in the way of a folder; fix the path",
    errno.EISDIR: "a folder was given where a file is expected; pass the file",
    errno.ENOENT: "it does not exist; check the path",
}


def user_message(err: BaseException) -> str:
    """One line for a user error."""
    if isinstance(err, OSError) and not isinstance(err, FileNotFoundError) or \
            (isinstance(err, FileNotFoundError) and err.filename is not None):
        where = " ".join(repr(str(f)) for f in (err.filename, err.filename2) if f is not None)
        hint = _OS_HINTS.get(err.errno or -1)
        text = f"{err.strerror or type(err).__name__}{': ' + where if where else ''}"
        text += f" ({hint})" if hint else ""
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def run_command(fn: Callable[[], int | None], prog: str) -> int:
    """``fn()``'s exit status, or 2 with ``prog: error: <one line>`` for a user error; 130 on Ctrl-C (long runs
    resume when the same command is run again)."""
    try:
        return fn() or 0
    except USER_ERRORS as err:
        print(f"{prog}: error: {user_message(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130


def json_arg(flag: str, text: str) -> dict[str, Any]:
    """A JSON-object flag (``--method_kwargs``) parsed, or an error naming the flag and the fix."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err.msg} at character {err.pos}); pass an object such as "
                         f"'{{\"erase_scale\": 1.0}}'.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object such as '{{\"erase_scale\": 1.0}}', got {text!r}.")
    return value


def parse_seeds(text: str | None, flag: str = "--seeds") -> list[int] | None:
    """``--seeds 0,1,2`` as a list of distinct whole numbers (``None`` when not given), or an error naming the flag."""
    if text is None:
        return None
    parts = [x.strip() for x in str(text).split(",") if x.strip()]
    if not parts or not all(x.isdigit() for x in parts):
        raise ValueError(f"{flag} takes comma-separated whole numbers such as 0,1,2; got {text!r}.")
    seeds = [int(x) for x in parts]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"{flag} names a seed twice: {text!r}.")
    return seeds


def check_hub_id(flag: str, repo_id: str | None) -> str:
    """A Hub repo id ``org/name`` (checked before any work)."""
    import re

    if not repo_id or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", repo_id) or ".." in repo_id:
        raise ValueError(f"{flag} needs a Hub repo id like 'igmu/mini-uce-circle', got {repo_id!r}.")
    return repo_id
