"""The driver's side of replicas that stream their rows as samples finish (issue 25: a stop
keeps every finished sample).

A replica with `run_stream` (actors/hf_actor.py HFReplica, a Ray streaming generator) yields
the store rows of each sample as it finishes inside its batch, instead of the batch's rows
when its slowest sample ends. The driver (jobs/driver.py `Driver`, which mixes this in) holds
the stream in flight as ("stream", (ticket, samples not yet written)); `ray.wait` takes
ObjectRefGenerators beside ObjectRefs (ready: its next item is there, or it ended). Each item
is written at once through `Scheduler.partial` (current ticket only: a stale stream's rows are
dropped, so nothing is written twice), counted by the progress monitor, and the rest of the
batch runs on; if the replica then dies or hangs only the unfinished samples are requeued.
The item holding a batch's last samples completes it like a whole batch (deadline measured).

Which replicas stream (ActorGroup.run_stream): the HF replica (every method: the decode tells
a row's end), the vLLM replica and the hybrid's vLLM judger (each sample's request chain or
judger as it ends; with K > 1 vLLM decodes the batch form, whose rows come at its end). Those
that keep returning whole batches: code tasks (generation only; scored by a CPU task after),
the disaggregated role chain (its judger actor answers for the batch) and the sweep's replica.
"""

from __future__ import annotations

from typing import Any


class RowStreams:
    """Driver methods for streamed rows; needs the Driver's inflight, sched, deadlines,
    sent_at, fleet, write, emit, lose, on_error, give_up, check_health and take."""

    def on_stream(self, stream, ticket, left: list) -> None:
        """The next item of a replica's row stream: the rows of samples that finished.
        `left`: the batch's samples not written yet. A stream that ends with samples
        missing fails the batch, which requeues them."""
        try:
            ref = next(stream)
        except StopIteration:
            if left:
                self.sent_at.pop(ticket, None)
                self.deadlines.finish(ticket.serial, measured=False)
                self.give_up(self.sched.failed(
                    ticket, f"the replica's stream ended without {len(left)} sample(s)"))
            return
        ok, rows = self.fetch(ref, "run", ticket)
        if not ok:
            self.sent_at.pop(ticket, None)
            return
        ids = {r["id"] for r in rows}
        rest = [s for s in left if s.id not in ids]
        if not rest:                        # the batch's last samples: as a whole batch
            self.sent_at.pop(ticket, None)
            self.deadlines.finish(ticket.serial)
        if self.sched.partial(ticket, ids):
            self.write(rows)
            self.emit("batch", {"replica": ticket.replica, "ids": sorted(ids),
                                "scored_by": "replica", "partial": bool(rest)})
            if rest:
                self.inflight[stream] = ("stream", (ticket, rest))
            else:
                self.check_health("")

    def fetch(self, ref, kind: str, ticket) -> tuple[bool, Any]:
        """(True, the value of `ref`), or (False, None) with the failure handled as a whole
        batch's (Driver.on_result): a dead replica, an error the batch raised, a lost object."""
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        short_error = self.fleet.describe_error       # jobs.driver.short_error
        try:
            return True, ray.get(ref)
        except RayActorError as e:          # the replica died or restarts
            self.lose(ticket.replica, short_error(e))
        except RayTaskError as e:           # the method raised
            self.on_error(e, kind, ticket)
        except RayError as e:               # lost objects, dead workers, ...
            self.deadlines.finish(ticket.serial, measured=False)
            self.give_up(self.sched.failed(ticket, short_error(e), lost=True))
        return False, None

    def keep_finished(self, rounds: int = 100) -> None:
        """On a stop: write what the replicas finished and the loop has not taken yet (whole
        batches' and streamed rows already here), waiting for nothing more."""
        import ray

        for _ in range(rounds):     # a stream gives one item per take: take until none is left
            results = [r for r, (kind, _) in self.inflight.items()
                       if kind in ("run", "stream", "score")]
            ready = ray.wait(results, num_returns=len(results), timeout=0)[0] if results else []
            if not ready:
                return
            self.take(ready)
