"""The driver's scheduling rules, without Ray: batches, bounded in-flight work, requeue of a
failed or lost batch, splitting, exactly-once completion, stale results refused."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from jobs.scheduler import Scheduler


@dataclass(frozen=True)
class S:
    id: str


def samples(n: int) -> list[S]:
    return [S(str(i)) for i in range(n)]


def ids(batch) -> list[str]:
    return [s.id for s in batch]


def test_batches_cover_pending_samples_in_order_and_skip_done():
    sch = Scheduler(samples(7), 3, done_ids={"1", "4"})
    sch.add_replica("a")
    got = []
    while not sch.finished:
        for t, batch in sch.assign():
            got.append(ids(batch))
            assert sch.complete(t)
    assert got == [["0", "2", "3"], ["5", "6"]]
    assert sch.total == 5 and sch.remaining == 0
    sch.check()


def test_nothing_to_do_is_finished():
    sch = Scheduler(samples(3), 2, done_ids={"0", "1", "2"})
    assert sch.finished and sch.assign() == []


def test_bad_arguments():
    with pytest.raises(ValueError):
        Scheduler(samples(3), 0)
    with pytest.raises(ValueError):
        Scheduler(samples(3), 1, max_in_flight=0)
    with pytest.raises(ValueError):
        Scheduler([S("x"), S("x")], 1)


def test_in_flight_is_bounded_per_replica_and_spread():
    sch = Scheduler(samples(20), 1, max_in_flight=2)
    for r in "ab":
        sch.add_replica(r)
    first = sch.assign()
    assert len(first) == 4
    assert sorted(t.replica for t, _ in first) == ["a", "a", "b", "b"]
    assert sch.assign() == []                      # both replicas are full
    t0 = first[0][0]
    assert sch.generated(t0)                       # generation done, scoring elsewhere
    more = sch.assign()                            # the freed slot is refilled at once
    assert [t.replica for t, _ in more] == [t0.replica]
    assert sch.in_flight("a") <= 2 and sch.in_flight("b") <= 2


def test_tail_is_not_queued_behind_a_busy_replica():
    # 3 batches, 2 replicas: the third must wait for whichever replica frees first,
    # not sit in the second slot of one replica while the other may idle.
    sch = Scheduler(samples(3), 1, max_in_flight=2)
    for r in "ab":
        sch.add_replica(r)
    first = sch.assign()
    assert len(first) == 2 and {t.replica for t, _ in first} == {"a", "b"}
    by_replica = {t.replica: t for t, _ in first}
    assert sch.complete(by_replica["b"])
    (t, batch), = sch.assign()
    assert t.replica == "b" and ids(batch) == ["2"]


def test_replica_down_requeues_its_work_and_refuses_its_late_results():
    sch = Scheduler(samples(6), 1, max_in_flight=2)
    for r in "ab":
        sch.add_replica(r)
    first = dict()
    for t, batch in sch.assign():
        first.setdefault(t.replica, []).append((t, batch))
    assert sum(len(v) for v in first.values()) == 4
    lost = first["a"]
    assert len(lost) == 2
    assert sch.replica_down("a") == []
    assert sch.live_replicas() == ["b"]
    sch.check()
    # The late results of the dead replica are stale: not accepted, never written.
    for t, _ in lost:
        assert not sch.generated(t)
        assert not sch.complete(t)
        assert sch.failed(t, "boom", lost=True) == []
    # Its batches go to the front of the queue and to the live replica.
    writes: dict[str, int] = {}
    pending = list(first["b"])
    while not sch.finished:
        for t, batch in pending:
            if sch.complete(t):
                for s in batch:
                    writes[s.id] = writes.get(s.id, 0) + 1
        pending = sch.assign()
        assert pending or sch.finished, "work left but nothing assignable"
        assert all(t.replica == "b" for t, _ in pending)
    assert sch.batches[lost[0][0].batch].state == "done"
    assert writes == {str(i): 1 for i in range(6)}


def test_replica_back_up_gets_work_again():
    sch = Scheduler(samples(4), 1, max_in_flight=1)
    for r in "ab":
        sch.add_replica(r)
    sch.assign()
    sch.replica_down("a")
    assert all(t.replica == "b" for t, _ in sch.assign())
    sch.replica_up("a")
    assert [t.replica for t, _ in sch.assign()] == ["a"]


def test_failed_batch_is_retried_then_split_then_given_up():
    sch = Scheduler(samples(4), 4, max_in_flight=1, max_attempts=2)
    sch.add_replica("a")
    bad = "2"
    given_up, written = [], []
    rounds = 0
    while not sch.finished:
        rounds += 1
        assert rounds < 50
        for t, batch in sch.assign():
            if bad in ids(batch):
                given_up += sch.failed(t, "RuntimeError: bad sample")
            else:
                assert sch.complete(t)
                written += ids(batch)
        sch.check()
    assert ids(given_up) == [bad]
    assert sorted(written) == ["0", "1", "3"]
    assert sch.given_up_ids == {bad}
    assert "bad sample" in sch.error_of(bad)


def test_a_lost_batch_counts_losses_separately_from_errors():
    sch = Scheduler(samples(1), 1, max_in_flight=1, max_attempts=1, max_losses=3)
    sch.add_replica("a")
    for _ in range(2):
        (t, _b), = sch.assign()
        assert sch.failed(t, "actor died", lost=True) == []   # requeued, not given up
    (t, _b), = sch.assign()
    assert ids(sch.failed(t, "actor died", lost=True)) == ["0"]
    assert sch.finished


def test_scoring_failure_requeues_generation():
    sch = Scheduler(samples(2), 2, max_in_flight=1, max_attempts=3)
    sch.add_replica("a")
    (t, _), = sch.assign()
    assert sch.generated(t)
    assert sch.failed(t, "scoring task raised") == []
    (t2, batch), = sch.assign()
    assert t2 != t and ids(batch) == ["0", "1"]
    assert not sch.complete(t)          # the old ticket stays stale
    assert sch.complete(t2) and sch.finished


@pytest.mark.parametrize("seed", range(40))
def test_random_faults_every_sample_exactly_once(seed):
    """A random mix of completions, errors, lost replicas and late stale results."""
    rng = random.Random(seed)
    n = rng.randint(1, 40)
    sch = Scheduler(samples(n), rng.randint(1, 6), max_in_flight=rng.randint(1, 3),
                    max_attempts=2, max_losses=3)
    reps = ["r0", "r1", "r2"][:rng.randint(1, 3)]
    for r in reps:
        sch.add_replica(r)
    flying: list = []
    scoring: list = []
    old: list = []
    writes: dict[str, int] = {}
    steps = 0
    while not sch.finished:
        steps += 1
        assert steps < 5000, "no progress"
        if not sch.live_replicas():
            sch.replica_up(rng.choice(reps))
        flying += sch.assign()
        sch.check()
        for r in reps:
            assert sch.in_flight(r) <= sch.max_in_flight
        roll = rng.random()
        if roll < 0.05 and sch.live_replicas():
            victim = rng.choice(sch.live_replicas())
            for s in sch.replica_down(victim):
                writes[s.id] = writes.get(s.id, 0) + 1
            old += [x for x in flying if x[0].replica == victim]
            flying = [x for x in flying if x[0].replica != victim]
        elif roll < 0.10 and sch.live_replicas() != reps:
            sch.replica_up(rng.choice(reps))
        elif roll < 0.15 and old:
            t, batch = old.pop(rng.randrange(len(old)))          # a late result: refused
            assert not sch.complete(t)
        elif flying or scoring:
            pool = flying if flying and (not scoring or rng.random() < 0.6) else scoring
            t, batch = pool.pop(rng.randrange(len(pool)))
            r = rng.random()
            if r < 0.12:
                for s in sch.failed(t, "boom", lost=rng.random() < 0.5):
                    writes[s.id] = writes.get(s.id, 0) + 1
            elif pool is flying and r < 0.5:
                assert sch.generated(t) or True
                scoring.append((t, batch))
            elif sch.complete(t):
                for s in batch:
                    writes[s.id] = writes.get(s.id, 0) + 1
        sch.check()
    assert writes == {str(i): 1 for i in range(n)}


class CountingSequence:
    """A pending-sample sequence that counts the samples read from it (a task on disk)."""

    def __init__(self, n: int):
        self.items, self.read = samples(n), 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        got = self.items[i]
        self.read += len(got) if isinstance(i, slice) else 1
        return got


def test_batches_are_cut_when_handed_out_and_completions_are_counted():
    """A lazily read task is read a batch at a time, as batches are handed out, and nothing
    per sample is kept once they are done (issue 24: a 1M-sample driver)."""
    todo = CountingSequence(1000)
    sch = Scheduler(todo, 10, max_in_flight=1)
    assert todo.read == 0 and sch.queued() == 100
    sch.add_replica("a")
    (t, batch), = sch.assign()
    assert todo.read == 10 and ids(batch) == [str(i) for i in range(10)]
    assert sch.complete(t) and sch.completed == 10 and sch.queued() == 99
    while not sch.finished:
        for t, _ in sch.assign():
            sch.complete(t)
    assert todo.read == 1000 and sch.remaining == 0
    assert all(b.samples == [] for b in sch.batches.values())
    sch.check()


# ----- partial results: a replica streams the rows of samples as they finish ----------------

def test_partial_completes_finished_samples_and_the_rest_runs_on():
    sch = Scheduler(samples(5), 5, max_in_flight=1)
    sch.add_replica("a")
    ((t, batch),) = sch.assign()
    assert sch.partial(t, {"1", "3"})
    assert sch.remaining == 3 and sch.completed == 2
    assert ids(sch.batches[t.batch].samples) == ["0", "2", "4"]     # 1 and 3 left the batch
    assert sch.in_flight("a") == 1                      # the batch still runs on its ticket
    sch.check()
    assert not sch.partial(t, {"1"})                    # a repeat: refused, nothing written twice
    assert not sch.partial(t, {"0", "3"})               # ... even beside a new id: all refused
    assert not sch.partial(t, {"9"}) and not sch.partial(t, set())
    assert sch.completed == 2 and ids(sch.batches[t.batch].samples) == ["0", "2", "4"]
    assert sch.partial(t, {"0"})
    assert sch.partial(t, {"2", "4"})                   # the last ones finish the batch
    assert sch.finished and sch.in_flight("a") == 0 and sch.replicas["a"].batches_done == 1
    assert not sch.complete(t)                          # and it is complete exactly once
    sch.check()


def test_partial_then_the_replica_dies_requeues_only_the_unfinished():
    sch = Scheduler(samples(4), 4, max_in_flight=1)
    for r in "ab":
        sch.add_replica(r)
    ((t, batch),) = sch.assign()
    assert sch.partial(t, {"0", "2"})
    assert sch.replica_down(t.replica) == []
    sch.check()
    ((t2, again),) = sch.assign()
    assert ids(again) == ["1", "3"] and t2.replica != t.replica
    assert not sch.partial(t, {"1"})                    # the dead replica's stream: stale
    assert not sch.complete(t)
    assert sch.partial(t2, {"3"}) and sch.complete(t2)
    assert sch.finished and sch.completed == 4
    sch.check()


def test_partial_then_a_failure_requeues_and_splits_only_the_unfinished():
    sch = Scheduler(samples(4), 4, max_in_flight=1, max_attempts=1)
    sch.add_replica("a")
    ((t, _),) = sch.assign()
    assert sch.partial(t, {"1"})
    assert sch.failed(t, "boom") == []                  # split: halves of what is left
    (t1, first), = sch.assign()
    assert ids(first) == ["0", "2"]
    assert sch.complete(t1)
    (t2, second), = sch.assign()
    assert ids(second) == ["3"]
    assert not sch.partial(t, {"3"})                    # the failed attempt's ticket is stale
    assert sch.complete(t2) and sch.finished
    sch.check()


def test_partial_is_refused_while_scoring_and_for_an_unknown_ticket():
    """A batch past generation (code: scored by a CPU task) takes no partial rows."""
    sch = Scheduler(samples(2), 2, max_in_flight=1)
    sch.add_replica("a")
    ((t, _),) = sch.assign()
    assert sch.generated(t)
    assert not sch.partial(t, {"0"})
    assert sch.complete(t) and sch.finished


def test_partial_results_in_random_orders_complete_each_sample_exactly_once():
    rng = random.Random(7)
    for trial in range(50):
        n = rng.randint(1, 12)
        sch = Scheduler(samples(n), rng.randint(1, 5), max_in_flight=2)
        for r in "abc":
            sch.add_replica(r)
        written: list[str] = []
        for _ in range(500):
            if sch.finished:
                break
            for t, batch in sch.assign():
                left = ids(batch)
                while left:
                    roll = rng.random()
                    if roll < 0.1:                  # the replica dies mid-batch
                        sch.replica_down(t.replica)
                        sch.replica_up(t.replica)
                        break
                    part = set(rng.sample(left, rng.randint(1, len(left))))
                    if sch.partial(t, part):
                        written += sorted(part)
                    left = [i for i in left if i not in part]
                sch.check()
        assert sch.finished, trial
        assert sorted(written, key=int) == [str(i) for i in range(n)], trial
