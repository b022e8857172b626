"""The disaggregated driver (`--placement disaggregated`): every LatentMAS role is its own actor.

    latentmas-ray run --ray --placement disaggregated [--hop_payload kv|embeds|auto] ...

One replica = one pipeline of four role actors (actors/role_actor.py): planner, critic,
refiner, judger, each with its own model copy, in its own placement-group bundle (one
placement group, strategy SPREAD, so the roles land on different nodes / GPUs where there are
several). A batch is submitted as one chain,

    judger.judge_rows(refiner.step(critic.step(planner.step(batch))))

and its working memory moves role to role through the object store (never through the
driver), as KV tensors or as input embeddings to re-prefill (`--hop_payload`; `auto` measures
the link and the prefill speed once and applies role_actor.choose_payload). Every actor runs its
calls in order, so with several chains in flight each role works on a different batch at the
same time: per pipeline max(--max_in_flight, 5) batches are in flight, enough for all four
stages plus one waiting.

Everything else is jobs/evaluate.py's: connecting, the placement checks, and `_drive` (the
Scheduler, the store writes, the progress bar and the fault rules). A chain whose role actor
dies fails with RayActorError: the pipeline is marked down, its batches are requeued, and it
is pinged (the chained `ready()`) until Ray has restarted the role, then gets work again. At
the end the role actors' busy fractions are printed and sent as the "role_stats" event.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from latentmas_ray.errors import ConfigError

ROLES = ("planner", "critic", "refiner", "judger")
PLACEMENTS = ("colocated", "disaggregated")


def check_disaggregated(cfg, hop_payload: str = "kv") -> None:
    """What the disaggregated placement cannot run, as one ConfigError each (before any work)."""
    from actors.role_actor import check_payload

    if cfg.method.method != "latent_mas":
        raise ConfigError(f"--placement disaggregated runs latent_mas (one actor per agent role), "
                          f"not {cfg.method.method!r}; use --placement colocated")
    if cfg.use_vllm:
        raise ConfigError("--placement disaggregated runs every role on HF engines; it cannot be "
                          "combined with --use_vllm")
    check_payload(hop_payload, cfg.method.memory)


def in_flight_per_pipeline(max_in_flight: int) -> int:
    return max(max_in_flight, len(ROLES) + 1)


def busy_fractions(stats: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per role of one pipeline: `steady`, its busy share of the window in which every role had
    started and none had finished its last call (the pipeline full), and `overall`, busy
    seconds over its own first-start..last-end span."""
    with_calls = [s for s in stats if s["calls"]]
    if not with_calls:
        return {}
    lo = max(s["calls"][0][0] for s in with_calls)
    hi = min(s["calls"][-1][1] for s in with_calls)
    out: dict[str, dict[str, float]] = {}
    for s in with_calls:
        span = s["calls"][-1][1] - s["calls"][0][0]
        busy = sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in s["calls"])
        out[s["role"]] = {
            "steady": busy / (hi - lo) if hi > lo else float("nan"),
            "overall": s["busy_s"] / span if span > 0 else float("nan"),
            "busy_s": s["busy_s"], "calls": len(s["calls"]), "window_s": max(0.0, hi - lo)}
    return out


def _start(cfg, model_path, prompts, replicas, gpus, cpus, threads, pg, max_restarts):
    from actors.common import actor_options
    from actors.role_actor import RolePipeline, role_actor_class

    cls = role_actor_class()
    pipes = []
    for c in range(replicas):
        actors, names = {}, {}
        for i, role in enumerate(ROLES):
            names[role] = f"latentmas-{os.getpid()}-p{c}-{role}"
            actors[role] = cls.options(**actor_options(
                gpus=gpus, cpus=cpus, max_restarts=max_restarts, placement_group=pg,
                bundle_index=c * len(ROLES) + i, name=names[role],
            )).remote(cfg.to_dict(), str(model_path) if model_path else None, prompts or {},
                      role, threads, "kv")
        pipes.append(RolePipeline(actors, "kv", names))
    return pipes


def _choose(pipe, cfg, hop_payload: str, console) -> tuple[str, dict[str, Any]]:
    """The payload to ship; for `auto`, measured on pipeline 0 (planner -> critic link)."""
    import ray

    from actors.role_actor import choose_payload

    if hop_payload != "auto":
        return hop_payload, {}
    profile = ray.get(pipe.actors["planner"].cost_profile.remote())
    nbytes = 16 << 20
    ray.get(pipe.actors["critic"].probe_receive.remote(pipe.actors["planner"].probe_send.remote(nbytes)))
    best = min((ray.get(pipe.actors["critic"].probe_receive.remote(
        pipe.actors["planner"].probe_send.remote(nbytes)))["ms"] for _ in range(2)))
    profile["bytes_per_ms"] = nbytes / max(best, 1e-6)
    choice = choose_payload(profile["kv"], profile["embeds"], profile["prefill_ms_per_pos"],
                            profile["bytes_per_ms"], cfg.method.memory)
    console.print(
        f"--hop_payload auto: per position KV {profile['kv']:,} B vs embeddings "
        f"{profile['embeds']:,} B; link {profile['bytes_per_ms'] / 1e3:.0f} MB/s, prefill "
        f"{profile['prefill_ms_per_pos']:.3f} ms/position -> {choice}", highlight=False)
    return choice, profile


def run_disaggregated(cfg, loaded_task, store, model_path, prompts, *, replicas: int = 1,
                      address: str | None = None, gpus_per_replica: float | None = None,
                      console=None, torch_threads: int | None = None, max_in_flight: int = 2,
                      placement_timeout: float = 60.0, max_restarts: int = 3,
                      ready_timeout: float = 1800.0, hop_payload: str = "kv",
                      on_event: Callable[[str, dict[str, Any]], None] | None = None) -> float:
    """`jobs.evaluate.run_on_ray`'s contract (writes each finished batch to `store`, returns the
    sampling loop's wall seconds) with `replicas` pipelines of four role actors.

    gpus_per_replica: GPUs of EACH role actor (default 1 when the cluster has GPUs, else 0 =
    CPU actors of `torch_threads` threads and CPU slots). hop_payload: kv | embeds | auto.
    on_event: run_on_ray's events ("ready" also carries "payload" and the actor names per
    role under info["replicas"][i]["names"]) plus "role_stats" at the end.
    """
    from rich.console import Console

    from jobs.evaluate import (_Replica, _drive, _short, alive_node_resources, check_ray_args,
                               connect, placeable, release, reserve)

    console = console or Console(stderr=True)
    check_ray_args(replicas, max_in_flight, torch_threads, gpus_per_replica)
    check_disaggregated(cfg, hop_payload)
    done = store.done_ids()
    pending = [s for s in loaded_task.samples if s.id not in done]
    if not pending:
        return 0.0

    import ray

    n_actors = replicas * len(ROLES)
    cores = os.cpu_count() or 1
    local_threads = torch_threads or max(1, cores // n_actors)
    owned, where = connect(address, local_cpus=max(cores, n_actors * local_threads) + 1)
    pg = None
    pipes: list = []
    try:
        nodes = alive_node_resources()
        if gpus_per_replica is None:
            gpus_per_replica = 1.0 if sum(n.get("GPU", 0.0) for n in nodes) > 0 else 0.0
        gpus = gpus_per_replica
        threads = torch_threads or (local_threads if owned else 1)
        if gpus > 0 and sum(n.get("GPU", 0.0) for n in nodes) == 0:
            raise ConfigError(f"--num_gpus_per_replica {gpus:g} asks for GPUs, but {where} has "
                              "none; use --num_gpus_per_replica 0 for CPU role actors")
        cpus = 1.0 if gpus > 0 else float(threads)
        bundle = {"CPU": cpus, **({"GPU": float(gpus)} if gpus > 0 else {})}
        fit = placeable(nodes, bundle)
        if fit < n_actors:
            raise ConfigError(
                f"cannot place {replicas} disaggregated pipeline(s) = {n_actors} role actors of "
                f"{bundle} each on {where}: its {len(nodes)} node(s) hold at most {fit}; use "
                f"--replicas {max(fit // len(ROLES), 1)}, fewer --torch_threads or a bigger "
                "cluster")
        pg = reserve(n_actors, bundle, placement_timeout, where)
        pipes = _start(cfg, model_path, prompts, replicas, gpus, cpus,
                       threads if gpus == 0 else torch_threads, pg, max_restarts)
        reps = [_Replica(i, p) for i, p in enumerate(pipes)]
        t0 = time.perf_counter()
        for r in reps:
            try:
                r.info = ray.get(r.handle.ready.remote(), timeout=ready_timeout)
            except ray.exceptions.GetTimeoutError:
                raise ConfigError(f"pipeline {r.rid}'s role actors did not load the model within "
                                  f"{ready_timeout:g} s on {where}") from None
            except ray.exceptions.RayError as e:
                raise ConfigError(f"pipeline {r.rid} could not start on {where}: {_short(e)}") from None
            r.info["names"] = dict(r.handle.names)
        kind = f"{gpus:g} GPU" if gpus > 0 else f"{threads} CPU thread{'s' * (threads > 1)}"
        console.print(f"{replicas} disaggregated pipeline(s) of {len(ROLES)} role actors "
                      f"({kind} each) on {where}, model loaded in {time.perf_counter() - t0:.1f} s",
                      highlight=False)
        for r in reps:
            for role, info in r.info["roles"].items():
                console.print(f"  pipeline {r.rid} {role:8s}: {info.get('host')} node "
                              f"{(info.get('node_id') or '?')[:8]} pid {info.get('pid')} "
                              f"{info.get('device')} gpus {info.get('gpu_ids')}", highlight=False)
        payload, profile = _choose(pipes[0], cfg, hop_payload, console)
        for p in pipes:
            p.payload = payload
        if on_event:
            on_event("ready", {"replicas": {r.rid: dict(r.info) for r in reps},
                               "payload": payload, "profile": profile})
        wall = _drive(cfg, store, pending, done, reps, in_flight_per_pipeline(max_in_flight),
                      console, on_event, replica_timeout=ready_timeout)
        _report_busy(pipes, console, on_event)
        return wall
    finally:
        release(pipes, pg, owned)


def _report_busy(pipes, console, on_event) -> None:
    import ray

    per_pipe = {}
    for i, p in enumerate(pipes):
        try:
            stats = ray.get([p.actors[r].stats.remote() for r in ROLES], timeout=30)
        except ray.exceptions.RayError:
            continue
        per_pipe[i] = {"stats": stats, "busy": busy_fractions(stats)}
        busy = per_pipe[i]["busy"]
        if busy:
            console.print(f"pipeline {i} busy (pipeline full / overall): " + ", ".join(
                f"{role} {b['steady']:.0%}/{b['overall']:.0%}" for role, b in busy.items()),
                highlight=False)
    if on_event:
        on_event("role_stats", per_pipe)
