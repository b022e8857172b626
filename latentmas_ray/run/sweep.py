"""A sweep in this process: one engine loaded once, every grid point's pending samples through it.

What `latentmas-ray sweep` does without `--ray` (the Ray form is jobs/sweep_ray.py). Each point
keeps its own Evaluator (its method and settings) over the ONE shared engine, so a point's rows
are those of the point run alone (results do not depend on the batch, latentmas_ray/run/batch.py)
and nothing is loaded twice. Each finished batch goes to its point's store at once, so a killed
sweep loses at most one batch and resumes every point from its store.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from latentmas_ray.run.batch import Evaluator
from latentmas_ray.run.progress import progress_bar
from latentmas_ray.spec.config import RunConfig


@dataclass
class PointWork:
    """One grid point's share of a sweep: its config, store and pending samples."""
    key: str                        # its run id (the folder name)
    cfg: RunConfig
    store: Any                      # an opened RunStore
    pending: list = field(default_factory=list)
    done: int = 0                   # samples earlier sessions finished
    total: int = 0                  # the point's samples in all


class PointEvaluators:
    """One Evaluator per point over one shared engine, made on a point's first batch. `loads`
    counts the engines this object loaded (one, unless an agents file names other models)."""

    def __init__(self, configs: dict[str, RunConfig], model_path, prompts, engine=None):
        self.configs, self.model_path, self.prompts = configs, model_path, prompts
        self.engine = engine
        self.evaluators: dict[str, Evaluator] = {}

    def __getitem__(self, key: str) -> Evaluator:
        ev = self.evaluators.get(key)
        if ev is None:
            ev = Evaluator(self.configs[key], self.model_path, self.prompts, engine=self.engine)
            self.engine = ev.engine         # the first point loads it; the others share it
            self.evaluators[key] = ev
        return ev

    def run_mixed(self, items) -> list[tuple[str, list[dict[str, Any]]]]:
        """Items of several points (anything with `.point` and `.sample`) -> [(point, rows)],
        each point's samples run as one batch of their own, in the order given."""
        groups: dict[str, list] = {}
        for it in items:
            groups.setdefault(it.point, []).append(it.sample)
        return [(key, self[key].run(samples)) for key, samples in groups.items()]


def run_sweep_in_process(base: RunConfig, works: list[PointWork], model_path, prompts, console,
                         on_rows: Callable[[str, list], None] | None = None) -> dict[str, float]:
    """Evaluate every point's pending samples, point after point, batch by batch; returns each
    point's loop seconds (the model load excluded)."""
    if base.execution.torch_threads:
        import torch
        torch.set_num_threads(base.execution.torch_threads)
    evaluators = PointEvaluators({w.key: w.cfg for w in works}, model_path, prompts)
    for w in works:         # the model loads here, before any point's clock starts (as a run's)
        if w.pending:
            evaluators[w.key]
    total = sum(len(w.pending) for w in works)
    walls: dict[str, float] = {}
    with progress_bar(console, "sweep", total=total) as advance:
        for n, w in enumerate(works, 1):
            if not w.pending:
                continue
            console.print(f"point {n}/{len(works)} {w.key}: {len(w.pending)} samples to run, "
                          f"{w.done} already done", highlight=False)
            start = time.perf_counter()
            for i in range(0, len(w.pending), w.cfg.batch_size):
                rows = evaluators[w.key].run(w.pending[i:i + w.cfg.batch_size])
                w.store.append(rows)
                if on_rows:
                    on_rows(w.key, rows)
                advance(len({r["id"] for r in rows}))
            walls[w.key] = time.perf_counter() - start
    return walls


@dataclass(frozen=True)
class PointSample:
    """A sample of one grid point, as the Ray scheduler sees it: a unique `id` over the whole
    sweep and a `kind` that is never "code" (a sweep's replicas score their own rows)."""
    point: str
    sample: Any
    kind: str = "sweep"

    @property
    def id(self) -> str:
        return f"{self.point}::{self.sample.id}"


def interleave(works: list[PointWork], batch: int) -> list[PointSample]:
    """Every point's pending samples in chunks of `batch`, the points taken in turn (point A's
    first chunk, B's first chunk, ...): every point moves from the start, and a scheduler batch
    of `batch` consecutive items holds one point's samples (two only where a point's last chunk
    is short; the replica runs each point's share on its own)."""
    chunks = [[PointSample(w.key, s) for s in w.pending[i:i + batch]]
              for w in works for i in range(0, len(w.pending), batch)]
    per_point: dict[str, list[list[PointSample]]] = {}
    for c in chunks:
        per_point.setdefault(c[0].point, []).append(c)
    out: list[PointSample] = []
    for turn in itertools.zip_longest(*per_point.values()):
        for c in turn:
            out += c or []
    return out
