"""How a run-spec field declares itself: `flag(...)` metadata makes it a command-line flag
(latentmas_ray/spec/flags.py builds the parser from it); `check` raises the one-line ConfigError
that every config dataclass's __post_init__ uses."""

from __future__ import annotations

import dataclasses
from typing import Any

from latentmas_ray.errors import ConfigError


def flag(help: str, *, name: str | None = None, negate: bool = False) -> dict[str, Any]:
    """Field metadata: the field is a command-line flag `--<name or field name>`. negate: a
    boolean flag that stores False (`--keep_cache_at_zero_steps` turns a quirk off)."""
    return {"help": help, "flag": name, "negate": negate}


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def from_dict(cls, d: dict[str, Any], where: str = ""):
    """`cls` (a config dataclass) from its `to_dict()` form; nested sections become their
    dataclasses; an unknown key is a ConfigError naming it."""
    if not isinstance(d, dict):
        raise ConfigError(f"config section {where or cls.__name__} must be a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in fields:
            raise ConfigError(f"unknown config field {where + key!r}")
        sub = _section_class(fields[key])
        kwargs[key] = from_dict(sub, value, f"{where}{key}.") if sub else value
    return cls(**kwargs)


def _section_class(f: dataclasses.Field):
    """The dataclass of a nested section field (model, method, execution, vllm), else None."""
    factory = f.default_factory
    return factory if factory is not dataclasses.MISSING and dataclasses.is_dataclass(factory) else None


def sections(cls) -> dict[str, type]:
    """The nested section fields of a config dataclass: {name: dataclass}."""
    return {f.name: s for f in dataclasses.fields(cls) if (s := _section_class(f))}
