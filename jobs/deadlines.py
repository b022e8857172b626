"""Batch deadlines from what this run has measured, as a plain class (no Ray: tests drive it).

A replica that hangs (a wedged vLLM EngineCore, an NCCL hang, a GPU that stops answering) does
not die, so Ray never says so; only time does. Every batch sent to a replica is timed from when
it could start there: the later of when it was sent and when that replica last finished a batch
(a replica works through its queue, so the second batch in flight starts when the first ends).
A batch of n samples is late past

    max(floor, FACTOR x the slowest of the last RECENT batches of n samples)

(--batch_timeout is the floor). Before any batch of that size finished, batches of other sizes
are scaled by size; before any batch finished at all, `first_s` (the first batch also warms
the engine up, so it gets the time a replica may take to load). The driver treats a replica
whose oldest batch is late as hung: killed, replaced, its batches requeued once elsewhere.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Hashable

FACTOR = 5.0     # a batch 5x slower than the slowest recent one of its size is not a slow batch
RECENT = 32      # batch times remembered per size


class Deadlines:
    def __init__(self, floor_s: float, first_s: float, factor: float = FACTOR):
        self.floor_s, self.first_s, self.factor = floor_s, first_s, factor
        self.sent: dict[int, tuple[Hashable, int, float]] = {}   # serial -> (replica, size, t)
        self.last_done: dict[Hashable, float] = {}
        self.recent: dict[int, deque[float]] = {}

    def start(self, serial: int, replica: Hashable, size: int, now: float | None = None) -> None:
        self.sent[serial] = (replica, size, time.perf_counter() if now is None else now)

    def finish(self, serial: int, now: float | None = None, *, measured: bool = True) -> None:
        """The batch left the replica (a result: `measured`; a failure: not timed)."""
        got = self.sent.pop(serial, None)
        if got is None:
            return
        now = time.perf_counter() if now is None else now
        replica, size, t = got
        if measured:
            began = max(t, self.last_done.get(replica, t))
            self.recent.setdefault(size, deque(maxlen=RECENT)).append(now - began)
        self.last_done[replica] = now

    def forget(self, replica: Hashable) -> None:
        """The replica is gone (dead, hung, replaced): its batches are no longer timed."""
        for serial in [s for s, (r, _, _) in self.sent.items() if r == replica]:
            del self.sent[serial]
        self.last_done.pop(replica, None)

    def limit(self, size: int) -> float:
        """Seconds a batch of `size` samples may take (see the module's doc)."""
        if self.recent.get(size):
            slowest = max(self.recent[size])
        elif self.recent:
            slowest = max(max(v) * max(1.0, size / s) for s, v in self.recent.items() if v)
        else:
            return max(self.floor_s, self.first_s)
        return max(self.floor_s, self.factor * slowest)

    def overdue(self, now: float | None = None) -> dict[Hashable, float]:
        """{replica: seconds its oldest batch has run} for replicas past their deadline."""
        now = time.perf_counter() if now is None else now
        out: dict[Hashable, float] = {}
        for replica, size, t in sorted(self.sent.values(), key=lambda v: v[2]):
            if replica in out:
                continue
            ran = now - max(t, self.last_done.get(replica, t))
            if ran > self.limit(size):
                out[replica] = ran
        return out
