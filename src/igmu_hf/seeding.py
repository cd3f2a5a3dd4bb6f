"""Seeded randomness that leaves the caller's random state alone.

Library code never reseeds the global RNG for its caller: ``with seeded(seed): ...`` forks torch's CPU and CUDA
generators (``torch.random.fork_rng``), seeds them, and restores them on exit, so what runs inside is reproducible and
what runs after it is exactly as it would have been without it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global generators seeded by ``seed`` (unchanged when None), then restore them."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        if seed is not None:
            torch.manual_seed(seed)
        yield
