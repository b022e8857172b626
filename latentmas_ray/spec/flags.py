"""The run flags, built from the run specification (latentmas_ray/spec/config.py).

Every config field with `flag(...)` metadata becomes `--<flag>` and its dashed twin
(`--max_new_tokens` / `--max-new-tokens`); its type, choices and help come from the field, so
no list of flags is kept by hand. Unset flags stay absent from the parsed namespace
(argparse.SUPPRESS), so a `--config` file can supply them and the dataclass defaults fill the
rest. Used by `latentmas-ray run` and by the Ray job driver (`python -m jobs.evaluate`).

`--help` lists the flags in GROUPS (a flag's group is its config section's unless GROUP_OF
names it), each with its default (from the field when the help text does not state it).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any

from latentmas_ray.spec.config import RunConfig, from_dict, sections
from latentmas_ray.spec.parser import Parser
from latentmas_ray.errors import ConfigError

Path_ = tuple[str, ...]          # a field's place in RunConfig, e.g. ("execution", "vllm", "gpu_share")


# The help's groups, in order, with the line printed under each title.
GROUPS = {
    "data": "what is evaluated: the task, its samples, the seed and the scoring",
    "model": "the checkpoint",
    "method": "baseline, TextMAS or LatentMAS and their settings",
    "engine": "how a batch executes in a replica (in process or on Ray)",
    "Ray": "--ray: replicas on a Ray cluster (RAY_ADDRESS or --address; else a local Ray)",
    "vLLM": "--use_vllm: the vLLM engine's options",
    "output and observers": "where the run is written and who hears about it",
}
SECTION_GROUP = {(): "data", ("model",): "model", ("method",): "method",
                 ("execution",): "Ray", ("execution", "vllm"): "vLLM"}
GROUP_OF = {   # flags whose section is not the group a reader looks in
    "prompt_file": "method",
    "generate_bs": "engine", "use_vllm": "engine", "device": "engine", "packed_linear": "engine",
    "compile": "engine", "decode_attention": "engine", "torch_threads": "engine",
    "output": "output and observers", "progress_every": "output and observers",
    "save_latents": "output and observers", "wandb": "output and observers",
    "wandb_run_name": "output and observers", "wandb_group": "output and observers",
}
RUN_USAGE = "%(prog)s [flags]   (--help lists every flag, by group)"


def spec_flags(cls=RunConfig, prefix: Path_ = ()) -> dict[str, tuple[Path_, dataclasses.Field, Any]]:
    """{flag name: (field path, field, resolved type)} for every flagged field, depth first."""
    out: dict[str, tuple[Path_, dataclasses.Field, Any]] = {}
    hints = typing.get_type_hints(cls)
    nested = sections(cls)
    for f in dataclasses.fields(cls):
        if f.name in nested:
            out.update(spec_flags(nested[f.name], prefix + (f.name,)))
        elif "help" in f.metadata:
            name = f.metadata.get("flag") or f.name
            assert name not in out, f"two config fields claim --{name}"
            out[name] = (prefix + (f.name,), f, hints[f.name])
    return out


def _argparse_kwargs(f: dataclasses.Field, tp) -> dict[str, Any]:
    kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": _help_with_default(f, tp)}
    base = tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):      # `int | None` -> int
        base = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(base) is typing.Literal:
        return {**kw, "choices": list(typing.get_args(base))}
    if base is bool:
        return {**kw, "action": "store_false" if f.metadata.get("negate") else "store_true"}
    assert base in (int, float, str), f"no flag type for {f.name}: {tp}"
    if base is str:
        return {**kw, "type": base}                 # metavar: the flag's name, e.g. OUTPUT
    return {**kw, "type": base, "metavar": {int: "N", float: "X"}[base]}


def _help_with_default(f: dataclasses.Field, tp) -> str:
    """The field's help, ending with its default where the text does not already state it."""
    text = f.metadata["help"]
    if "default" in text.lower():
        return text
    if tp is bool:
        shown = "off"                  # a boolean flag is a switch, whatever field value it sets
    elif f.default is None:
        shown = "not set"
    else:
        shown = str(f.default)
    return f"{text} (default: {shown})"


def add_run_arguments(p: Parser, tasks: list[str] | None = None) -> None:
    """Every run flag, in the help's groups, plus `--config FILE`. tasks: the task names (the
    caller's registry; the spec layer does not import tasks) for `--task`'s choices."""
    groups = {title: p.add_argument_group(title, line) for title, line in GROUPS.items()}
    p.add("--config", default=None, metavar="FILE", group=groups["data"],
          help="YAML or JSON file with the same fields, flat (flag names) or nested (a run's own "
               "config.json); flags override it")
    for name, (path, f, tp) in spec_flags().items():
        kw = _argparse_kwargs(f, tp)
        if name == "task" and tasks:
            kw.update(type=_task_name(tasks), metavar="TASK",
                      help=f"{', '.join(tasks)}; {kw['help']}")
        group = groups[GROUP_OF.get(name) or SECTION_GROUP[path[:-1]]]
        p.add(f"--{name}", dest=name, group=group, **kw)


def _task_name(tasks: list[str]):
    """argparse type of `--task`: a known task name, or the error that lists them."""
    def task(value: str) -> str:
        if value not in tasks:
            close = difflib.get_close_matches(value, tasks, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise argparse.ArgumentTypeError(
                f"unknown task {value!r}{hint}; choose one of {', '.join(tasks)}")
        return value
    return task


def run_parser(prog: str, description: str, tasks: list[str] | None = None) -> Parser:
    """The run flags as a parser of their own (the Ray job driver, `python -m jobs.evaluate`)."""
    p = Parser(prog=prog, description=description, usage=RUN_USAGE)
    add_run_arguments(p, tasks)
    p.set_defaults(command="run")
    return p


def _read_config_file(path: str) -> dict[str, Any]:
    """A config file as the nested RunConfig dict (flat flag names are placed in sections)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except Exception as e:
        raise ConfigError(f"config file {path} does not parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field -> value")
    if "run" in data and isinstance(data["run"], dict):  # a run's own config.json
        data = data["run"]
    flags = spec_flags()
    nested: dict[str, Any] = {}
    for key, value in data.items():
        if key in sections(RunConfig) and isinstance(value, dict):   # nested RunConfig form
            _merge(nested, {key: value})
        elif key in flags:
            _set(nested, flags[key][0], value)
        else:
            raise ConfigError(f"config file {path}: unknown field {key!r}")
    try:
        from_dict(RunConfig, nested)                 # names a bad nested field with the file
    except ConfigError as e:
        raise ConfigError(f"config file {path}: {e}") from None
    return nested


def _set(tree: dict[str, Any], path: Path_, value: Any) -> None:
    for k in path[:-1]:
        tree = tree.setdefault(k, {})
    tree[path[-1]] = value


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def build_run_config(args: argparse.Namespace, **forced: Any) -> RunConfig:
    """The RunConfig of parsed run flags: the `--config` file, then the flags given, then
    `forced` (flag name -> value, e.g. ray=True for the job driver). Validated on construction."""
    tree = _read_config_file(args.config) if getattr(args, "config", None) else {}
    flags = spec_flags()
    given = {k: v for k, v in vars(args).items() if k in flags}
    for name, value in {**given, **forced}.items():
        _set(tree, flags[name][0], value)
    return from_dict(RunConfig, tree)
