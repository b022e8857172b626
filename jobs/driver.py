"""The one Ray driver: every placement's replicas, one `ray.wait` loop, the store as the truth.

    run_on_ray(cfg, task, store, model_path, prompts) -> wall seconds of the sampling loop

1. Connect (jobs/cluster.py), ask the run's replica factory (jobs/replicas.py) what a replica
   needs, check the cluster can hold it, reserve one placement group, start the replicas and
   wait for them to load (one ConfigError each for what cannot work).
2. `Driver.run`: `jobs.scheduler.Scheduler` decides what runs where (batches of
   --generate_bs, at most the factory's in-flight count per replica, requeue on failure); the
   loop only moves results: `ray.wait` on the in-flight work, each finished batch appended to
   the store at once. Code tasks: the replica only generates; scoring is a 1-CPU Ray task.
3. Faults: a replica that dies (RayActorError) is marked down, its batches go to the live
   replicas at once, and it is pinged until Ray has restarted it; a result from an attempt the
   scheduler no longer expects is dropped, so no sample is written twice. A killed driver loses
   only the batches in flight: rerun the same command and it resumes from the store.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from jobs.cluster import alive_node_resources, check_placement, connect, release, reserve
from jobs.disaggregated import DisaggregatedFactory
from jobs.replicas import HFFactory, HybridFactory, ReplicaFactory, VLLMFactory
from jobs.scheduler import Scheduler
from latentmas_ray.errors import ConfigError, LatentMASError

POLL_S = 1.0            # the loop wakes at least this often (to notice replicas that came back)
RETRY_PING_S = 0.2      # pause before pinging a replica that is still restarting

Event = Callable[[str, dict[str, Any]], None]


class ReplicaSlot:
    """The driver's view of one replica: its handle, what its ready() said, whether it is gone
    for good, and since when it is being pinged back (None = not being pinged)."""

    def __init__(self, rid: int, handle):
        self.rid, self.handle = rid, handle
        self.info: dict[str, Any] = {}
        self.dead = False
        self.ping_since: float | None = None


def short_error(e: BaseException, limit: int = 300) -> str:
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


def factory_for(cfg, model_path, prompts) -> ReplicaFactory:
    """The replica factory of the run's placement and engine."""
    if cfg.execution.disaggregated:
        return DisaggregatedFactory(cfg, model_path, prompts)
    kinds = {"hf": HFFactory, "vllm": VLLMFactory, "hybrid": HybridFactory}
    return kinds[cfg.engine_kind](cfg, model_path, prompts)


def run_on_ray(cfg, loaded_task, store, model_path, prompts, *, console=None,
               on_event: Event | None = None) -> float:
    """Evaluate the task's samples that `store` does not hold yet on cfg.execution.replicas
    replicas of the run's placement. Writes each finished batch to `store`; returns the wall
    seconds of the sampling loop (cluster start and model loading excluded, as in process).

    cfg: RunConfig (cfg.output already set); loaded_task: anything with `.samples`; store: an
    opened RunStore; model_path: the resolved model folder (a replica on another node resolves
    cfg.model.name_or_path itself when that folder is not there); prompts: user prompt texts.
    on_event(kind, info), for tests and monitoring: "ready" (replicas placed and loaded),
    "batch" (a batch written), "replica_down", "replica_up", and the factory's own events.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    done = store.done_ids()
    pending = [s for s in loaded_task.samples if s.id not in done]
    if not pending:
        return 0.0
    emit: Event = on_event or (lambda kind, info: None)
    ex = cfg.execution
    factory = factory_for(cfg, model_path, prompts)
    factory.resolve(cluster_has_gpus=False, owned=True)   # sizes a local Ray, if one is started
    owned, where = connect(ex.address, local_cpus=factory.local_cpus())
    pg, slots = None, []
    try:
        factory.resolve(cluster_has_gpus=sum(n.get("GPU", 0.0) for n in alive_node_resources()) > 0,
                        owned=owned)
        bundles = factory.bundles()
        check_placement(ex.replicas, bundles[0], where, bundles_per_replica=len(bundles),
                        unit=factory.unit)
        pg = reserve(bundles * ex.replicas, ex.placement_timeout, where)
        slots = start_replicas(factory, pg, ex.replicas, ex.ready_timeout, console, where)
        extra = factory.after_ready([s.handle for s in slots], console)
        emit("ready", {"replicas": {s.rid: dict(s.info) for s in slots}, **extra})
        driver = Driver(cfg, store, pending, slots, factory.in_flight(ex.max_in_flight), console,
                        emit, replica_timeout=ex.ready_timeout)
        wall = driver.run(n_done=len(done))
        factory.after_run([s.handle for s in slots], console, emit)
        return wall
    finally:
        for s in slots:
            s.handle.kill()
        release(pg, owned)


def start_replicas(factory: ReplicaFactory, pg, replicas: int, ready_timeout: float, console,
                   where: str) -> list[ReplicaSlot]:
    """Start every replica in its bundles and wait until each has loaded its model."""
    import ray

    slots = [ReplicaSlot(i, factory.start(pg, i)) for i in range(replicas)]
    try:
        t0 = time.perf_counter()
        left = {s.handle.ready.remote(): s for s in slots}
        while left:
            ready, _ = ray.wait(list(left), num_returns=1,
                                timeout=max(0.0, ready_timeout - (time.perf_counter() - t0)))
            if not ready:
                raise ConfigError(f"{len(left)} of {replicas} {factory.unit} did not load the "
                                  f"model within {ready_timeout:g} s on {where}")
            for ref in ready:
                s = left.pop(ref)
                try:
                    s.info = factory.ready_info(s.handle, ray.get(ref))
                except ray.exceptions.RayError as e:
                    raise ConfigError(f"replica {s.rid} could not start on {where}: "
                                      f"{short_error(e)}") from None
    except BaseException:
        for s in slots:
            s.handle.kill()
        raise
    console.print(f"{replicas} {factory.label} of {factory.kind()} on {where}, model loaded in "
                  f"{time.perf_counter() - t0:.1f} s", highlight=False)
    for s in slots:
        for line in factory.describe(s.rid, s.info):
            console.print(line, highlight=False)
    return slots


class Driver:
    """The sampling loop: assign batches, wait for any result, write it, handle faults.

    In flight, by ObjectRef: ("run", (ticket, samples)) -> store rows; ("gen", ...) ->
    SampleResults of a code batch, which then go to a ("score", ...) CPU task; ("ping", rid) ->
    a replica's ready() while it is being brought back."""

    def __init__(self, cfg, store, pending, slots: list[ReplicaSlot], max_in_flight: int,
                 console, emit: Event, replica_timeout: float = 1800.0):
        self.cfg, self.store, self.console, self.emit = cfg, store, console, emit
        self.method = cfg.method.method
        self.sched = Scheduler(pending, cfg.generate_bs, max_in_flight=max_in_flight)
        self.slots = {s.rid: s for s in slots}
        for rid in self.slots:
            self.sched.add_replica(rid)
        self.total = len(pending)
        self.replica_timeout = replica_timeout
        self.inflight: dict[Any, tuple[str, Any]] = {}
        self.correct = self.written = 0
        self.last_error = ""
        self.advance: Callable[[int], None] = lambda n: None

    # ----- the loop ------------------------------------------------------------------------
    def run(self, n_done: int = 0) -> float:
        import ray

        from latentmas_ray.progress import progress_bar

        if n_done:      # the running accuracy counts what earlier sessions finished
            prior = self.store.read().column("correct").to_pylist()
            self.correct, self.written = sum(1 for c in prior if c), len(prior)
        start = time.perf_counter()
        with progress_bar(self.console, "samples", total=self.total,
                          extra=lambda: f"acc {self.correct / max(self.written, 1):.1%}") as advance:
            self.advance = advance
            while not self.sched.finished:
                self.submit()
                self.check_alive()
                ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=POLL_S)
                for ref in ready:
                    kind, what = self.inflight.pop(ref)
                    if kind == "ping":
                        self.on_ping(ref, what)
                    else:
                        self.on_result(ref, kind, *what)
        return time.perf_counter() - start

    def submit(self) -> None:
        for ticket, samples in self.sched.assign():
            h = self.slots[ticket.replica].handle
            if any(s.kind == "code" for s in samples):
                self.inflight[h.generate.remote(samples)] = ("gen", (ticket, samples))
            else:
                self.inflight[h.run.remote(samples)] = ("run", (ticket, samples))

    def check_alive(self) -> None:
        """Stop when no replica can come back; a bug if there is nothing to wait for."""
        if not self.sched.live_replicas():
            if all(s.dead for s in self.slots.values()):
                raise LatentMASError(
                    f"all {len(self.slots)} replicas died ({self.last_error}); finished samples "
                    "are saved, rerun the same command to resume")
            since = [s.ping_since for s in self.slots.values()
                     if not s.dead and s.ping_since is not None]
            if since and time.perf_counter() - min(since) > self.replica_timeout:
                raise LatentMASError(
                    f"no replica came back within {self.replica_timeout:g} s ({self.last_error}); "
                    "the cluster cannot place them (see `ray status`); finished samples are "
                    "saved, rerun the same command to resume")
        if not self.inflight:
            raise LatentMASError("no live replica and nothing in flight (this is a bug)")

    # ----- results -------------------------------------------------------------------------
    def on_result(self, ref, kind: str, ticket, samples) -> None:
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        try:
            value = ray.get(ref)
        except RayActorError as e:          # the replica died or restarts
            self.last_error = short_error(e)
            self.lose(ticket.replica, self.last_error)
            return
        except RayTaskError as e:           # the method or the scorer raised ...
            self.last_error = short_error(e)
            if isinstance(getattr(e, "cause", None), ConfigError):   # ... a config error:
                raise ConfigError(self.last_error) from None       # stop, never retried
            # ... or could not fetch its input because the actor that made it died (a
            # disaggregated role's memory): a loss, not the batch's fault
            lost = isinstance(getattr(e, "cause", None), ray.exceptions.ObjectLostError)
            self.give_up(self.sched.failed(ticket, self.last_error, lost=lost))
            return
        except RayError as e:               # lost objects, dead workers, ...
            self.last_error = short_error(e)
            self.give_up(self.sched.failed(ticket, self.last_error, lost=True))
            return
        if kind == "gen":
            if self.sched.generated(ticket):     # the replica is free; score on a CPU worker
                from actors.common import score_task
                score = score_task().remote(samples, ref, self.cfg.scoring, self.method, 1)
                self.inflight[score] = ("score", (ticket, samples))
            return
        if self.sched.complete(ticket):          # "run" and "score" carry store rows
            self.write(value)
            self.emit("batch", {"replica": ticket.replica, "ids": [s.id for s in samples],
                                "scored_by": "cpu_task" if kind == "score" else "replica"})

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.store.append(rows)
        self.correct += sum(1 for r in rows if r["correct"])
        self.written += len(rows)
        self.advance(len(rows))

    def give_up(self, samples) -> None:
        """Samples the scheduler will not retry become error rows (recorded, not lost)."""
        from latentmas_ray.evaluate import error_row

        if samples:
            rows = [error_row(s, self.method, self.sched.error_of(s.id) or "failed") for s in samples]
            self.console.print(f"[yellow]gave up on[/] {len(rows)} sample(s) "
                               f"({', '.join(s.id for s in samples[:5])}): {rows[0]['error']}",
                               highlight=False)
            self.write(rows)

    # ----- replicas going and coming back --------------------------------------------------
    def lose(self, rid: int, why: str) -> None:
        s = self.slots[rid]
        if rid in self.sched.live_replicas():
            self.give_up(self.sched.replica_down(rid))
            self.console.print(f"[yellow]replica {rid} lost[/] ({why}); its batches go to the "
                               "others; waiting for it to restart", highlight=False)
            self.emit("replica_down", {"replica": rid, "error": why})
        if not s.dead and s.ping_since is None:
            self.ping(s)

    def ping(self, s: ReplicaSlot) -> None:
        s.ping_since = time.perf_counter()
        self.inflight[s.handle.ready.remote()] = ("ping", s.rid)

    def on_ping(self, ref, rid: int) -> None:
        import ray
        from ray.exceptions import RayActorError, RayError

        s = self.slots[rid]
        s.ping_since = None
        try:
            s.info = ray.get(ref)
        except RayActorError as e:
            if isinstance(e, ray.exceptions.ActorDiedError):
                s.dead = True           # restarts exhausted or unplaceable
                self.last_error = short_error(e)
                self.console.print(f"[red]replica {rid} is gone[/]: {self.last_error}",
                                   highlight=False)
            else:                       # still restarting: ask again
                time.sleep(RETRY_PING_S)
                self.ping(s)
            return
        except RayError as e:
            s.dead = True
            self.last_error = short_error(e)
            return
        self.sched.replica_up(rid)
        self.console.print(f"replica {rid} is back (pid {s.info.get('pid')})", highlight=False)
        self.emit("replica_up", {"replica": rid, "info": dict(s.info)})
