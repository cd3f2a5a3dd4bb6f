"""Input checks every EvalIGMU metric runs before it counts anything: a metric given strings, NaN, duplicates or
impossible numbers refuses with what is wrong and how to fix it, instead of returning a silently wrong number.

The ``evaluate`` modules call these on the raw inputs, before ``datasets`` casts them (a cast turns the string
``"False"`` into ``True`` and NaN into ``True``)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from ..validation import check_number  # noqa: F401  (the one numeric validator, re-exported)


def check_flags(name: str, values: Sequence[Any]) -> list[bool]:
    """``values`` as booleans; only ``True``/``False`` (or numpy booleans, or the integers 0 and 1) are accepted."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"`{name}` must be a list of booleans, got {type(values).__name__}.")
    out, bad = [], []
    for i, v in enumerate(values):
        if type(v).__name__ in ("bool", "bool_") or (isinstance(v, int) and v in (0, 1)):
            out.append(bool(v))
        else:
            bad.append((i, v))
    if bad:
        shown = ", ".join(f"[{i}]={v!r}" for i, v in bad[:5])
        raise ValueError(f"`{name}` must hold booleans (True/False); {len(bad)} value(s) are not: {shown}. "
                         f"Parse strings and drop undefined records before computing the metric.")
    return out


def check_same_length(**columns: Sequence[Any]) -> int:
    """The common length of ``columns``; a clear error when they differ."""
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"One value per item in every column; got lengths {lengths}.")
    return next(iter(lengths.values()), 0)


def check_unique_ids(name: str, ids: Sequence[Any]) -> list[str]:
    """``ids`` as strings, refusing duplicates (a duplicate id would silently collapse two pairs into one)."""
    if any(not isinstance(i, (str, int)) or isinstance(i, bool) for i in ids):
        raise TypeError(f"`{name}` must hold string (or integer) ids, got {[type(i).__name__ for i in ids][:5]}.")
    dup = sorted(str(k) for k, c in Counter(str(i) for i in ids).items() if c > 1)
    if dup:
        raise ValueError(f"`{name}` holds duplicate id(s) {dup[:5]} ({len(dup)} in all); each image needs its own id "
                         f"(e.g. 'forget-0003-0': prompt 3, image 0).")
    return [str(i) for i in ids]


def check_prompts(prompts: Sequence[Any], tokenizer=None, name: str = "prompts") -> list[str]:
    """Non-empty string prompts; with ``tokenizer``, none longer than its ``model_max_length`` (a longer prompt would
    be cut, and the score would silently be the score of another prompt)."""
    if isinstance(prompts, (str, bytes)):
        raise TypeError(f"`{name}` must be a list of strings, not one string.")
    bad = [(i, p) for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(f"`{name}` holds {len(bad)} empty or non-string prompt(s): "
                         f"{', '.join(f'[{i}]={p!r}' for i, p in bad[:5])}. Each image needs its prompt's words.")
    if tokenizer is not None:
        limit = tokenizer.model_max_length
        lengths = [len(ids) for ids in tokenizer(list(prompts), truncation=False)["input_ids"]]
        long = [(i, n) for i, n in enumerate(lengths) if n > limit]
        if long:
            raise ValueError(f"{len(long)} prompt(s) exceed the text encoder's {limit} tokens and would be cut: "
                             f"{', '.join(f'[{i}] {n} tokens' for i, n in long[:5])}. Shorten them.")
    return list(prompts)
