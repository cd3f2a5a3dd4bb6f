"""What the CLI tests share: run ``igmu`` in-process, assert a one-line user error, hash a folder's files."""

import hashlib
import os
from pathlib import Path

from igmu_hf.cli import main as igmu


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = igmu(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert rc == 2, err
    assert "Traceback" not in err and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (links recorded by their target, never followed)."""
    found = {}
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "link:" + os.readlink(path)
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found
