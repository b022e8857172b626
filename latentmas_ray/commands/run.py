"""`latentmas-ray run`: evaluate one method on one task, in process, resumably.

Everything a user can get wrong (flags, task, data file, model folder, output folder) is checked
before the model is loaded. Each finished batch is written to the store at once, so an
interrupted run loses at most the batch in flight, and rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..config import METHODS, TOPOLOGIES, MethodConfig, ModelConfig, RunConfig
from ..errors import ConfigError

# flag -> (section, field); section None = RunConfig itself
_FIELDS: dict[str, tuple[str | None, str]] = {
    "model_name": ("model", "name_or_path"), "dtype": ("model", "dtype"), "device": ("model", "device"),
    **{f: ("method", f) for f in (
        "method", "prompt", "latent_steps", "latent_space_realign", "max_new_tokens",
        "temperature", "top_p", "top_k", "think", "text_mas_context_length",
        "judger_drops_cache_at_zero_steps", "memory")},
    **{f: (None, f) for f in (
        "task", "data", "max_samples", "generate_bs", "seed", "output", "scoring", "prompt_file")},
}


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="evaluate a method on a task",
                       description="Evaluate baseline, TextMAS or LatentMAS on a benchmark. "
                                   "Flags follow the reference run.py; dashes work too.")
    S = argparse.SUPPRESS  # unset flags stay absent, so a --config file can supply them
    p.add("--config", default=None, help="YAML or JSON file with the same fields (flags override it)")
    p.add("--method", choices=METHODS, default=S, help="default latent_mas")
    p.add("--task", default=S, help="default arc_easy (its shipped 50-row demo sample)")
    p.add("--prompt", choices=TOPOLOGIES, default=S, help="agent topology, default sequential")
    p.add("--model_name", default=S, help="model folder or cached hub id; default: the embedded "
          "SmolLM2-135M-Instruct")
    p.add("--data", default=S, help="local data file; 'hub' for the reference's hub dataset")
    p.add("--max_samples", type=int, default=S, help="first N samples; -1 = all (default)")
    p.add("--latent_steps", type=int, default=S, help="latent thoughts per agent (default 0)")
    p.add("--latent_space_realign", action="store_true", default=S,
          help="ridge realignment matrix instead of the identity")
    p.add("--max_new_tokens", type=int, default=S, help="budget of each text call (default 4096)")
    p.add("--temperature", type=float, default=S, help="0 = greedy (default 0.6)")
    p.add("--top_p", type=float, default=S, help="default 0.95")
    p.add("--top_k", type=int, default=S, help="default: the model's generation config")
    p.add("--generate_bs", type=int, default=S, help="samples per batch (default 20); results "
          "do not depend on it")
    p.add("--seed", type=int, default=S, help="run seed (default 42)")
    p.add("--output", default=S, help="run folder (default results/<task>-<method>-<hash>)")
    p.add("--scoring", choices=["standard", "reference"], default=S)
    p.add("--prompt_file", default=S, help="JSON file overriding the built-in prompt texts")
    p.add("--think", action="store_true", default=S, help="append <think> to LatentMAS prompts")
    p.add("--text_mas_context_length", type=int, default=S)
    p.add("--keep_cache_at_zero_steps", dest="judger_drops_cache_at_zero_steps",
          action="store_false", default=S,
          help="pass the agents' cache to the judger even at latent_steps=0 (the reference drops it)")
    p.add("--memory", choices=["full", "last_agent", "latent_only"], default=S,
          help="what each agent passes on (default full, as the reference)")
    p.add("--dtype", choices=["auto", "float32", "bfloat16", "float16"], default=S)
    p.add("--device", default=S, help="auto (default), cpu, cuda, cuda:1, ...")
    p.add("--on_bad_row", choices=["error", "skip"], default="error")


def _read_config_file(path: str) -> dict[str, Any]:
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
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("model", "method") and isinstance(value, dict):  # nested RunConfig form
            inverse = {field: flag for flag, (sec, field) in _FIELDS.items() if sec == key}
            for k, v in value.items():
                if k not in inverse:
                    raise ConfigError(f"config file {path}: unknown field {key}.{k}")
                flat[inverse[k]] = v
        elif key in _FIELDS:
            flat[key] = value
        else:
            raise ConfigError(f"config file {path}: unknown field {key!r}")
    return flat


def build_run_config(args: argparse.Namespace) -> RunConfig:
    values: dict[str, Any] = _read_config_file(args.config) if args.config else {}
    values.update({k: v for k, v in vars(args).items() if k in _FIELDS})
    sections: dict[str | None, dict[str, Any]] = {None: {}, "model": {}, "method": {}}
    for flag, value in values.items():
        section, name = _FIELDS[flag]
        sections[section][name] = value
    return RunConfig(model=ModelConfig(**sections["model"]), method=MethodConfig(**sections["method"]),
                     **sections[None])


def run_id(cfg: RunConfig) -> str:
    """A stable folder name: the same command maps to the same folder, so it resumes."""
    from ..store import comparable_config
    digest = hashlib.sha256(json.dumps(comparable_config(cfg.to_dict()), sort_keys=True).encode())
    model = Path(cfg.model.name_or_path).name if cfg.model.name_or_path else "smollm2-135m"
    return f"{cfg.task}-{cfg.method.method}-{model}-{digest.hexdigest()[:8]}"


def run_run(args: argparse.Namespace, console) -> int:
    from ..evaluate import Evaluator
    from ..models import resolve_model
    from ..progress import progress_bar
    from ..prompts import load_prompt_file
    from ..store import RunStore, summarize
    from ..tasks.registry import load_task

    cfg = build_run_config(args)
    prompts = load_prompt_file(cfg.prompt_file)
    task = load_task(cfg.task, cfg.data, seed=cfg.seed, on_bad_row=args.on_bad_row,
                     max_samples=cfg.max_samples)
    for sk in task.skipped:
        console.print(f"[yellow]skipped[/] {sk.path}:{sk.line}: {sk.reason}", highlight=False)
    model_path = resolve_model(cfg.model.name_or_path)
    out = Path(cfg.output) if cfg.output else Path("results") / run_id(cfg)
    cfg.output = str(out)
    store = RunStore(out)
    store.open(cfg.to_dict())

    done = store.done_ids()
    pending = [s for s in task.samples if s.id not in done]
    console.print(f"{cfg.method.method} on {cfg.task} ({task.source}): {len(task.samples)} samples, "
                  f"{len(task.samples) - len(pending)} already done; results in {out}", highlight=False)

    if pending:
        evaluator = Evaluator(cfg, model_path, prompts)
        correct = [sum(1 for r in store.read().column("correct").to_pylist() if r), len(done)]
        start = time.perf_counter()
        with progress_bar(console, "samples", total=len(pending),
                          extra=lambda: f"acc {correct[0] / max(correct[1], 1):.1%}") as advance:
            for i in range(0, len(pending), cfg.generate_bs):
                batch = pending[i:i + cfg.generate_bs]
                rows = evaluator.run(batch)
                store.append(rows)
                correct[0] += sum(r["correct"] for r in rows)
                correct[1] += len(rows)
                advance(len(rows))
        wall = time.perf_counter() - start
    else:
        wall = 0.0
    table = store.consolidate(order=[s.id for s in task.samples])
    summary = {"task": cfg.task, "method": cfg.method.method, "model": str(model_path),
               "data": task.source, **summarize(table, wall)}
    store.write_summary(summary)
    console.print(f"accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['samples']}), "
                  f"{summary['mean_generated_tokens']:.0f} generated tokens/sample, "
                  f"{summary['mean_seconds_per_sample']:.2f} s/sample -> {out}", highlight=False)
    return 0
