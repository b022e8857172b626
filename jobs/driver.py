"""The one Ray driver: every placement's replicas, one `ray.wait` loop, the store as the truth.

    run_on_ray(cfg, task, store, model_path, prompts) -> wall seconds of the sampling loop

1. Connect (jobs/placement.py), ask the run's replica factory (jobs/replicas.py) what a replica
   needs; on a fixed cluster check the nodes could hold the replicas at all; with --autoscale
   ask the autoscaler for them instead. Each replica gets its own placement group
   (jobs/fleet.py): the run starts with those that are placed and loaded, the others join
   when the cluster makes room; nothing placed within --placement_timeout is the only
   placement error.
2. `Driver.run`: `jobs.scheduler.Scheduler` decides what runs where (batches of
   --generate_bs, at most the factory's in-flight count per replica, requeue on failure); the
   loop only moves results: ONE `ray.wait` on the in-flight work, the fleet's placement and
   health refs included (nothing sleeps), each finished batch appended to the store at once.
   Code tasks: the replica only generates; scoring is a 1-CPU Ray task that needs the
   --scoring_resource (declared on CPU nodes only).
3. Failures cross the actor boundary as types (latentmas_ray/errors.py, actors/common.py)
   and are handled apart:
   - a ConfigError (the run's fault, e.g. a prompt longer than the engine takes) stops the run
     at once with its line: retrying a deterministic error only wastes the cluster;
   - a SampleError (one sample cannot be evaluated, e.g. a TextMAS chain past vLLM's length) is
     split off without retries and recorded as that sample's error row;
   - any other error of a batch requeues, splits and finally records the bad sample as an
     error row, as the scheduler says;
   - a replica fault: its process died (RayActorError: Ray restarts it, the fleet pings it
     back), a ReplicaFault (device / engine), batches that fail there and succeed elsewhere
     (the scheduler's strikes), or a batch past its deadline (jobs/deadlines.py: the replica
     is hung). A broken or hung replica is killed and a fresh one takes its seat; its
     batches go to the others at once. A result from an attempt the scheduler no longer
     expects is dropped, so no sample is written twice. A killed driver loses only the
     batches in flight: rerun the same command and it resumes from the store;
   - a load failure is its seat's (jobs/fleet.py): the run goes on while a replica is up.
4. A stop signal (jobs/stop.py) ends the loop within a second: nothing more is submitted,
   the engines are closed in parallel, the autoscaler request is withdrawn.
Memory: nothing per sample. The task stays on disk (tasks/sample_file.py: 8 bytes of offset a
sample), batches are read from it as they are handed out, completions are counted, and the
counts of earlier sessions are read from two store columns; bench/bench_scale.py measures the
driver's peak memory at 1M samples against 50k.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from jobs.placement import (alive_node_resources, ask_autoscaler, check_placement, check_scoring,
                          connect, release)
from jobs.disaggregated import DisaggregatedFactory
from jobs.fleet import Fleet
from jobs.monitor import Monitor
from jobs.replicas import HFFactory, HybridFactory, ReplicaFactory, VLLMFactory
from jobs.scheduler import Scheduler
from jobs.streams import RowStreams
from jobs.deadlines import Deadlines
from jobs.stop import NO_STOP, STOP_CLOSE_S, StopSignal
from latentmas_ray.spec.identity import precision_identity
from latentmas_ray.run.pending import pending_samples
from latentmas_ray.errors import (ConfigError, LatentMASError, ReplicaFault, SampleError, Stopped,
                                  typed_cause)

POLL_S = 1.0            # the loop wakes at least this often (timeouts, deadlines, a stop)
STRIKES = 3             # batches failed on a replica that then succeeded elsewhere: replaced

Event = Callable[[str, dict[str, Any]], None]


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


def wants_gpus(cfg, nodes: list[dict[str, float]]) -> bool:
    """Whether a replica gets GPUs when --num_gpus_per_replica is not given: where the cluster
    has GPUs; with --autoscale the nodes alive now say nothing (GPU nodes may not be up yet),
    so from the spec: GPUs unless --device cpu (a CPU fleet says --num_gpus_per_replica 0)."""
    if cfg.execution.autoscale:
        return cfg.model.device != "cpu"
    return sum(n.get("GPU", 0.0) for n in nodes) > 0


def run_on_ray(cfg, loaded_task, store, model_path, prompts, *, console=None,
               on_event: Event | None = None, factory: ReplicaFactory | None = None,
               observer=None, stop: StopSignal = NO_STOP) -> float:
    """Evaluate the task's samples that `store` does not hold yet on cfg.execution.replicas
    replicas of the run's placement. Writes each finished batch to `store`; returns the wall
    seconds of the sampling loop (cluster start and model loading excluded, as in process).

    cfg: RunConfig (cfg.output already set); loaded_task: anything with `.samples`; store: an
    opened RunStore; model_path: the resolved model folder (a replica on another node resolves
    cfg.model.name_or_path itself when that folder is not there); prompts: user prompt texts.
    on_event(kind, info), for tests and monitoring: "ready" (the first replicas placed and
    loaded), "batch" (a batch written), "replica_down", "replica_up", "replica_replaced", and
    the factory's own events. factory: a ReplicaFactory instead of the run's own (bench/).
    observer: a latentmas_ray.run.observe.RunObserver that hears each written batch (this driver
    process logs to W&B; actors never do). stop: the process's StopSignal (jobs/stop.py); once
    it is requested the loop raises errors.Stopped after the clean-up below.
    """
    from rich.console import Console

    console = console or Console(stderr=True)
    pending = pending_samples(loaded_task.samples, store)   # read on demand, by batch
    if not pending:
        return 0.0
    emit: Event = on_event or (lambda kind, info: None)
    ex = cfg.execution
    factory = factory or factory_for(cfg, model_path, prompts)
    factory.resolve(cluster_has_gpus=False, owned=True)   # sizes a local Ray, if one is started
    local = factory.local_cpus()
    owned, where = connect(ex.address, local_cpus=local,
                           local_resources={ex.scoring_resource: float(local)})
    stop.reclaim()          # ray.init replaced the SIGTERM handler with one that aborts
    driver, stopping = None, False
    try:
        factory.resolve(cluster_has_gpus=wants_gpus(cfg, alive_node_resources()), owned=owned)
        store.check_identity(precision_identity(cfg.model.device, cfg.model.dtype,
                                                gpu=factory.gpus > 0))
        bundles = factory.bundles()
        code = pending[0].kind == "code"        # one task: one kind
        if ex.autoscale:        # the nodes alive now say nothing: ask for what the run needs
            ask_autoscaler(bundles * ex.replicas + ([{"CPU": 1.0, ex.scoring_resource: 1.0}]
                                                    if code and ex.scoring_resource != "any" else []))
        else:
            check_placement(ex.replicas, bundles[0], where, bundles_per_replica=len(bundles),
                            unit=factory.unit)
        if code:
            check_scoring(ex.scoring_resource, where, ex.autoscale)
        driver = Driver(cfg, store, pending, factory, console, emit, where, observer=observer,
                        run_total=len(loaded_task.samples), stop=stop)
        try:
            with stop.listen():
                wall = driver.run()
        except (Stopped, KeyboardInterrupt):
            stopping = True
            raise
        factory.after_run(driver.fleet.handles(), console, emit)
        return wall
    finally:
        if driver is not None:
            driver.fleet.stop(STOP_CLOSE_S if stopping or stop.requested else None)
        if ex.autoscale:
            ask_autoscaler([])      # withdraw the request: the autoscaler may scale down
        release(driver.fleet.groups() if driver else None, owned)


class Driver(RowStreams):
    """The sampling loop: assign batches, wait for any result, write it, handle faults.

    In flight, by ObjectRef: ("run", (ticket, samples)) -> store rows; ("stream", (ticket,
    samples not yet written)) -> an ObjectRefGenerator of store rows as samples finish
    (jobs/streams.py); ("gen", ...) ->
    SampleResults of a code batch, which then go to a ("score", ...) CPU task; the fleet's
    ("pg" | "load" | "ping", n) refs (jobs/fleet.py)."""

    def __init__(self, cfg, store, pending, factory: ReplicaFactory, console, emit: Event,
                 where: str, observer=None, run_total: int | None = None,
                 stop: StopSignal = NO_STOP):
        ex = cfg.execution
        self.stop = stop
        self.cfg, self.store, self.console, self.emit = cfg, store, console, emit
        self.observer = observer
        self.method = cfg.method.method
        self.sched = Scheduler(pending, cfg.batch_size,
                               max_in_flight=factory.in_flight(ex.max_in_flight))
        self.total = len(pending)
        self.inflight: dict[Any, tuple[str, Any]] = {}
        self.fleet = Fleet(factory, ex.replicas, where, inflight=self.inflight, console=console,
                           emit=emit, placement_timeout=ex.placement_timeout,
                           ready_timeout=ex.ready_timeout, describe_error=short_error)
        # progress counts the whole run (run_total samples), earlier sessions' included
        run_total = max(run_total or 0, self.total)
        prior_correct = (store.counts()[1] / cfg.method.num_return_sequences
                         if run_total > self.total else 0)
        self.monitor = Monitor(console, store, run_total,
                               prior=(run_total - self.total, prior_correct),
                               every_s=ex.progress_every, replicas=ex.replicas)
        self.monitor.states = self.fleet.counts
        self.deadlines = Deadlines(ex.batch_timeout, first_s=ex.ready_timeout)
        self.sent_at: dict[Any, float] = {}     # ticket -> when its batch was handed out
        self.scorer = None
        self.scoring_resource = ex.scoring_resource

    # ----- the loop ------------------------------------------------------------------------
    def run(self) -> float:
        import ray

        self.fleet.place_all()
        start = None
        with self.monitor.running():
            while not self.sched.finished:
                if self.stop.requested:
                    self.keep_finished()
                    raise Stopped(f"{self.stop.requested}: {self.sched.remaining} sample(s) not "
                                  "run; rerun the same command to resume")
                self.fleet.tick()
                self.check_deadlines()
                self.join()
                if self.fleet.started:
                    if start is None:      # rates count from the first replicas' start
                        start = self.monitor.t0 = time.perf_counter()
                    self.submit()
                if not self.inflight and self.fleet.next_due() == float("inf"):
                    raise LatentMASError("no live replica and nothing in flight (this is a bug)")
                timeout = min(POLL_S, self.fleet.next_due())
                ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
                if ready:   # take every result already there, not one per turn
                    ready, _ = ray.wait(list(self.inflight), num_returns=len(self.inflight),
                                        timeout=0)
                self.take(ready)
                self.monitor.tick(len(self.sched.live_replicas()), self.in_flight_work())
        return time.perf_counter() - (start or time.perf_counter())

    def take(self, ready: list) -> None:
        for ref in ready:
            kind, what = self.inflight.pop(ref)
            if kind in ("pg", "load", "ping"):
                self.fleet.on_ref(kind, ref, what)
            elif kind == "stream":
                self.on_stream(ref, *what)
            else:
                self.on_result(ref, kind, *what)

    def join(self) -> None:
        """Replicas the fleet brought up since the last turn get work (after the start)."""
        if not self.fleet.started:
            return
        for rid, new in self.fleet.joined:
            if new:
                self.sched.add_replica(rid)
            else:
                self.sched.replica_up(rid)
        self.fleet.joined.clear()

    def in_flight_work(self) -> tuple[int, int, float]:
        """(samples handed out and not yet written, their batches, seconds the oldest is out)."""
        out = [what for kind, what in self.inflight.values()
               if kind in ("run", "stream", "gen", "score")]
        now = time.perf_counter()
        oldest = max((now - self.sent_at.get(ticket, now) for ticket, _ in out), default=0.0)
        return sum(len(samples) for _, samples in out), len(out), oldest

    def submit(self) -> None:
        for ticket, samples in self.sched.assign():
            self.sent_at[ticket] = time.perf_counter()
            h = self.fleet.slots[ticket.replica].handle
            self.deadlines.start(ticket.serial, ticket.replica, len(samples))
            if any(s.kind == "code" for s in samples):
                self.inflight[h.generate.remote(samples)] = ("gen", (ticket, samples))
            elif getattr(h, "run_stream", None) is not None:   # rows as samples finish
                self.inflight[h.run_stream.remote(samples)] = ("stream", (ticket, list(samples)))
            else:
                self.inflight[h.run.remote(samples)] = ("run", (ticket, samples))

    # ----- results -------------------------------------------------------------------------
    def on_result(self, ref, kind: str, ticket, samples) -> None:
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        sent = self.sent_at.pop(ticket, None)
        try:
            value = ray.get(ref)
        except RayActorError as e:          # the replica died or restarts
            self.lose(ticket.replica, short_error(e))
            return
        except RayTaskError as e:           # the method or the scorer raised ...
            self.on_error(e, kind, ticket)
            return
        except RayError as e:               # lost objects, dead workers, ...
            self.deadlines.finish(ticket.serial, measured=False)
            self.give_up(self.sched.failed(ticket, short_error(e), lost=True))
            return
        if kind != "score":
            self.deadlines.finish(ticket.serial)
        if kind == "gen":
            if self.sched.generated(ticket):     # the replica is free; score on a CPU worker
                score = self.score_task().remote(samples, ref, self.cfg.scoring, self.method, 1,
                                                 self.cfg.execution.sandbox_level)
                self.inflight[score] = ("score", (ticket, samples))
                self.sent_at[ticket] = sent         # still out until its rows are written
            self.check_health("")
            return
        if self.sched.complete(ticket):          # "run" and "score" carry store rows
            self.write(value)
            self.emit("batch", {"replica": ticket.replica, "ids": [s.id for s in samples],
                                "scored_by": "cpu_task" if kind == "score" else "replica"})
            self.check_health("")

    def on_error(self, e, kind: str, ticket) -> None:
        """A batch raised: act on the type of what the actor raised (module doc, 3.)."""
        import ray

        why, cause = short_error(e), typed_cause(e)
        if isinstance(cause, ConfigError):      # deterministic: stop, do not retry
            raise ConfigError(why.removeprefix("ConfigError: ")) from None
        if kind != "score":
            self.deadlines.finish(ticket.serial, measured=False)
        if isinstance(cause, SampleError):      # that sample's error row, no retries
            self.give_up(self.sched.failed(ticket, why, deterministic=True))
            return
        # ... or could not fetch its input because the actor that made it died (a
        # disaggregated role's memory): a loss, not the batch's fault; or the replica's
        # device / engine broke: not the batch's fault either
        lost = isinstance(cause, ray.exceptions.ObjectLostError)
        fault = kind != "score" and isinstance(cause, ReplicaFault)
        if fault:
            self.sched.strike(ticket.replica)
        self.give_up(self.sched.failed(ticket, why, lost=lost or fault))
        self.check_health(why)

    @staticmethod
    def score_options(resource: str) -> dict[str, Any]:
        """Ray options of a scoring task: one unit of the scoring resource ("any": none)."""
        return {} if resource == "any" else {"resources": {resource: 1}}

    def score_task(self):
        if self.scorer is None:
            from actors.common import score_task
            opts = self.score_options(self.scoring_resource)
            self.scorer = score_task().options(**opts) if opts else score_task()
        return self.scorer

    def write(self, rows: list[dict[str, Any]]) -> None:
        self.store.append(rows)
        if self.observer:
            self.observer.on_rows(rows)
        k = self.cfg.method.num_return_sequences     # progress counts samples, not K rows each
        self.monitor.add(len({r["id"] for r in rows}), sum(1 for r in rows if r["correct"]) / k)

    def give_up(self, samples) -> None:
        """Samples the scheduler will not retry become error rows (recorded, not lost)."""
        from latentmas_ray.run.rows import error_rows

        if samples:
            k = self.cfg.method.num_return_sequences
            rows = [r for s in samples
                    for r in error_rows(s, self.method, self.sched.error_of(s.id) or "failed", k)]
            self.console.print(f"[yellow]gave up on[/] {len(samples)} sample(s) "
                               f"({', '.join(s.id for s in samples[:5])}): {rows[0]['error']}",
                               highlight=False)
            self.write(rows)

    # ----- replicas going and coming back --------------------------------------------------
    def check_deadlines(self) -> None:
        """A replica whose oldest batch ran past its deadline is hung: its batches go to the
        others now (once: their tickets become stale), it is killed and replaced."""
        for rid, ran in self.deadlines.overdue().items():
            self.deadlines.forget(rid)
            if rid not in self.sched.live_replicas():
                continue
            why = f"hung: a batch ran {ran:.0f} s, past its deadline"
            held = [s.id for b in self.sched.batches.values() if b.state == "generating"
                    and b.ticket is not None and b.ticket.replica == rid for s in b.samples]
            self.give_up(self.sched.replica_down(rid))
            self.console.print(f"[yellow]replica {rid} {why}[/]; its batches go to the others",
                               highlight=False)
            self.emit("replica_hung", {"replica": rid, "seconds": ran, "requeued": held})
            self.fleet.replace(rid, why, hung=True)

    def lose(self, rid: int, why: str) -> None:
        self.deadlines.forget(rid)
        if rid in self.sched.live_replicas():
            self.give_up(self.sched.replica_down(rid))
            self.console.print(f"[yellow]replica {rid} lost[/] ({why}); its batches go to the "
                               "others; waiting for it to restart", highlight=False)
            self.emit("replica_down", {"replica": rid, "error": why})
        self.fleet.lose(rid)

    def check_health(self, why: str) -> None:
        """Replace the replicas the scheduler finds broken (see Scheduler.unhealthy)."""
        for rid in self.sched.unhealthy(STRIKES):
            self.deadlines.forget(rid)
            self.give_up(self.sched.replica_down(rid))
            self.emit("replica_down", {"replica": rid, "error": why or "unhealthy"})
            self.fleet.replace(rid, "unhealthy: its batches failed and succeeded elsewhere"
                                    + (f"; last: {why}" if why else ""))
