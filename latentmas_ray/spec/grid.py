"""A sweep's grid: `--grid FIELD=V1,V2,...` parsed, checked and expanded into run configs.

    axes = parse_grid(["latent_steps=0,10,20", "latent_space_realign=false,true"])
    points = expand(base_cfg, axes)      # one Point per distinct run, duplicates merged

A grid axis is any method field of the run specification (the fields of `MethodConfig`, by
their flag names: latent_steps, latent_space_realign, memory, prompt, agents, temperature,
num_return_sequences, max_new_tokens, ...), `--method` included. Values are typed from the
field (int, float, bool, a choice), so a typo fails here, in one line, before any model loads;
so does a combination the run specification refuses (it names the point).

Points that are the same run are merged: settings a method never reads (the baseline has no
latent steps, TextMAS no realignment) are put back to their defaults (`normalize_method`), so
the baseline under every latent_steps value is ONE run, with one identity and one folder.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.config import MethodConfig, RunConfig, from_dict

Axis = tuple[str, list[Any]]          # (flag name, typed values in the order given)

# MethodConfig fields each method never reads (checked against methods/: grep method_cfg.):
# the baseline's prompt is always the single chat ("single" template, agent name "Assistant");
# TextMAS has no latent steps, realignment, <think> suffix or latent memory.
_LATENT_ONLY = ("latent_steps", "latent_space_realign", "think", "judger_drops_cache_at_zero_steps",
                "memory", "memory_layers", "memory_top_k")
UNREAD = {"baseline": ("prompt", "text_mas_context_length") + _LATENT_ONLY,
          "text_mas": _LATENT_ONLY,
          "latent_mas": ("text_mas_context_length",)}
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def method_fields() -> dict[str, dataclasses.Field]:
    """Flag name -> MethodConfig field, for every field with a flag."""
    return {(f.metadata.get("flag") or f.name): f for f in dataclasses.fields(MethodConfig)
            if "help" in f.metadata}


def _convert(name: str, f: dataclasses.Field, text: str) -> Any:
    """One grid value as the field's type (a one-line ConfigError when it is not one)."""
    tp = typing.get_type_hints(MethodConfig)[f.name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union or type(None) in typing.get_args(tp):
        if text.strip().lower() in ("none", "null"):
            return None
        tp = args[0]
    t = text.strip()
    if typing.get_origin(tp) is typing.Literal:
        if t not in typing.get_args(tp):
            raise ConfigError(f"--grid {name}: {t!r} is not one of {', '.join(typing.get_args(tp))}")
        return t
    if tp is bool:
        if t.lower() not in _TRUE + _FALSE:
            raise ConfigError(f"--grid {name}: {t!r} is not a boolean (use true/false)")
        return t.lower() in _TRUE       # the flag's sense (negated flags flip in _point_config)
    try:
        return int(t) if tp is int else float(t) if tp is float else t
    except ValueError:
        raise ConfigError(f"--grid {name}: {t!r} is not a{'n int' if tp is int else ' number'}") from None


def parse_grid(items: list[str] | None) -> list[Axis]:
    """`["FIELD=V1,V2", ...]` (or "FIELD=V1;V2" when a value holds commas, e.g.
    memory_layers=0,1;2,3) -> [(flag name, typed values)]. Refuses an unknown or non-method
    field, an empty or repeated value list, and a field given twice."""
    fields = method_fields()
    axes: list[Axis] = []
    for item in items or []:
        name, eq, values = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if not eq or not name:
            raise ConfigError(f"--grid {item!r}: write FIELD=V1,V2,... (e.g. latent_steps=0,10,20)")
        if name not in fields:
            raise ConfigError(f"--grid {name}: not a method field a sweep can vary; use one of "
                              f"{', '.join(sorted(fields))}")
        if name in (a for a, _ in axes):
            raise ConfigError(f"--grid {name} is given twice; list all its values once")
        sep = ";" if ";" in values else ","     # ";" when a value has commas (memory_layers)
        texts = [v.strip() for v in values.split(sep) if v.strip()]
        if not texts:
            raise ConfigError(f"--grid {name}: no values after '='")
        typed = [_convert(name, fields[name], v) for v in texts]
        if len(set(map(repr, typed))) != len(typed):
            raise ConfigError(f"--grid {name}: a value is listed twice ({values})")
        axes.append((name, typed))
    if not axes:
        raise ConfigError("a sweep needs at least one --grid FIELD=V1,V2,... (e.g. latent_steps=0,10,20)")
    return axes


def normalize_method(cfg: RunConfig) -> RunConfig:
    """cfg with the method settings its method never reads put back to their defaults, so two
    configs that run the same computation are one run (one identity, one folder)."""
    default = MethodConfig()
    changes = {f: getattr(default, f) for f in UNREAD[cfg.method.method]}
    if cfg.method.method == "baseline" and cfg.method.agents:
        changes.pop("prompt")       # with agents the team, not the topology, is read
    return dataclasses.replace(cfg, method=dataclasses.replace(cfg.method, **changes))


@dataclass
class Point:
    """One distinct run of the grid: its config and every grid setting that maps to it."""
    cfg: RunConfig
    settings: list[dict[str, Any]] = field(default_factory=list)   # flag name -> value

    @property
    def label(self) -> str:
        """The settings this run reads, e.g. "method=latent_mas latent_steps=10" (a merged
        baseline point shows no latent steps)."""
        unread = set(UNREAD[self.cfg.method.method])
        fields = method_fields()
        return " ".join(f"{k}={v}" for k, v in self.settings[0].items()
                        if fields[k].name not in unread) or "default settings"


def _point_config(base: dict[str, Any], setting: dict[str, Any]) -> RunConfig:
    fields = method_fields()
    tree = copy.deepcopy(base)
    for name, value in setting.items():
        f = fields[name]
        tree["method"][f.name] = (not value) if f.metadata.get("negate") else value
    try:
        return normalize_method(from_dict(RunConfig, tree))
    except ConfigError as e:
        shown = " ".join(f"{k}={v}" for k, v in setting.items())
        raise ConfigError(f"grid point {shown}: {e}") from None


def expand(base: RunConfig, axes: list[Axis], identity: Callable[[dict], str]) -> list[Point]:
    """Every combination of the axes' values as a run config, merged by `identity` (the store's
    run_id of a config dict), in grid order (the first axis varies slowest)."""
    base_dict = base.to_dict()
    base_dict["output"] = None
    names = [n for n, _ in axes]
    points: dict[str, Point] = {}
    for values in itertools.product(*(v for _, v in axes)):
        setting = dict(zip(names, values))
        cfg = _point_config(base_dict, setting)
        points.setdefault(identity(cfg.to_dict()), Point(cfg)).settings.append(setting)
    return list(points.values())


def grid_id(base: RunConfig, axes: list[Axis], point_ids: list[str]) -> str:
    """A stable folder name for a sweep: the set of its points' identities and its grid."""
    payload = repr((sorted(point_ids), [(n, list(map(repr, v))) for n, v in axes]))
    name = base.model.name_or_path
    model = str(name).rstrip("/").rsplit("/", 1)[-1] if name else "smollm2-135m"
    return f"sweep-{base.task}-{model}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"
