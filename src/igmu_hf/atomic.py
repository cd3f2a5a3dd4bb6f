"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; when the block ends without error it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_image_atomic(image, path: str | os.PathLike) -> None:
    """Save a PIL image as PNG atomically (a crash never leaves a truncated image in a cache)."""
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
