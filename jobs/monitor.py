"""What a run shows while it goes: a rich bar on a terminal; otherwise (`ray job logs`, a file)
one plain line every --progress_every seconds. Either way summary.json holds the same figures
(status "running") at that pace, so a dashboard or `cat` sees the run move.

    progress 1200/50000 (2.4%) 35.1 samples/s ETA 23m10s acc 41.2% replicas 4/4
        in flight 32 (8 batches, oldest 0m41s) (4 healthy, 0 loading, 0 hung, 1 replaced)
        (one line)

Counts are of the whole run: a resumed run starts at what earlier sessions finished (done and
total over every sample of the run, accuracy over those same done samples), while the rate
and ETA are this session's. `in flight` is the work inside batches: samples handed to replicas
(running or queued on the actor) and not yet written, and how long the oldest of their batches
has been out, so a slow first batch shows.

The replicas by state come from the fleet (jobs/fleet.py Fleet.counts): hung and replaced
count over the whole session.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator


def replica_states_text(states: dict[str, int] | None) -> str:
    """" (3 healthy, 1 loading, 1 hung, 2 replaced)": the fleet's replicas by state
    (jobs/fleet.py Fleet.counts; hung and replaced count over the whole session)."""
    if not states:
        return ""
    return " (" + ", ".join(f"{states.get(k, 0)} {k}"
                            for k in ("healthy", "loading", "hung", "replaced")) + ")"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Monitor:
    """This session's counts (done, correct) on top of what earlier sessions finished."""

    def __init__(self, console, store, total: int, *, prior: tuple[int, float] = (0, 0),
                 every_s: float = 10.0, replicas: int = 1):
        """total: samples of the whole run; prior: (samples earlier sessions finished, how many
        of them were correct; fractional with K completions per sample)."""
        self.console, self.store, self.total, self.every_s = console, store, total, every_s
        self.prior_done, self.prior_correct = prior
        self.done = self.correct = 0
        self.alive, self.replicas = 0, replicas
        self.in_flight_work: tuple[int, int, float] = (0, 0, 0.0)   # samples, batches, oldest s
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.advance: Callable[[int], None] = lambda n: None
        self.states: Callable[[], dict[str, int]] | None = None    # replicas by state
        self.plain = not getattr(console, "is_terminal", False)

    @contextlib.contextmanager
    def running(self) -> Iterator["Monitor"]:
        from latentmas_ray.run.progress import progress_bar

        self.t0 = self.last = time.perf_counter()
        if self.plain:
            yield self
            self.emit()
            return
        def extra() -> str:
            return f"acc {self.accuracy:.1%}{self.in_flight_text()}"

        with progress_bar(self.console, "samples", total=self.total, completed=self.prior_done,
                          extra=extra) as advance:
            self.advance = advance
            yield self

    @property
    def done_in_run(self) -> int:
        return self.prior_done + self.done

    @property
    def accuracy(self) -> float:
        return (self.correct + self.prior_correct) / max(self.done_in_run, 1)

    def add(self, rows: int, correct: float) -> None:
        self.done += rows
        self.correct += correct
        self.advance(rows)

    def figures(self) -> dict:
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done_in_run
        samples, batches, oldest = self.in_flight_work
        return {"status": "running", "done": self.done_in_run, "total": self.total,
                "done_this_session": self.done, "samples_per_s": round(rate, 3),
                "eta_seconds": round(left / rate, 1) if rate > 0 else None,
                "accuracy": self.accuracy, "replicas_alive": self.alive,
                "replicas": self.replicas, "in_flight_samples": samples,
                "in_flight_batches": batches, "oldest_batch_seconds": round(oldest, 1),
                "elapsed_seconds": round(elapsed, 1),
                **({"replica_states": self.states()} if self.states else {})}

    def in_flight_text(self) -> str:
        samples, batches, oldest = self.in_flight_work
        if not batches:
            return ""
        return f" in flight {samples} ({batches} batches, oldest {eta_text(oldest)})"

    def tick(self, alive: int, running: tuple[int, int, float] = (0, 0, 0.0)) -> None:
        """Called every loop turn: prints / writes when --progress_every has passed. running:
        (samples out on replicas, their batches, seconds since the oldest was handed out)."""
        self.alive, self.in_flight_work = alive, running
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.emit()

    def emit(self) -> None:
        f = self.figures()
        if self.plain:
            self.console.print(
                f"progress {f['done']}/{f['total']} ({f['done'] / max(f['total'], 1):.1%}) "
                f"{f['samples_per_s']:.2f} samples/s ETA {eta_text(f['eta_seconds'])} "
                f"acc {f['accuracy']:.1%} replicas {f['replicas_alive']}/{f['replicas']}"
                f"{self.in_flight_text()}" + replica_states_text(f.get("replica_states")),
                highlight=False, soft_wrap=True)
        try:
            self.store.write_summary({"progress": f})
        except OSError:     # informative only; the parts are the truth
            pass
