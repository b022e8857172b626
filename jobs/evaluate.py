"""The Ray driver: evaluate one method on one task with N model replicas on a Ray cluster.

    python -m jobs.evaluate [the flags of `latentmas-ray run`] [--address ADDR] [--replicas N]
        [--num_gpus_per_replica F] [--torch_threads N] [--max_in_flight N]
    ray job submit --working-dir . -- python -m jobs.evaluate --task gsm8k --replicas 4 ...

The run flags are those of `latentmas-ray run` (the same parser, the same `build_run_config`),
and the run folder is the same store: a run started in process can be finished on a cluster and
the other way round. `run_on_ray()` is the part `latentmas-ray run --ray` calls.

How it runs:
- Connects to `--address`, else to $RAY_ADDRESS (set by `ray job submit`), else starts a local
  Ray in this process. Bad input fails before any sample runs, with one ConfigError each: an
  unreachable address, more replicas than the cluster can place, GPUs asked of a cluster
  without GPUs, a model a replica cannot load.
- Reserves one placement-group bundle per replica ({GPU: F, CPU: 1}, or {CPU: threads} on CPU),
  spread over the nodes, and starts one `actors.hf_actor` replica in each.
- `jobs.scheduler.Scheduler` decides what runs where: batches of `--generate_bs` pending
  samples, at most `--max_in_flight` per replica, requeue on failure. The driver only moves
  results: `ray.wait` on the in-flight work, each finished batch appended to the store at once.
- Code tasks: the replica only generates; scoring (sandboxed test execution) is a separate
  Ray task on a CPU worker, so a replica goes on to its next batch at once.
- Faults: Ray restarts a crashed replica (`max_restarts`); its in-flight batches go to live
  replicas at once; a replica gets work again after answering a `ready()` ping. A result from
  an attempt the scheduler no longer expects is dropped, so no sample is written twice. A killed
  driver loses only the batches in flight: rerun the same command and it resumes from the store.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import sys
import time
from typing import Any, Callable
from urllib.parse import urlparse

from latentmas_ray.errors import ConfigError, LatentMASError

# Set by the Ray job supervisor in the driver of a `ray job submit` job.
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
_POLL_S = 1.0


# ----- flags ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """`latentmas-ray run`'s parser: identical run and cluster flags (--ray is implied here)."""
    from latentmas_ray.commands.run import run_parser
    return run_parser("python -m jobs.evaluate")


# ----- connecting ----------------------------------------------------------------------------

def _host_port(address: str) -> tuple[str, int] | None:
    a = address[len("ray://"):] if address.startswith("ray://") else address
    if ":" not in a:
        return None
    host, _, port = a.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of ray.init's long retries) when nothing listens at `address`."""
    if address.startswith(("http://", "https://")):
        u = urlparse(address)
        raise ConfigError(
            f"--address {address} is an HTTP (dashboard / job submission) address; the driver "
            f"connects to the cluster's GCS address, e.g. {u.hostname}:6379 (or submit with "
            f"`ray job submit --address {address} -- python -m jobs.evaluate ...`)")
    if address in ("auto", "local"):
        return
    hp = _host_port(address)
    if hp is None:
        raise ConfigError(f"--address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start one with "
            "`ray start --head` (or cluster/local_cluster.py start), or fix --address / "
            "RAY_ADDRESS; without either a local Ray is started in this process") from None


def connect(address: str | None, *, local_cpus: int | None = None) -> tuple[bool, str]:
    """Connect this process to Ray. Returns (we started it / must shut it down, description)."""
    import ray

    if ray.is_initialized():
        return False, "the Ray this process is already connected to"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address == "local":
        kwargs.update(num_cpus=local_cpus, include_dashboard=False)
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cannot connect to a Ray cluster at {address}: {e}") from None
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        if "Authentication" in name or "auth" in str(e).lower():
            raise ConfigError(
                f"the Ray cluster at {address} refused the connection ({name}): it uses token "
                "authentication; set RAY_AUTH_MODE=token (the token is read from "
                "~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
        raise ConfigError(f"cannot connect to a Ray cluster at {address}: {name}: {e}") from None
    where = "a local Ray started in this process" if address == "local" else f"the cluster at {address}"
    return address == "local", where


# ----- placing the replicas ------------------------------------------------------------------

def replica_bundle(gpus: float, threads: int, actors: int = 1) -> dict[str, float]:
    """One replica's resources. `actors` = 2 for a hybrid LatentMAS replica (an HF actor with
    `threads` CPU slots + a vLLM actor with one; on GPU one CPU slot each)."""
    if gpus > 0:
        return {"CPU": float(actors), "GPU": float(gpus)}
    return {"CPU": float(threads + actors - 1)}


def placeable(nodes: list[dict[str, float]], bundle: dict[str, float]) -> int:
    """How many bundles the nodes could hold if they were otherwise empty."""
    n = 0
    for res in nodes:
        n += min(int(math.floor(res.get(k, 0.0) / v + 1e-9)) for k, v in bundle.items() if v > 0)
    return n


def alive_node_resources() -> list[dict[str, float]]:
    import ray
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_placement(replicas: int, gpus: float, threads: int, where: str,
                    actors: int = 1) -> dict[str, float]:
    """The static checks: GPUs exist when asked for, and the nodes can hold the replicas."""
    nodes = alive_node_resources()
    total_gpus = sum(n.get("GPU", 0.0) for n in nodes)
    total_cpus = sum(n.get("CPU", 0.0) for n in nodes)
    if gpus > 0 and total_gpus == 0:
        raise ConfigError(
            f"--num_gpus_per_replica {gpus:g} asks for GPUs, but {where} has none "
            f"({len(nodes)} node(s), {total_cpus:g} CPUs); use --num_gpus_per_replica 0 for "
            "CPU replicas, or a cluster with GPU nodes")
    bundle = replica_bundle(gpus, threads, actors)
    fit = placeable(nodes, bundle)
    if fit < replicas:
        need = ", ".join(f"{v:g} {k}" for k, v in bundle.items() if v > 0)
        have = "; ".join(", ".join(f"{n.get(k, 0):g} {k}" for k in bundle) for n in nodes)
        raise ConfigError(
            f"cannot place {replicas} replicas of {need} each on {where}: its {len(nodes)} "
            f"node(s) ({have}) hold at most {fit}; use --replicas {max(fit, 1)}"
            + (", fewer --torch_threads" if gpus == 0 and threads > 1 else "")
            + " or a bigger cluster")
    return bundle


def reserve(replicas: int, bundle: dict[str, float], timeout: float, where: str):
    """One placement-group bundle per replica, spread over the nodes."""
    import ray
    from ray.util import placement_group, remove_placement_group

    pg = placement_group([dict(bundle) for _ in range(replicas)], strategy="SPREAD",
                         name=f"latentmas-replicas-{os.getpid()}")
    if not pg.wait(timeout_seconds=timeout):
        remove_placement_group(pg)
        free = ray.available_resources()
        raise ConfigError(
            f"{where} could not free {replicas} x {bundle} within {timeout:g} s (free now: "
            f"{ {k: v for k, v in free.items() if k in bundle} }); other jobs hold the "
            "resources (see `ray status`); wait, use fewer --replicas or a longer "
            "--placement_timeout")
    return pg


# ----- the driver ----------------------------------------------------------------------------

def check_ray_args(replicas: int, max_in_flight: int = 2, torch_threads: int | None = None,
                   gpus_per_replica: float | None = None) -> None:
    if replicas < 1:
        raise ConfigError(f"--replicas must be >= 1, got {replicas}")
    if max_in_flight < 1:
        raise ConfigError(f"--max_in_flight must be >= 1, got {max_in_flight}")
    if torch_threads is not None and torch_threads < 1:
        raise ConfigError(f"--torch_threads must be >= 1, got {torch_threads}")
    if gpus_per_replica is not None and gpus_per_replica < 0:
        raise ConfigError(f"--num_gpus_per_replica must be >= 0, got {gpus_per_replica}")


class _Replica:
    def __init__(self, rid: int, handle):
        self.rid, self.handle = rid, handle
        self.info: dict[str, Any] = {}
        self.dead = False
        self.ping_since: float | None = None


def _short(e: BaseException, limit: int = 300) -> str:
    """The useful last line of a (remote) exception."""
    import ray

    if isinstance(e, ray.exceptions.RayActorError) and not getattr(e, "actor_init_failed", False):
        first = str(e).strip().split(". ")[0].split("\n")[0]
        return f"{type(e).__name__}: {first}"[:limit]
    cause = getattr(e, "cause", None)
    if cause is not None and not isinstance(cause, type(e)):
        e = cause
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    line = lines[-1] if lines else type(e).__name__
    for prefix in ("latentmas_ray.errors.ConfigError: ", "latentmas_ray.errors.DataError: "):
        line = line.removeprefix(prefix)
    if ":" not in line:
        line = f"{type(e).__name__}: {line}"
    return line[:limit]


def run_on_ray(cfg, loaded_task, store, model_path, prompts, *, replicas: int = 1,
               address: str | None = None, gpus_per_replica: float | None = None,
               console=None, torch_threads: int | None = None, max_in_flight: int = 2,
               placement_timeout: float = 60.0, max_restarts: int = 3,
               ready_timeout: float = 1800.0, vllm_options=None, vllm_gpu_share: float = 0.5,
               on_event: Callable[[str, dict[str, Any]], None] | None = None) -> float:
    """Evaluate the task's samples that `store` does not hold yet, on `replicas` model replicas.

    cfg: RunConfig (cfg.output already set); loaded_task: tasks.registry.LoadedTask;
    store: an opened RunStore; model_path: the resolved model folder (a replica on another
    node resolves cfg.model.name_or_path itself when that folder is not there); prompts: user
    prompt texts (or {}). Writes each finished batch to `store` and returns the wall seconds of
    the sampling loop (cluster start and model loading excluded, as the in-process run does).
    The caller consolidates the store and writes the summary.

    on_event(kind, info) is a hook for tests and monitoring: "ready" (replicas placed and
    loaded), "batch" (a batch written), "replica_down", "replica_up".

    cfg.use_vllm: replicas are vLLM actors (baseline, TextMAS) or, for LatentMAS, an HF actor +
    a vLLM actor on one node (actors/vllm_actor.py) that split the replica's GPUs
    `1 - vllm_gpu_share` : `vllm_gpu_share`; vllm_options: engines.vllm.VLLMOptions.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    check_ray_args(replicas, max_in_flight, torch_threads, gpus_per_replica)
    done = store.done_ids()
    pending = [s for s in loaded_task.samples if s.id not in done]
    if not pending:
        return 0.0

    cores = os.cpu_count() or 1
    local_threads = torch_threads or max(1, cores // replicas)
    # A local Ray gets enough CPU slots for the replicas plus one for scoring tasks.
    owned, where = connect(address, local_cpus=max(cores, replicas * local_threads) + 1)
    pg = None
    reps: list[_Replica] = []
    try:
        if gpus_per_replica is None:
            has_gpu = sum(n.get("GPU", 0.0) for n in alive_node_resources()) > 0
            gpus_per_replica = 1.0 if has_gpu else 0.0
        # CPU replicas: `threads` torch threads on as many reserved CPU slots. GPU replicas:
        # one CPU slot; torch threads left to Ray's default unless given.
        threads = torch_threads or (local_threads if owned else 1)
        hybrid = cfg.use_vllm and cfg.method.method == "latent_mas"
        bundle = check_placement(replicas, gpus_per_replica, threads, where, 2 if hybrid else 1)
        pg = reserve(replicas, bundle, placement_timeout, where)
        start = ReplicaStarter(cfg, model_path, prompts, gpus_per_replica,
                               threads if gpus_per_replica == 0 else torch_threads, max_restarts,
                               vllm_options, vllm_gpu_share)
        reps = _start_replicas(start, replicas, pg, ready_timeout, console, where)
        if on_event:
            on_event("ready", {"replicas": {r.rid: dict(r.info) for r in reps}})
        return _drive(cfg, store, pending, done, reps, max_in_flight, console, on_event,
                      replica_timeout=ready_timeout)
    finally:
        release([r.handle for r in reps], pg, owned)


def release(handles, pg, owned: bool) -> None:
    """The end of a run, however it ends: replicas killed, their reservation removed, and the
    local Ray this process started (owned) shut down."""
    import ray

    for h in handles:
        kill_replica(h)
    if pg is not None:
        try:
            from ray.util import remove_placement_group
            remove_placement_group(pg)
        except Exception:  # noqa: BLE001
            pass
    if owned:
        ray.shutdown()


class ReplicaStarter:
    """Starts one replica of the run's kind in a placement-group bundle: an HF actor, a vLLM
    actor (cfg.use_vllm, text methods) or a hybrid pair (cfg.use_vllm, LatentMAS)."""

    def __init__(self, cfg, model_path, prompts, gpus: float, threads: int | None,
                 max_restarts: int, vllm_options=None, vllm_gpu_share: float = 0.5):
        self.cfg_dict = cfg.to_dict()
        self.model_path = str(model_path) if model_path else None
        self.prompts = prompts or {}
        self.gpus, self.threads, self.max_restarts = gpus, threads, max_restarts
        self.use_vllm = cfg.use_vllm
        self.hybrid = cfg.use_vllm and cfg.method.method == "latent_mas"
        self.vllm_options = vllm_options.to_dict() if vllm_options is not None else {}
        self.vllm_gpu_share = vllm_gpu_share

    def __call__(self, pg, index: int):
        common = dict(placement_group=pg, bundle_index=index, max_restarts=self.max_restarts)
        cpus = 1.0 if self.gpus > 0 else float(self.threads or 1)
        if self.hybrid:
            from actors.vllm_actor import start_hybrid_replica
            return start_hybrid_replica(
                self.cfg_dict, self.model_path, self.prompts,
                hf_gpus=self.gpus * (1 - self.vllm_gpu_share), vllm_gpus=self.gpus * self.vllm_gpu_share,
                hf_cpus=cpus, vllm_cpus=1.0, hf_threads=self.threads,
                vllm_options=self.vllm_options, **common)
        if self.use_vllm:
            from actors.vllm_actor import start_vllm_replica
            return start_vllm_replica(self.cfg_dict, self.model_path, self.prompts, gpus=self.gpus,
                                      cpus=cpus, vllm_options=self.vllm_options, **common)
        from actors.hf_actor import actor_options, hf_actor_class
        return hf_actor_class().options(**actor_options(gpus=self.gpus, cpus=cpus, **common)).remote(
            self.cfg_dict, self.model_path, self.prompts, self.threads)


def kill_replica(handle) -> None:
    """Stop a replica for good: an actor handle, or a hybrid pair (which has its own kill)."""
    import ray

    try:
        if hasattr(handle, "kill"):
            handle.kill()
        else:
            ray.kill(handle, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone
        pass


def _start_replicas(start: ReplicaStarter, replicas, pg, ready_timeout, console, where
                    ) -> list[_Replica]:
    reps = [_Replica(i, start(pg, i)) for i in range(replicas)]
    try:
        return _await_replicas(reps, start.gpus, start.threads or 1, ready_timeout, console, where)
    except BaseException:
        for r in reps:
            kill_replica(r.handle)
        raise


def _await_replicas(reps, gpus, threads_shown, ready_timeout, console, where):
    import ray

    replicas = len(reps)
    refs = {r.handle.ready.remote(): r for r in reps}
    t0 = time.perf_counter()
    left = dict(refs)
    while left:
        ready, _ = ray.wait(list(left), num_returns=1,
                            timeout=max(0.0, ready_timeout - (time.perf_counter() - t0)))
        if not ready:
            raise ConfigError(f"{len(left)} replica(s) did not load the model within "
                              f"{ready_timeout:g} s on {where}")
        for ref in ready:
            r = left.pop(ref)
            try:
                r.info = ray.get(ref)
            except ray.exceptions.RayError as e:
                raise ConfigError(f"replica {r.rid} could not start on {where}: {_short(e)}") from None
    kind = (f"{gpus:g} GPU" if gpus > 0
            else f"{threads_shown} CPU thread{'s' * (threads_shown > 1)}")
    console.print(f"{replicas} replica(s) of {kind} on {where}, model loaded in "
                  f"{time.perf_counter() - t0:.1f} s", highlight=False)
    for r in reps:
        console.print(f"  replica {r.rid}: {r.info.get('host')} node "
                      f"{(r.info.get('node_id') or '?')[:8]} pid {r.info.get('pid')} "
                      f"{r.info.get('device')} gpus {r.info.get('gpu_ids')} "
                      f"{r.info.get('engine', 'hf')}"
                      + (f" + vllm pid {r.info['vllm'].get('pid')} gpus {r.info['vllm'].get('gpu_ids')}"
                         if "vllm" in r.info else ""), highlight=False)
    return reps


def _drive(cfg, store, pending, done, reps, max_in_flight, console, on_event,
           replica_timeout: float = 1800.0) -> float:
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    from actors.hf_actor import error_row, score_task
    from jobs.scheduler import Scheduler
    from latentmas_ray.progress import progress_bar

    method = cfg.method.method
    sched = Scheduler(pending, cfg.generate_bs, max_in_flight=max_in_flight)
    for r in reps:
        sched.add_replica(r.rid)
    by_id = {r.rid: r for r in reps}
    inflight: dict[Any, tuple[str, Any]] = {}    # ObjectRef -> (kind, ticket | replica)
    scorer = score_task()
    prior = store.read().column("correct").to_pylist() if done else []
    correct = [sum(1 for c in prior if c), len(prior)]
    last_error = [""]

    def emit(kind: str, info: dict[str, Any]) -> None:
        if on_event:
            on_event(kind, info)

    def write(rows: list[dict[str, Any]], advance) -> None:
        store.append(rows)
        correct[0] += sum(1 for r in rows if r["correct"])
        correct[1] += len(rows)
        advance(len(rows))

    def give_up(samples, advance) -> None:
        if samples:
            rows = [error_row(s, method, sched.error_of(s.id) or "failed") for s in samples]
            console.print(f"[yellow]gave up on[/] {len(rows)} sample(s) "
                          f"({', '.join(s.id for s in samples[:5])}): {rows[0]['error']}",
                          highlight=False)
            write(rows, advance)

    def lose(rid: int, why: str, advance) -> None:
        r = by_id[rid]
        if r.rid in sched.live_replicas():
            give_up(sched.replica_down(rid), advance)
            console.print(f"[yellow]replica {rid} lost[/] ({why}); its batches go to the "
                          "others; waiting for it to restart", highlight=False)
            emit("replica_down", {"replica": rid, "error": why})
        if not r.dead and r.ping_since is None:
            r.ping_since = time.perf_counter()
            inflight[r.handle.ready.remote()] = ("ping", rid)

    start = time.perf_counter()
    with progress_bar(console, "samples", total=len(pending),
                      extra=lambda: f"acc {correct[0] / max(correct[1], 1):.1%}") as advance:
        while not sched.finished:
            for ticket, samples in sched.assign():
                h = by_id[ticket.replica].handle
                if any(s.kind == "code" for s in samples):
                    inflight[h.generate.remote(samples)] = ("gen", (ticket, samples))
                else:
                    inflight[h.run.remote(samples)] = ("run", (ticket, samples))
            if not sched.live_replicas():
                if all(r.dead for r in reps):
                    raise LatentMASError(
                        f"all {len(reps)} replicas died ({last_error[0]}); finished samples are "
                        "saved, rerun the same command to resume")
                since = [r.ping_since for r in reps if not r.dead and r.ping_since is not None]
                if since and time.perf_counter() - min(since) > replica_timeout:
                    raise LatentMASError(
                        f"no replica came back within {replica_timeout:g} s ({last_error[0]}); "
                        "the cluster cannot place them (see `ray status`); finished samples are "
                        "saved, rerun the same command to resume")
            if not inflight:
                raise LatentMASError("no live replica and nothing in flight (this is a bug)")
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=_POLL_S)
            for ref in ready:
                kind, what = inflight.pop(ref)
                if kind == "ping":
                    r = by_id[what]
                    r.ping_since = None
                    try:
                        r.info = ray.get(ref)
                    except RayActorError as e:
                        if isinstance(e, ray.exceptions.ActorDiedError):
                            r.dead = True       # restarts exhausted or unplaceable
                            last_error[0] = _short(e)
                            console.print(f"[red]replica {what} is gone[/]: {_short(e)}",
                                          highlight=False)
                        else:                   # restarting: ask again
                            time.sleep(0.2)
                            r.ping_since = time.perf_counter()
                            inflight[r.handle.ready.remote()] = ("ping", what)
                        continue
                    except RayError as e:
                        r.dead = True
                        last_error[0] = _short(e)
                        continue
                    sched.replica_up(what)
                    console.print(f"replica {what} is back (pid {r.info.get('pid')})",
                                  highlight=False)
                    emit("replica_up", {"replica": what, "info": dict(r.info)})
                    continue
                ticket, samples = what
                try:
                    value = ray.get(ref)
                except RayActorError as e:          # the replica died or restarts
                    last_error[0] = _short(e)
                    lose(ticket.replica, _short(e), advance)
                    continue
                except RayTaskError as e:           # the method or the scorer raised
                    last_error[0] = _short(e)
                    # ... or could not fetch its input because the actor that made it died
                    # (a disaggregated role's memory): a loss, not the batch's fault
                    lost = isinstance(getattr(e, "cause", None), ray.exceptions.ObjectLostError)
                    give_up(sched.failed(ticket, _short(e), lost=lost), advance)
                    continue
                except RayError as e:               # lost objects, dead workers, ...
                    last_error[0] = _short(e)
                    give_up(sched.failed(ticket, _short(e), lost=True), advance)
                    continue
                if kind == "gen":
                    if sched.generated(ticket):     # the replica is free; score on a CPU worker
                        inflight[scorer.remote(samples, ref, cfg.scoring, method)] = (
                            "score", (ticket, samples))
                    continue
                if sched.complete(ticket):          # "run" and "score" carry store rows
                    write(value, advance)
                    emit("batch", {"replica": ticket.replica, "ids": [s.id for s in samples],
                                   "scored_by": "cpu_task" if kind == "score" else "replica"})
    return time.perf_counter() - start


# ----- the command ---------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    from latentmas_ray.cli import execute

    args = build_parser().parse_args(argv)
    args.ray = True
    return execute(args)


if __name__ == "__main__":
    sys.exit(main())
