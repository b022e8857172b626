"""The driver's bookkeeping, as a plain class: which batch runs where, what is finished, what to
redo. No Ray here, so every rule below is tested without a cluster (tests/test_scheduler.py).

Life of a batch (a run of consecutive pending samples, at most `batch_size` of them):

    queued --assign--> generating on replica R --generated--> scoring --complete--> done
       ^                    |                                     |
       +------- failed / replica_down (requeued at the front) ----+

- Bounded in-flight work: a replica holds at most `max_in_flight` generating batches (one
  running, the others queued on the actor so it never waits for the driver). The extra slots
  are only filled while the queue holds enough work for every live replica, so the tail of a
  run is not stuck behind one replica while another idles.
- Tickets: every assignment gets a fresh ticket. Only the batch's current ticket may advance
  it; a result that arrives on an old ticket (a replica declared dead whose work was already
  handed to another) is refused. So a sample's result is accepted at most once, and the
  caller writes exactly the results `complete()` accepts: nothing is ever written twice.
- Failures: a batch whose replica died (`replica_down`, or `failed(..., lost=True)`) goes back
  to the front of the queue. A batch that raised goes back too; after `max_attempts` errors it
  is split in halves, so one bad sample cannot sink its neighbours, and a single sample that
  keeps failing is given up: `failed()` returns it, and the caller records it as an error row
  (a recorded error, never a crashed run). Replica losses count separately (`max_losses`),
  since a node going away is not the batch's fault; a batch that keeps killing its replica is
  treated like one that keeps raising.
- Broken replicas: a batch that raised on replica R goes preferably to another replica; when
  it then succeeds there, R gets a strike (the batch was fine, R was not). A success on R
  clears its strikes. `unhealthy(k)` names the live replicas with k strikes, or with a long
  run of failures and no success (a lone replica has nobody to be compared with); the driver
  replaces them. Split halves do not inherit a batch's failures, so one bad sample never
  strikes the replicas it failed on.
- Partial results: a replica that streams rows as samples finish hands them in with
  `partial(ticket, ids)` (current ticket only): they are complete at once and leave the
  batch, which runs on; a failure or loss after that requeues only its unfinished samples.
- Memory: batches are cut from the pending samples as they are handed out (the samples may
  be a lazily read SampleFile: tasks/sample_file.py), a finished batch drops its samples,
  completions are counted, not remembered by id; a given-up sample's error is kept by id. A
  million-sample run holds a few hundred bytes per batch made, nothing per sample.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, Hashable, Iterable, Sequence, TypeVar

S = TypeVar("S")  # a sample; anything with an `id` attribute


@dataclass(slots=True)
class Batch(Generic[S]):
    key: int
    samples: list[S]
    errors: int = 0            # attempts that raised
    losses: int = 0            # attempts lost with their replica
    last_error: str = ""
    state: str = "queued"      # queued | generating | scoring | done | split | given_up
    ticket: "Ticket | None" = None
    failed_on: frozenset = frozenset()   # replicas where this batch raised


@dataclass(frozen=True)
class Ticket:
    batch: int      # Batch.key
    serial: int     # unique over the scheduler's life
    replica: Hashable


@dataclass
class Replica:
    up: bool = True
    generating: set[int] = field(default_factory=set)   # Ticket.serial of batches running here
    batches_done: int = 0
    strikes: int = 0        # batches that raised here and then succeeded elsewhere, or faults
    fails_in_a_row: int = 0


class Scheduler(Generic[S]):
    def __init__(self, samples: Sequence[S], batch_size: int, *, max_in_flight: int = 2,
                 max_attempts: int = 2, max_losses: int = 4, done_ids: Iterable[str] = ()):
        """samples: the pending ones, in order; a list is checked for repeated ids here (a
        loaded task's ids were checked by load_task) and `done_ids` are left out of it."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        done = set(done_ids)
        if done or isinstance(samples, list):
            samples = [s for s in samples if s.id not in done]
            ids = [s.id for s in samples]
            if len(set(ids)) != len(ids):
                raise ValueError("sample ids are not unique")
        self.max_in_flight = max_in_flight
        self.max_attempts = max(1, max_attempts)
        self.max_losses = max(1, max_losses)
        self._keys = itertools.count()
        self._serials = itertools.count()
        self.batches: dict[int, Batch[S]] = {}
        self.queue: deque[int] = deque()        # batches made and queued (requeued, split)
        self._todo, self._next, self.batch_size = samples, 0, batch_size   # not cut yet
        self.replicas: dict[Hashable, Replica] = {}
        self.total = len(samples)
        self.completed = 0                       # accepted by complete() or given up
        self.given_up_ids: set[str] = set()
        self.given_up_errors: dict[str, str] = {}

    # ----- construction helpers -------------------------------------------------------------
    def _new_batch(self, samples: list[S], errors: int = 0, losses: int = 0) -> Batch[S]:
        b = Batch(next(self._keys), list(samples), errors=errors, losses=losses)
        self.batches[b.key] = b
        return b

    def _enqueue(self, b: Batch[S], front: bool = False) -> None:
        b.state, b.ticket = "queued", None
        (self.queue.appendleft if front else self.queue.append)(b.key)

    # ----- replicas -------------------------------------------------------------------------
    def add_replica(self, rid: Hashable) -> None:
        if rid in self.replicas:
            raise ValueError(f"replica {rid!r} already added")
        self.replicas[rid] = Replica()

    def replica_up(self, rid: Hashable) -> None:
        self.replicas[rid].up = True

    def replica_down(self, rid: Hashable) -> list[S]:
        """The replica died or is restarting: its generating batches go back to the front of
        the queue (their tickets become stale) and it gets no work until `replica_up`.
        Returns the samples given up because they lost too many replicas (usually none)."""
        rep = self.replicas[rid]
        rep.up = False
        lost = [b for b in self.batches.values()
                if b.state == "generating" and b.ticket is not None and b.ticket.replica == rid]
        given_up: list[S] = []
        for b in sorted(lost, key=lambda b: -b.key):   # keep the original order at the front
            given_up += self._lose(b, f"its replica {rid} died")
        rep.generating.clear()
        return given_up

    def live_replicas(self) -> list[Hashable]:
        return [rid for rid, r in self.replicas.items() if r.up]

    def in_flight(self, rid: Hashable) -> int:
        return len(self.replicas[rid].generating)

    # ----- assignment -----------------------------------------------------------------------
    def assign(self) -> list[tuple[Ticket, list[S]]]:
        """Hand queued batches to live replicas, least loaded first, up to the bound."""
        out: list[tuple[Ticket, list[S]]] = []
        live = self.live_replicas()
        if not live:
            return out
        for depth in range(self.max_in_flight):
            for rid in sorted(live, key=lambda r: self.in_flight(r)):
                if not self.queued():
                    return out
                if self.in_flight(rid) > depth:
                    continue
                # A second (third...) slot only while every live replica can still get work.
                if self.in_flight(rid) >= 1 and self.queued() < len(live):
                    continue
                b = self.batches[self._take_for(rid, live)]
                t = Ticket(b.key, next(self._serials), rid)
                b.state, b.ticket = "generating", t
                self.replicas[rid].generating.add(t.serial)
                out.append((t, list(b.samples)))
        return out

    def queued(self) -> int:
        """Batches waiting for a replica: those queued, and those not cut from the pending
        samples yet."""
        return len(self.queue) + -(-(len(self._todo) - self._next) // self.batch_size)

    def _take_for(self, rid: Hashable, live: list[Hashable]) -> int:
        """The first queued batch (of the next few) that has not failed on `rid`; the front one
        when all of those have, unless another live replica could take it later. Batches not
        cut yet come after the queued ones and have failed nowhere."""
        for i, key in enumerate(itertools.islice(self.queue, 8)):
            if rid not in self.batches[key].failed_on:
                del self.queue[i]
                return key
        if len(self.queue) < 8 and self._next < len(self._todo):
            return self._cut().key
        return self.queue.popleft()

    def _cut(self) -> Batch[S]:
        """The next batch of pending samples (read now: a lazily read task stays on disk)."""
        start, self._next = self._next, min(self._next + self.batch_size, len(self._todo))
        return self._new_batch(self._todo[start:self._next])

    def unhealthy(self, strikes: int = 3, in_a_row: int = 8) -> list[Hashable]:
        """Live replicas that look broken (see the module's doc)."""
        return [rid for rid, r in self.replicas.items()
                if r.up and (r.strikes >= strikes or r.fails_in_a_row >= in_a_row)]

    def strike(self, rid: Hashable) -> None:
        """A fault of the replica itself (a device error, a dead engine)."""
        if rid in self.replicas:
            self.replicas[rid].strikes += 1

    def _succeeded(self, b: Batch[S], rid: Hashable) -> None:
        rep = self.replicas[rid]
        rep.strikes = rep.fails_in_a_row = 0
        for other in b.failed_on - {rid}:
            if other in self.replicas:
                self.replicas[other].strikes += 1
        b.failed_on = frozenset()

    # ----- outcomes -------------------------------------------------------------------------
    def _current(self, t: Ticket, *states: str) -> Batch[S] | None:
        b = self.batches.get(t.batch)
        if b is None or b.ticket != t or b.state not in states:
            return None
        return b

    def _release(self, t: Ticket) -> None:
        rep = self.replicas.get(t.replica)
        if rep is not None:
            rep.generating.discard(t.serial)

    def generated(self, t: Ticket) -> bool:
        """Generation finished; scoring follows elsewhere. Frees the replica's slot. False for
        a stale ticket (ignore its result)."""
        b = self._current(t, "generating")
        if b is None:
            return False
        self._release(t)
        b.state = "scoring"
        self.replicas[t.replica].batches_done += 1
        self._succeeded(b, t.replica)
        return True

    def complete(self, t: Ticket) -> bool:
        """The batch's rows are ready. True exactly once per batch: the caller writes the rows
        if and only if this returns True."""
        b = self._current(t, "generating", "scoring")
        if b is None:
            return False
        if b.state == "generating":
            self.generated(t)
        self.completed += len(b.samples)     # once: the batch is done, its ticket spent
        b.state, b.ticket, b.samples = "done", None, []
        return True

    def partial(self, t: Ticket, ids: Iterable[str]) -> bool:
        """Some samples of a generating batch finished (a replica that streams its rows as
        samples finish). True exactly when the caller must write their rows: the ticket is the
        batch's current one and every id is one of its unfinished samples. They count as
        complete and leave the batch; the rest keep running on the same ticket, and only they
        are requeued if the replica then dies or hangs. Ids that are the batch's last finish
        it as `complete` does. A stale ticket, or an id not unfinished in the batch (a repeat),
        is refused and changes nothing, so no sample is written twice."""
        b = self._current(t, "generating")
        ids = set(ids)
        if b is None or not ids or not ids <= {s.id for s in b.samples}:
            return False
        if len(ids) == len(b.samples):
            return self.complete(t)
        self.completed += len(ids)          # once: they leave the batch's unfinished samples
        b.samples = [s for s in b.samples if s.id not in ids]
        return True

    def failed(self, t: Ticket, error: str, *, lost: bool = False,
               deterministic: bool = False) -> list[S]:
        """The attempt behind `t` failed (raised, or `lost` with its replica). Requeues or
        splits the batch; returns the samples given up (record them as errors). A stale
        ticket changes nothing. `deterministic`: a sample's own error (errors.SampleError),
        which a retry would only repeat: split at once, a single sample given up at once."""
        b = self._current(t, "generating", "scoring")
        if b is None:
            return []
        self._release(t)
        if lost:
            return self._lose(b, error)
        if not deterministic:      # the sample's fault says nothing about the replica
            b.failed_on = b.failed_on | {t.replica}
            if t.replica in self.replicas:
                self.replicas[t.replica].fails_in_a_row += 1
        b.errors = self.max_attempts if deterministic else b.errors + 1
        b.last_error = error
        if b.errors < self.max_attempts:
            self._enqueue(b, front=True)
            return []
        return self._split_or_give_up(b)

    def _lose(self, b: Batch[S], error: str) -> list[S]:
        b.losses += 1
        b.last_error = error
        if b.losses < self.max_losses:
            self._enqueue(b, front=True)
            return []
        return self._split_or_give_up(b)

    def _split_or_give_up(self, b: Batch[S]) -> list[S]:
        if len(b.samples) > 1:
            half = (len(b.samples) + 1) // 2
            b.state, b.ticket = "split", None
            second = self._new_batch(b.samples[half:])
            first = self._new_batch(b.samples[:half])
            self._enqueue(second, front=True)
            self._enqueue(first, front=True)
            b.samples = []
            return []
        b.state, b.ticket = "given_up", None
        ids = {s.id for s in b.samples}
        self.completed += len(ids)
        self.given_up_ids |= ids
        self.given_up_errors.update(dict.fromkeys(ids, b.last_error))
        samples, b.samples = list(b.samples), []
        return samples

    # ----- state ----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.completed == self.total

    @property
    def remaining(self) -> int:
        return self.total - self.completed

    def error_of(self, sample_id: str) -> str:
        return self.given_up_errors.get(sample_id, "")

    def check(self) -> None:
        """Invariant: every pending sample is in exactly one live (queued / running) batch, or
        not cut into a batch yet; with the finished ones they are all the samples."""
        live = [s.id for b in self.batches.values()
                if b.state in ("queued", "generating", "scoring") for s in b.samples]
        assert len(live) == len(set(live)), "a sample is in two live batches"
        assert not set(live) & self.given_up_ids, "a given-up sample is still live"
        uncut = len(self._todo) - self._next
        assert len(live) + uncut + self.completed == self.total, "a sample went missing"
