"""A sweep on Ray: ONE fleet of replicas, each loading the model once, for every grid point.

    run_sweep_on_ray(base, works, model_path, prompts, progress_path) -> loop wall seconds

The run driver (jobs/driver.py) does the work: placement, the one `ray.wait` loop, the
scheduler's requeues and splits, replicas replaced when they die. This module only changes
what flows through it:
- the items it schedules are `PointSample`s (a point and a sample), interleaved point by point
  (latentmas_ray.run.sweep.interleave), so every replica stays busy across the whole grid;
- a replica is a `SweepReplica` (actors/sweep_actor.py) holding one Evaluator per point over
  its one engine; its answer is [(point, rows)], which `SweepDriver.write` routes to each
  point's own store, so every point is an ordinary run folder that resumes on its own;
- progress counts the whole sweep and prints a line when a point finishes.
HF replicas only: the vLLM and hybrid placements are refused by the sweep before it starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jobs.driver import Driver, Event
from jobs.placement import alive_node_resources, check_placement, connect, release
from jobs.replicas import HFFactory


class SweepFactory(HFFactory):
    """HF replicas that hold every point's settings (`points`: run id -> config dict)."""

    def __init__(self, cfg, model_path, prompts, points: dict[str, dict[str, Any]]):
        super().__init__(cfg, model_path, prompts)
        self.points = points

    def start(self, pg, replica: int):
        from actors.common import ActorGroup, remote_form
        from actors.sweep_actor import SweepReplica

        actor = remote_form(SweepReplica).options(**self.actor_options(pg, 0)).remote(
            self.cfg, self.points, self.model_path, self.prompts, self.actor_threads)
        return ActorGroup({"hf": actor}, actor.ready.remote, actor.run_points.remote,
                          actor.run_points.remote)

    def after_run(self, handles: list, console, emit) -> None:
        """Each live replica's own account (batches, points, engines loaded) as an event."""
        import ray

        try:        # informative only: a replica lost at the very end must not fail the sweep
            stats = ray.get([h.actors["hf"].stats.remote() for h in handles], timeout=60)
        except Exception as e:  # noqa: BLE001
            console.print(f"[yellow]replica statistics unavailable[/] ({type(e).__name__})",
                          highlight=False)
            return
        emit("replica_stats", {"replicas": stats})
        loads = sum(s["engines_loaded"] for s in stats)
        console.print(f"{len(stats)} replica(s) ran {sum(s['batches'] for s in stats)} batches "
                      f"of {len(self.points)} points on {loads} model load(s)", highlight=False)


class SweepStore:
    """What the driver's Monitor needs of a store, over every point: prior counts, and a file
    for the running figures (the sweep folder's progress.json)."""

    def __init__(self, works, progress_path: Path | None):
        self.works, self.path = works, progress_path
        self.left = {w.key: len(w.pending) for w in works}     # the driver counts it down

    def counts(self) -> tuple[int, int]:
        n = c = 0
        for w in self.works:
            if w.done:
                a, b = w.store.counts()
                n, c = n + a, c + b
        return n, c

    def write_summary(self, summary: dict[str, Any]) -> None:
        from latentmas_ray.store.atomic import atomic_write_text

        if self.path is not None:       # the overall figures and each point's samples done
            points = {w.key: {"done": w.total - self.left[w.key], "total": w.total}
                      for w in self.works}
            atomic_write_text(self.path, json.dumps({**summary, "points": points}, indent=2) + "\n")


class SweepDriver(Driver):
    """The run driver's loop over PointSamples; rows go to their point's store."""

    def __init__(self, base, works, factory, console, emit: Event, where: str, store: SweepStore):
        from latentmas_ray.run.sweep import interleave

        items = interleave(works, base.batch_size)
        super().__init__(base, store, items, factory, console, emit, where)
        self.works = {w.key: w for w in works}
        self.order = [w.key for w in works]
        self.left = store.left

    def write(self, value: list[tuple[str, list[dict[str, Any]]]]) -> None:
        for key, rows in value:
            w = self.works[key]
            w.store.append(rows)
            k = w.cfg.method.num_return_sequences
            n = len({r["id"] for r in rows})
            self.monitor.add(n, sum(1 for r in rows if r["correct"]) / k)
            self.left[key] -= n
            if self.left[key] == 0:
                done, correct = w.store.counts()
                self.console.print(f"point {self.order.index(key) + 1}/{len(self.order)} "
                                   f"finished: {key} accuracy {correct / max(done, 1):.1%} "
                                   f"({done} samples)", highlight=False)

    def give_up(self, items) -> None:
        """Items the scheduler will not retry become error rows in their point's store."""
        from latentmas_ray.run.batch import error_rows

        if not items:
            return
        grouped: dict[str, list[dict[str, Any]]] = {}
        for it in items:
            cfg = self.works[it.point].cfg
            grouped.setdefault(it.point, []).extend(error_rows(
                it.sample, cfg.method.method, self.sched.error_of(it.id) or "failed",
                cfg.method.num_return_sequences))
        self.console.print(f"[yellow]gave up on[/] {len(items)} sample(s) "
                           f"({', '.join(it.id for it in items[:5])})", highlight=False)
        self.write(list(grouped.items()))


def run_sweep_on_ray(base, works, model_path, prompts, *, console, progress_path=None,
                     on_event: Event | None = None) -> float:
    """Evaluate every point's pending samples on base.execution.replicas HF replicas; returns
    the sampling loop's wall seconds (cluster start and model loads excluded)."""
    if not any(w.pending for w in works):
        return 0.0
    emit: Event = on_event or (lambda kind, info: None)
    ex = base.execution
    factory = SweepFactory(base, model_path, prompts, {w.key: w.cfg.to_dict() for w in works})
    factory.resolve(cluster_has_gpus=False, owned=True)
    local = factory.local_cpus()
    owned, where = connect(ex.address, local_cpus=local,
                           local_resources={ex.scoring_resource: float(local)})
    driver = None
    try:
        factory.resolve(cluster_has_gpus=sum(n.get("GPU", 0.0) for n in alive_node_resources()) > 0,
                        owned=owned)
        check_placement(ex.replicas, factory.bundles()[0], where, bundles_per_replica=1,
                        unit=factory.unit)
        driver = SweepDriver(base, works, factory, console, emit, where,
                             SweepStore(works, progress_path))
        wall = driver.run()
        factory.after_run(driver.fleet.handles(), console, emit)
        return wall
    finally:
        if driver is not None:
            driver.fleet.stop()
        release(driver.fleet.groups() if driver else None, owned)
