"""What every config dataclass shares (methods' and attacks'): a JSON dict with its identity, a stable hash,
and ``from_dict`` that names unknown fields instead of failing inside ``__init__``."""

import hashlib
import json
import types
import typing
from dataclasses import asdict, fields
from typing import Any, ClassVar


class UnknownFieldError(TypeError):
    """A config got a field it does not have (a user error: the CLI prints it in one line)."""


class ConfigBase:
    """Mixin for ``@dataclass`` configs. ``identity_keys`` name the class attributes that say what the config
    belongs to (``method``/``attack``, ``defaults_version``); they lead ``to_dict()`` and ``from_dict`` accepts them."""

    identity_keys: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        """Every numeric field finite and in its range (:mod:`igmu_hf.validation`); subclasses call this first."""
        from .validation import check_config_numbers, check_templates

        check_config_numbers(self)
        check_templates(self)

    def to_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.identity_keys}, **asdict(self)}

    def config_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the sorted JSON of ``to_dict()``."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names - set(cls.identity_keys)
        if unknown:
            raise UnknownFieldError(f"{cls.__name__} got unknown field(s) {sorted(unknown)}; fields: {sorted(names)}.")
        hints = typing.get_type_hints(cls)
        for k, v in data.items():
            if k in names and not _matches(v, hints.get(k, Any)):
                raise ValueError(f"{cls.__name__} field `{k}` must be {_type_name(hints[k])}, got {v!r} "
                                 f"({type(v).__name__}).")
        return cls(**{k: v for k, v in data.items() if k in names})


def _matches(value: Any, hint: Any) -> bool:
    """Whether a JSON-like ``value`` fits a field annotation (int for float is fine; bool is not an int)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        if isinstance(value, str) and args and args[0] is str:
            return True  # one string for a list of strings: the configs wrap it
        return isinstance(value, (list, tuple)) and (not args or all(_matches(v, args[0]) for v in value))
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


class Registry:
    """Names -> classes (methods, attacks). Registering sets ``cls.config_class.<kind> = name``, so a config knows
    what it configures."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str, cls: type) -> None:
        if name in self._classes and self._classes[name] is not cls:
            raise ValueError(f"{self.kind.capitalize()} {name!r} is already registered to "
                             f"{self._classes[name].__name__}.")
        setattr(cls.config_class, self.kind, name)
        self._classes[name] = cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def get(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"Unknown {self.kind} {name!r}; available {self.kind}s: {', '.join(self.names())}.")
        return self._classes[name]
