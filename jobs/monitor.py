"""What a run shows while it goes: a rich bar on a terminal; otherwise (`ray job logs`, a file)
one plain line every --progress_every seconds. Either way summary.json holds the same figures
(status "running") at that pace, so a dashboard or `cat` sees the run move.

    progress 1200/50000 (2.4%) 35.1 samples/s ETA 23m10s acc 41.2% replicas 4/4 (4 healthy, 0 loading, 0 hung, 1 replaced)
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
    """Counts of this session (done, correct) plus what earlier sessions finished."""

    def __init__(self, console, store, total: int, *, prior: tuple[int, int] = (0, 0),
                 every_s: float = 10.0, replicas: int = 1):
        self.console, self.store, self.total, self.every_s = console, store, total, every_s
        self.prior_written, self.prior_correct = prior
        self.done = self.correct = 0
        self.alive, self.replicas = 0, replicas
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
        with progress_bar(self.console, "samples", total=self.total,
                          extra=lambda: f"acc {self.accuracy:.1%}") as advance:
            self.advance = advance
            yield self

    @property
    def accuracy(self) -> float:
        return (self.correct + self.prior_correct) / max(self.done + self.prior_written, 1)

    def add(self, rows: int, correct: int) -> None:
        self.done += rows
        self.correct += correct
        self.advance(rows)

    def figures(self) -> dict:
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = self.total - self.done
        return {"status": "running", "done": self.done, "total": self.total,
                "samples_per_s": round(rate, 3),
                "eta_seconds": round(left / rate, 1) if rate > 0 else None,
                "accuracy": self.accuracy, "replicas_alive": self.alive,
                "replicas": self.replicas, "elapsed_seconds": round(elapsed, 1),
                **({"replica_states": self.states()} if self.states else {})}

    def tick(self, alive: int) -> None:
        """Called every loop turn: prints / writes when --progress_every has passed."""
        self.alive = alive
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
                + replica_states_text(f.get("replica_states")),
                highlight=False, soft_wrap=True)
        try:
            self.store.write_summary({"progress": f})
        except OSError:     # informative only; the parts are the truth
            pass
