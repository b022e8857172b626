"""A run from start to end: what `latentmas-ray run` and `ray job submit ... -- python -m
jobs.evaluate` execute.

    python -m jobs.evaluate [the flags of `latentmas-ray run`]      (--ray is implied)
    ray job submit --working-dir . -- python -m jobs.evaluate --task gsm8k --replicas 4 ...

`evaluate(cfg)`: everything a user can get wrong is checked before the model loads and before
the run folder exists (the RunConfig validated itself; vLLM importable; the Ray address
reachable; prompt file, task, data and model found); then the store is opened (a rerun resumes:
finished samples are never recomputed), the pending samples run in this process
(latentmas_ray/run/in_process.py) or on Ray replicas of the run's placement (jobs/driver.py), and
the summary is written. The run folder is the same store either way: a run started in process
can be finished on a cluster and the other way round.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from jobs.placement import JOB_ENV, check_address
from jobs.driver import run_on_ray      # a module global, so a test can wrap it (on_event)
from jobs.stop import StopSignal
from latentmas_ray.errors import Stopped
from latentmas_ray.store.lock import RunLock
from latentmas_ray.spec.config import RunConfig

DESCRIPTION = ("Evaluate baseline, TextMAS or LatentMAS on a benchmark, in process or on Ray "
               "(--ray). Flags follow the reference run.py; dashes work too.")


def check_before_start(cfg: RunConfig) -> None:
    """What needs the outside world, checked before anything is written: vLLM importable
    (--use_vllm), --tensor_parallel_size within this machine's GPUs (in process; on Ray the
    replica factory checks its bundle), wandb importable (--wandb) and the Ray cluster
    reachable (--ray with an address)."""
    if cfg.use_vllm:
        from latentmas_ray.engines.vllm import require_vllm
        from latentmas_ray.engines.vllm_fit import check_gpus
        require_vllm()
        check_gpus(cfg)
    if cfg.execution.wandb:
        from latentmas_ray.run.observe import require_wandb
        require_wandb()
    if cfg.execution.ray:
        address = cfg.execution.address or os.environ.get("RAY_ADDRESS")
        if address:
            check_address(address)


def check_sandbox(cfg: RunConfig, kind: str, console) -> dict | None:
    """Code tasks: what the sandbox enforces here at --sandbox_level (for summary.json), or
    SandboxUnavailable (one line naming what is missing and the weaker level's flag). On Ray
    the scoring workers check again on their own machines."""
    if kind != "code":
        return None
    from latentmas_ray.sandbox import sandbox_capabilities
    caps = sandbox_capabilities(cfg.execution.sandbox_level)
    console.print(f"code sandbox: --sandbox_level {cfg.execution.sandbox_level}"
                  + ("" if cfg.execution.ray else f" ({caps_line(caps)})"), highlight=False)
    return caps


def caps_line(caps: dict) -> str:
    on = [k for k in ("pid_namespace", "net_namespace", "private_tmp_and_shm", "landlock",
                      "unprivileged_uid", "cgroup_pids", "cgroup_memory") if caps.get(k) not in (False, "no")]
    return "enforced: " + (", ".join(on) or "rlimits only")


def evaluate(cfg: RunConfig, console) -> int:
    """Run `cfg` to the end (resuming what its folder holds); prints the summary line."""
    from latentmas_ray.spec.models import check_agent_models, resolve_model
    from latentmas_ray.prompts import load_prompt_file
    from latentmas_ray.tasks.registry import load_task

    # The user's files first: a bad task, data file, prompt file or model folder is refused in
    # well under a second, before torch / transformers / Ray are imported (seconds, more under
    # load). tests/test_cli_run.py checks that none of them is loaded at these errors.
    prompts = load_prompt_file(cfg.prompt_file)
    task = load_task(cfg.task, cfg.data, seed=cfg.seed, on_bad_row=cfg.on_bad_row,
                     max_samples=cfg.max_samples)
    model_path = resolve_model(cfg.model.name_or_path)
    check_agent_models(cfg, model_path)     # per-agent checkpoints: found, and of one KV shape
    sandbox = check_sandbox(cfg, task.spec.kind, console)   # code tasks: before the model loads
    check_before_start(cfg)

    from latentmas_ray.run.lengths import check_lengths
    from latentmas_ray.spec.identity import run_id
    from latentmas_ray.store.run_store import RunStore

    for sk in task.skipped:
        console.print(f"[yellow]skipped[/] {sk.path}:{sk.line}: {sk.reason}", highlight=False)
    check_lengths(cfg, task.samples, model_path, prompts)     # vLLM: before any engine starts
    out = Path(cfg.output) if cfg.output else Path("results") / run_id(cfg.to_dict())
    if cfg.execution.ray and os.environ.get(JOB_ENV) and not out.is_absolute():
        console.print(f"[yellow]warning:[/] --output {out} is relative to this job's unpacked "
                      "working directory, which Ray deletes; pass an absolute path on a shared "
                      "or persistent disk", highlight=False)
    cfg.output = str(out)
    store = RunStore(out)
    store.open(cfg.to_dict(), identity=run_identity(cfg, task, prompts))
    stop = StopSignal()
    with RunLock(out).held(console), stop.installed():
        return run_to_end(cfg, console, task, store, model_path, prompts, stop, sandbox)


def run_identity(cfg: RunConfig, task, prompts) -> dict[str, str]:
    """What the run folder must have been written with to resume (spec/identity.py): the data
    file's and prompt texts' hashes; in process also the resolved device kind and dtype (on
    Ray the driver adds them once it knows what a replica gets)."""
    from latentmas_ray.spec.identity import contents_identity, precision_identity
    from latentmas_ray.tasks.registry import demo_path

    source = Path(task.source)
    data = (source if source.is_file() else
            demo_path(task.spec) if task.source.startswith("demo:") else None)
    identity = contents_identity(data, prompts)
    if not cfg.execution.ray:
        import torch
        identity.update(precision_identity(cfg.model.device, cfg.model.dtype,
                                           gpu=torch.cuda.is_available()))
    return identity


def run_to_end(cfg: RunConfig, console, task, store, model_path, prompts, stop,
               sandbox: dict | None = None) -> int:
    """The pending samples of `task` into `store` (this process or Ray), then samples.parquet
    and summary.json. summary.json's status says how the session ended: "complete" (every
    expected sample is stored), "stopped" (a stop signal) or "failed"; its counts are always
    those of the rows on disk; `sandbox`: what the code sandbox enforces (code tasks)."""
    from latentmas_ray.run.in_process import run_in_process
    from latentmas_ray.run.observe import TABLE_COLUMNS, open_observer
    from latentmas_ray.run.pending import pending_samples

    out = Path(cfg.output)
    pending = pending_samples(task.samples, store)    # read on demand: the task stays on disk
    n_done = len(task.samples) - len(pending)
    console.print(f"{cfg.method.method} on {cfg.task} ({task.source}): {len(task.samples)} samples, "
                  f"{n_done} already done; results in {out.resolve()}",
                  highlight=False)
    if cfg.method.degenerate_latent_mas:
        console.print("note: latent_mas with --latent_steps 0 equals the baseline with a longer "
                      "prompt (the judger drops the agents' cache, as in the reference); the "
                      "default is --latent_steps 20", highlight=False)
    head = {"task": cfg.task, "method": cfg.method.method, "model": str(model_path),
            "data": task.source, "replicas": cfg.execution.replicas if cfg.execution.ray else 1,
            "expected": len(task.samples), **({"sandbox": sandbox} if sandbox else {})}
    try:
        with open_observer(cfg) as observer:      # W&B (--wandb) hears the run from here
            prior = (store.columns(["correct", "generated_tokens"]).to_pylist()
                     if n_done and observer.wants_rows else [])
            observer.on_start(cfg.to_dict(), prior)
            if cfg.execution.ray:
                wall = run_on_ray(cfg, task, store, model_path, prompts, console=console,
                                  observer=observer, stop=stop)
            else:
                wall = run_in_process(cfg, store, pending, model_path, prompts, console,
                                      n_done=n_done,
                                      observer=observer)
            # streamed: neither step holds the run's table in memory
            # the ids are read only for parts older than the `position` column
            store.consolidate(order=(s.id for s in task.samples), read_back=False)
            status = "complete" if store.complete_samples() >= len(task.samples) else "failed"
            summary = {**head, "status": status, **store.summary(wall)}
            store.write_summary(summary)
            observer.on_end(summary, store.columns(TABLE_COLUMNS, consolidated=True).to_pylist()
                            if observer.wants_rows else [])   # only the columns W&B logs
    except BaseException as e:
        ended = "stopped" if isinstance(e, (Stopped, KeyboardInterrupt)) else "failed"
        try:        # the rows on disk, read from the parts (samples.parquet may be older)
            store.write_summary({**head, "status": ended, **store.summary(from_parts=True)})
        except Exception:  # noqa: BLE001 - the parts stay the truth
            pass
        raise
    rate = f", {len(pending) / wall:.2f} samples/s" if wall else ""
    console.print(f"accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['samples']}), "
                  f"{summary['mean_generated_tokens']:.0f} generated tokens/sample, "
                  f"{summary['mean_seconds_per_sample']:.2f} s/sample{rate} -> {out}",
                  highlight=False)
    return 0


def build_parser():
    """`latentmas-ray run`'s flags (built from the run specification)."""
    from latentmas_ray.spec.flags import run_parser
    from latentmas_ray.tasks.registry import TASKS
    return run_parser("python -m jobs.evaluate", DESCRIPTION + " Here --ray is implied.",
                      list(TASKS))


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from latentmas_ray.run.progress import quiet_library_bars
    from latentmas_ray.errors import exit_status
    from latentmas_ray.spec.flags import build_run_config

    quiet_library_bars()
    console = Console(stderr=True)
    args = build_parser().parse_args(argv)
    return exit_status(lambda: evaluate(build_run_config(args, ray=True), console), console)


if __name__ == "__main__":
    sys.exit(main())
