"""What every config dataclass shares (methods' and attacks'): a JSON dict with its identity, a stable hash,
and ``from_dict`` that names unknown fields instead of failing inside ``__init__``."""

import hashlib
import json
from dataclasses import asdict, fields
from typing import Any, ClassVar


class ConfigBase:
    """Mixin for ``@dataclass`` configs. ``identity_keys`` name the class attributes that say what the config
    belongs to (``method``/``attack``, ``defaults_version``); they lead ``to_dict()`` and ``from_dict`` accepts them."""

    identity_keys: ClassVar[tuple[str, ...]] = ()

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
            raise TypeError(f"{cls.__name__} got unknown field(s) {sorted(unknown)}; fields: {sorted(names)}.")
        return cls(**{k: v for k, v in data.items() if k in names})


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
