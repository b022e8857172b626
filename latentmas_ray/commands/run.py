"""`latentmas-ray run`: evaluate one method on one task, in process, resumably.

Everything a user can get wrong (flags, task, data file, model folder, output folder) is checked
before the model is loaded. Each finished batch is written to the store at once, so an
interrupted run loses at most the batch in flight, and rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
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
        "task", "data", "max_samples", "generate_bs", "seed", "output", "scoring", "prompt_file",
        "use_vllm")},
}


_DESCRIPTION = ("Evaluate baseline, TextMAS or LatentMAS on a benchmark, in process or on Ray "
                "(--ray). Flags follow the reference run.py; dashes work too.")


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="evaluate a method on a task", description=_DESCRIPTION)
    add_run_arguments(p)


def run_parser(prog: str) -> argparse.ArgumentParser:
    """The `run` flags as a parser of their own (the Ray job driver, `python -m jobs.evaluate`)."""
    from ..cli import _Parser
    p = _Parser(prog=prog, description=_DESCRIPTION)
    add_run_arguments(p)
    p.set_defaults(command="run")
    return p


def add_run_arguments(p) -> None:
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
    add_vllm_flags(p)
    add_ray_flags(p)


def add_vllm_flags(p) -> None:
    S = argparse.SUPPRESS
    p.add("--use_vllm", action="store_true", default=S,
          help="decode on vLLM (optional extra: scripts/install_vllm.sh): baseline and TextMAS "
               "entirely; LatentMAS runs its latent agents on HF and its judger on vLLM from "
               "their embeddings (prompt_embeds)")
    p.add("--vllm_max_model_len", type=int, default=4096,
          help="vLLM context: longest prompt + max_new_tokens (default 4096)")
    p.add("--vllm_gpu_memory_utilization", type=float, default=None,
          help="GPU share for vLLM's weights and KV cache (default 0.85 alone, less when an HF "
               "engine shares its GPU)")
    p.add("--vllm_kv_cache_gib", type=float, default=1.0,
          help="CPU machines: vLLM's KV cache size in GiB (default 1)")
    p.add("--vllm_gpu_share", type=float, default=0.5,
          help="--ray LatentMAS: the vLLM actor's share of a replica's GPUs, the HF actor gets "
               "the rest (default 0.5: one GPU shared; with --num_gpus_per_replica 2, one each)")


def vllm_options(args: argparse.Namespace):
    """The vLLM engine's options from the flags (they do not change any result)."""
    from ..engines.vllm import VLLMOptions

    if args.vllm_max_model_len < 16:
        raise ConfigError(f"--vllm_max_model_len must be >= 16, got {args.vllm_max_model_len}")
    util = args.vllm_gpu_memory_utilization
    if util is not None and not 0 < util <= 1:
        raise ConfigError(f"--vllm_gpu_memory_utilization must be in (0, 1], got {util}")
    if args.vllm_kv_cache_gib <= 0:
        raise ConfigError(f"--vllm_kv_cache_gib must be > 0, got {args.vllm_kv_cache_gib}")
    if not 0 < args.vllm_gpu_share < 1:
        raise ConfigError(f"--vllm_gpu_share must be in (0, 1), got {args.vllm_gpu_share}")
    return VLLMOptions(max_model_len=args.vllm_max_model_len, gpu_memory_utilization=util,
                       cpu_kv_cache_gib=args.vllm_kv_cache_gib)


def add_ray_flags(p) -> None:
    """Where the run goes: in this process (default) or on Ray model replicas (--ray)."""
    p.add("--ray", action="store_true", default=False,
          help="run on Ray: model replicas as actors (a local Ray unless --address/$RAY_ADDRESS)")
    p.add("--address", default=None,
          help="Ray cluster (GCS) address host:port, ray://host:10001 or auto; default $RAY_ADDRESS, "
               "else a local Ray started in this process")
    p.add("--replicas", type=int, default=1, help="model replicas (one per GPU, or per CPU slot)")
    p.add("--num_gpus_per_replica", type=float, default=None,
          help="GPUs per replica (default: 1 when the cluster has GPUs, else 0 = CPU replicas)")
    p.add("--torch_threads", type=int, default=None,
          help="torch threads per replica (in process: of this process); CPU replicas reserve as "
               "many CPU slots (default: the local machine's cores shared out over the replicas, "
               "1 on a cluster; in process: torch's default). On a busy small machine, 1 avoids "
               "OpenMP oversubscription, which can slow decoding tenfold")
    p.add("--max_in_flight", type=int, default=2,
          help="batches queued or running per replica (default 2: one runs, one waits)")
    p.add("--placement_timeout", type=float, default=60.0,
          help="seconds to wait for the cluster to free (or an autoscaler to add) the resources "
               "the replicas need (default 60)")
    p.add("--max_restarts", type=int, default=3, help="restarts of a crashed replica (default 3)")
    p.add("--placement", choices=["colocated", "disaggregated"], default="colocated",
          help="--ray LatentMAS: colocated (default: one actor runs all agents of a batch) or "
               "disaggregated (one actor per role, batches pipelined through them, the working "
               "memory moving role to role through the object store)")
    p.add("--hop_payload", choices=["kv", "embeds", "auto"], default="kv",
          help="disaggregated: what moves between role actors: the KV cache (default), input "
               "embeddings to re-prefill (--memory full only) or auto (a measured cost model)")


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
    from ..models import resolve_model
    from ..prompts import load_prompt_file
    from ..store import RunStore, summarize
    from ..tasks.registry import load_task

    cfg = build_run_config(args)
    if args.torch_threads is not None and args.torch_threads < 1:
        raise ConfigError(f"--torch_threads must be >= 1, got {args.torch_threads}")
    placement = getattr(args, "placement", "colocated")
    if placement == "disaggregated":
        if not args.ray:
            raise ConfigError("--placement disaggregated runs role actors on Ray: add --ray")
        from jobs.disaggregated import check_disaggregated
        check_disaggregated(cfg, args.hop_payload)
    vopts = None
    if cfg.use_vllm:  # before anything is written: vLLM importable, settings it can honour
        from ..engines.vllm import require_vllm
        from ..methods.hybrid import check_hybrid_config
        vopts = vllm_options(args)
        if cfg.method.method == "latent_mas":
            check_hybrid_config(cfg.method)
        require_vllm()
    if args.ray:  # cluster flags and address first: a mistake there leaves no run folder
        import jobs.evaluate as driver
        driver.check_ray_args(args.replicas, args.max_in_flight, args.torch_threads,
                              args.num_gpus_per_replica)
        address = args.address or os.environ.get("RAY_ADDRESS")
        if address:
            driver.check_address(address)
    prompts = load_prompt_file(cfg.prompt_file)
    task = load_task(cfg.task, cfg.data, seed=cfg.seed, on_bad_row=args.on_bad_row,
                     max_samples=cfg.max_samples)
    for sk in task.skipped:
        console.print(f"[yellow]skipped[/] {sk.path}:{sk.line}: {sk.reason}", highlight=False)
    model_path = resolve_model(cfg.model.name_or_path)
    out = Path(cfg.output) if cfg.output else Path("results") / run_id(cfg)
    if args.ray and os.environ.get(driver.JOB_ENV) and not out.is_absolute():
        console.print(f"[yellow]warning:[/] --output {out} is relative to this job's unpacked "
                      "working directory, which Ray deletes; pass an absolute path on a shared "
                      "or persistent disk", highlight=False)
    cfg.output = str(out)
    store = RunStore(out)
    store.open(cfg.to_dict())

    done = store.done_ids()
    pending = [s for s in task.samples if s.id not in done]
    console.print(f"{cfg.method.method} on {cfg.task} ({task.source}): {len(task.samples)} samples, "
                  f"{len(task.samples) - len(pending)} already done; results in {out.resolve()}",
                  highlight=False)
    if args.ray and placement == "disaggregated":
        from jobs.disaggregated import run_disaggregated
        wall = run_disaggregated(
            cfg, task, store, model_path, prompts, replicas=args.replicas, address=args.address,
            gpus_per_replica=args.num_gpus_per_replica, console=console,
            torch_threads=args.torch_threads, max_in_flight=args.max_in_flight,
            placement_timeout=args.placement_timeout, max_restarts=args.max_restarts,
            hop_payload=args.hop_payload)
    elif args.ray:
        wall = driver.run_on_ray(
            cfg, task, store, model_path, prompts, replicas=args.replicas, address=args.address,
            gpus_per_replica=args.num_gpus_per_replica, console=console,
            torch_threads=args.torch_threads, max_in_flight=args.max_in_flight,
            placement_timeout=args.placement_timeout, max_restarts=args.max_restarts,
            vllm_options=vopts, vllm_gpu_share=args.vllm_gpu_share)
    else:
        wall = run_in_process(cfg, store, pending, len(done), model_path, prompts, console,
                              torch_threads=args.torch_threads, vllm_options=vopts)

    table = store.consolidate(order=[s.id for s in task.samples])
    summary = {"task": cfg.task, "method": cfg.method.method, "model": str(model_path),
               "data": task.source, "replicas": args.replicas if args.ray else 1,
               **summarize(table, wall)}
    store.write_summary(summary)
    rate = f", {len(pending) / wall:.2f} samples/s" if wall else ""
    console.print(f"accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['samples']}), "
                  f"{summary['mean_generated_tokens']:.0f} generated tokens/sample, "
                  f"{summary['mean_seconds_per_sample']:.2f} s/sample{rate} -> {out}",
                  highlight=False)
    return 0


def run_in_process(cfg: RunConfig, store, pending, n_done: int, model_path, prompts, console,
                   torch_threads: int | None = None, vllm_options=None) -> float:
    """Evaluate `pending` batch by batch in this process; returns the loop's wall seconds."""
    from ..evaluate import Evaluator
    from ..progress import progress_bar

    if not pending:
        return 0.0
    if torch_threads:
        import torch
        torch.set_num_threads(torch_threads)
    if cfg.use_vllm:
        from ..engines.vllm import vllm_evaluator
        evaluator = vllm_evaluator(cfg, model_path, prompts, vllm_options)
    else:
        evaluator = Evaluator(cfg, model_path, prompts)
    correct = [sum(1 for r in store.read().column("correct").to_pylist() if r), n_done]
    start = time.perf_counter()
    with progress_bar(console, "samples", total=len(pending),
                      extra=lambda: f"acc {correct[0] / max(correct[1], 1):.1%}") as advance:
        for i in range(0, len(pending), cfg.generate_bs):
            rows = evaluator.run(pending[i:i + cfg.generate_bs])
            store.append(rows)
            correct[0] += sum(r["correct"] for r in rows)
            correct[1] += len(rows)
            advance(len(rows))
    return time.perf_counter() - start
