"""The replicas of a run over its whole life: placed, loaded, up, restarting, replaced.

The driver (jobs/driver.py) owns the one `ray.wait`; this class puts its own refs into the
same in-flight map and handles them when they finish, so nothing here sleeps or blocks:

    ("pg", seat)     a seat's placement group is placed  -> start a replica in it
    ("load", rid)    a replica's first ready()           -> up (joins the run), or replaced
    ("ping", rid)    ready() while Ray restarts it       -> up again, or replaced

Seats: one placement group per replica (jobs/cluster.seat_group), created at once; the run
starts with the seats placed within PLACE_GRACE_S (or later, the first that is placed) and
the others join whenever the cluster (or its autoscaler) makes room. A replica that dies for
good, that does not come back within --ready_timeout or that the scheduler finds broken is
killed and a fresh actor (a fresh restart budget, a new replica number) takes its seat; its
batches go to the others at once. A replica past its batch deadline (jobs/deadlines.py) is
hung: killed at once (no clean close: it would not answer) and replaced the same way.

Load failures (errors.LoadFailure, or an actor that died while loading) are the seat's fault:
the seat gets a new placement group after a backoff (so it may land on another node), up to
MAX_LOAD_FAILURES times; the run goes on with the replicas that are up. It stops with one
line naming every seat's reason only when no seat can load. A ConfigError raised while
loading is the run's fault and stops it at once. Nothing placed within --placement_timeout
stops it too.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable

from jobs.placement import release, seat_group
from latentmas_ray.errors import ConfigError, LatentMASError, typed_cause

PLACE_GRACE_S = 10.0      # the run starts once the seats placed within this are loaded
RETRY_PING_S = 0.2        # a restarting replica is asked again this long after "unavailable"
MAX_LOAD_FAILURES = 3     # a seat whose fresh replicas fail this often while loading is given up
LOAD_BACKOFF_S = 2.0      # a seat's n-th load failure waits 2^(n-1) x this before a new placement
CLOSE_BOUND_S = 5.0       # engines closed in parallel get this long before their actors are killed
REPLACEMENTS_PER_SEAT = 4 # more than this x seats replacements: something is wrong everywhere


class Slot:
    """One replica actor (group): its number, seat, handle and state."""

    def __init__(self, rid: int, seat: int, handle):
        self.rid, self.seat, self.handle = rid, seat, handle
        self.state = "loading"              # loading | up | restarting | gone
        self.hung = False                   # replaced because a batch ran past its deadline
        self.info: dict[str, Any] = {}
        self.since = time.perf_counter()    # when it entered its state
        self.ping_at: float | None = None   # a re-ping is due then


class Seat:
    def __init__(self, index: int, pg):
        self.index, self.pg = index, pg
        self.placed = False
        self.load_failures = 0
        self.given_up = False
        self.reasons: list[str] = []        # why its replicas failed to load
        self.retry_at: float | None = None  # a new placement group is due then (backoff)


class Fleet:
    def __init__(self, factory, replicas: int, where: str, *, inflight: dict,
                 console, emit: Callable[[str, dict], None], placement_timeout: float,
                 ready_timeout: float, describe_error: Callable[[BaseException], str]):
        self.factory, self.n, self.where = factory, replicas, where
        self.inflight, self.console, self.emit = inflight, console, emit
        self.placement_timeout, self.ready_timeout = placement_timeout, ready_timeout
        self.describe_error = describe_error
        self.seats: list[Seat] = []
        self.slots: dict[int, Slot] = {}
        self.rids = itertools.count()
        self.started = False
        self.t0 = time.perf_counter()
        self.replacements = 0
        self.hung = 0                                 # replicas replaced for a missed deadline
        self.joined: list[tuple[int, bool]] = []      # (rid, new replica) for the scheduler
        self.last_up = self.t0

    # ----- placing ---------------------------------------------------------------------------
    def place_all(self) -> None:
        for i in range(self.n):
            seat = Seat(i, None)
            self.seats.append(seat)
            self.place(seat)

    def place(self, seat: Seat) -> None:
        """A (new) placement group for the seat; its ready ref joins the driver's wait."""
        if seat.pg is not None:
            release(seat.pg, owned=False)
        n = seat.load_failures
        seat.pg = seat_group(self.factory.bundles(), f"latentmas-{os.getpid()}-seat{seat.index}"
                                                     + (f"-try{n}" if n else ""))
        seat.placed, seat.retry_at = False, None
        self.inflight[seat.pg.ready()] = ("pg", (seat.index, n))

    def spawn(self, seat: Seat) -> Slot:
        rid = next(self.rids)
        slot = Slot(rid, seat.index, self.factory.start(seat.pg, rid))
        self.slots[rid] = slot
        self.inflight[slot.handle.ready.remote()] = ("load", rid)
        return slot

    def groups(self) -> list:
        return [s.pg for s in self.seats]

    def up(self) -> list[Slot]:
        return [s for s in self.slots.values() if s.state == "up"]

    def handles(self) -> list:
        return [s.handle for s in self.up()]

    # ----- refs the driver's ray.wait returned --------------------------------------------
    def on_ref(self, kind: str, ref, what: int) -> None:
        import ray
        from ray.exceptions import ActorDiedError, RayActorError, RayError

        if kind == "pg":
            seat = self.seats[what[0]]
            if what[1] != seat.load_failures or seat.placed or seat.given_up:
                return                              # the group of an earlier try: removed
            seat.placed = True
            self.spawn(seat)
            return
        slot = self.slots[what]
        if slot.state == "gone":
            return
        try:
            info = ray.get(ref)
        except RayError as e:
            why = self.describe_error(e)
            if kind == "load" and isinstance(typed_cause(e), ConfigError):    # the run's fault
                raise ConfigError(f"replica {slot.rid} could not start on {self.where}: "
                                  f"{why}") from None
            if kind == "ping" and isinstance(e, RayActorError) and not isinstance(e, ActorDiedError):
                slot.ping_at = time.perf_counter() + RETRY_PING_S    # still restarting
                return
            if kind == "load":
                self.load_failed(slot, why)
            else:
                self.replace(slot.rid, why)
            return
        slot.info = self.factory.ready_info(slot.handle, info) if kind == "load" else info
        slot.state, slot.since, self.last_up = "up", time.perf_counter(), time.perf_counter()
        if kind == "load":
            self.seats[slot.seat].load_failures = 0
            if self.started:
                self.factory.adopt(slot.handle)
                self.console.print(f"replica {slot.rid} joined the run", highlight=False)
                for line in self.factory.describe(slot.rid, slot.info):
                    self.console.print(line, highlight=False)
                self.emit("replica_up", {"replica": slot.rid, "info": dict(slot.info)})
            self.joined.append((slot.rid, True))
        else:
            self.console.print(f"replica {slot.rid} is back (pid {slot.info.get('pid')})",
                               highlight=False)
            self.emit("replica_up", {"replica": slot.rid, "info": dict(slot.info)})
            self.joined.append((slot.rid, False))

    # ----- faults ----------------------------------------------------------------------------
    def lose(self, rid: int) -> None:
        """A batch found the replica's process gone: Ray restarts it; ask until it answers."""
        slot = self.slots[rid]
        if slot.state == "up":
            slot.state, slot.since = "restarting", time.perf_counter()
            self.ping(slot)

    def ping(self, slot: Slot) -> None:
        slot.ping_at = None
        self.inflight[slot.handle.ready.remote()] = ("ping", slot.rid)

    def load_failed(self, slot: Slot, why: str) -> None:
        """The seat could not load its replica: a new placement after a backoff, up to
        MAX_LOAD_FAILURES tries; the run stops only when no seat can load (one line, every
        seat's reason)."""
        seat = self.seats[slot.seat]
        slot.state = "gone"
        slot.handle.kill(close=False)
        seat.load_failures += 1
        seat.reasons.append(why)
        self.emit("load_failed", {"replica": slot.rid, "seat": seat.index, "error": why})
        if seat.load_failures >= MAX_LOAD_FAILURES:
            seat.given_up = True
            release(seat.pg, owned=False)
            self.console.print(f"[red]replica seat {seat.index} given up[/]: {MAX_LOAD_FAILURES} "
                               f"replicas failed to load ({why})", highlight=False)
            self.check_loadable()
            return
        wait = LOAD_BACKOFF_S * 2 ** (seat.load_failures - 1)
        seat.retry_at = time.perf_counter() + wait
        self.console.print(f"[yellow]replica {slot.rid} failed to load[/] on seat {seat.index} "
                           f"({why}); a new placement in {wait:g} s", highlight=False)

    def check_loadable(self) -> None:
        """Stop when no seat can load and none is up: one line naming every seat's reason."""
        if any(not s.given_up for s in self.seats) or self.up():
            return
        reasons = "; ".join(f"seat {s.index}: {s.reasons[-1] if s.reasons else 'not placed'}"
                            for s in self.seats)
        raise LatentMASError(f"no replica could load on {self.where} ({reasons}); finished "
                             "samples are saved, rerun the same command to resume")

    def counts(self) -> dict[str, int]:
        """Replicas by state for the progress line: healthy (up), loading (or restarting),
        hung (replaced for a missed deadline) and replaced (in all)."""
        states = [s.state for s in self.slots.values()]
        return {"healthy": states.count("up"),
                "loading": states.count("loading") + states.count("restarting"),
                "hung": self.hung, "replaced": self.replacements}

    def replace(self, rid: int, why: str, *, hung: bool = False) -> None:
        """Kill the replica for good; a fresh one takes its seat. A hung replica is killed
        without the clean close (it would not answer)."""
        slot = self.slots[rid]
        if slot.state == "gone":
            return
        slot.state, slot.hung = "gone", hung
        self.hung += hung
        slot.handle.kill(close=not hung)
        seat = self.seats[slot.seat]
        self.replacements += 1
        if self.replacements > REPLACEMENTS_PER_SEAT * self.n:
            raise LatentMASError(f"{self.replacements} replicas had to be replaced (last: {why}); "
                                 "something is wrong on every node; finished samples are saved, "
                                 "rerun the same command to resume")
        new = self.spawn(seat)
        self.console.print(f"[yellow]replica {rid} replaced[/] by replica {new.rid} ({why})",
                           highlight=False)
        self.emit("replica_replaced", {"replica": rid, "by": new.rid, "error": why})

    # ----- time ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Timed work, called every loop turn: due re-pings, timeouts, the start."""
        now = time.perf_counter()
        for seat in self.seats:
            if seat.retry_at is not None and now >= seat.retry_at:
                self.place(seat)
        for slot in list(self.slots.values()):
            if slot.ping_at is not None and now >= slot.ping_at:
                self.ping(slot)
            elif slot.state in ("loading", "restarting") and now - slot.since > self.ready_timeout:
                if slot.state == "loading" and not self.seats[slot.seat].placed:
                    continue
                if not self.up() and not self.started:
                    raise ConfigError(f"{self.factory.unit} did not load the model within "
                                      f"{self.ready_timeout:g} s on {self.where}")
                if slot.state == "loading":
                    self.load_failed(slot, f"not ready within {self.ready_timeout:g} s")
                else:
                    self.replace(slot.rid, f"not ready within {self.ready_timeout:g} s")
        placed = [s for s in self.seats if s.placed]
        if not placed and now - self.t0 > self.placement_timeout:
            raise ConfigError(self.unplaced_message())
        if not self.started:
            loading = any(s.state == "loading" and self.seats[s.seat].placed
                          for s in self.slots.values())
            if self.up() and not loading and (len(placed) == len(self.seats)
                                              or now - self.t0 > PLACE_GRACE_S):
                self.start()
        elif not self.up() and now - self.last_up > self.placement_timeout + self.ready_timeout:
            raise LatentMASError(
                f"no replica has been up for {now - self.last_up:.0f} s on {self.where} (see "
                "`ray status`); finished samples are saved, rerun the same command to resume")

    def next_due(self) -> float:
        """Seconds until tick() has something to do (a re-ping), capped by the caller."""
        due = [s.ping_at for s in self.slots.values() if s.ping_at is not None]
        due += [s.retry_at for s in self.seats if s.retry_at is not None]
        return max(0.0, min(due) - time.perf_counter()) if due else float("inf")

    def start(self) -> None:
        self.started = True
        up = self.up()
        self.console.print(f"{len(up)} {self.factory.label} of {self.factory.kind()} on "
                           f"{self.where}, model loaded in {time.perf_counter() - self.t0:.1f} s"
                           + (f" ({self.n - len(up)} more being placed)" if len(up) < self.n
                              else ""), highlight=False)
        for s in up:
            for line in self.factory.describe(s.rid, s.info):
                self.console.print(line, highlight=False)
        extra = self.factory.after_ready([s.handle for s in up], self.console)
        self.emit("ready", {"replicas": {s.rid: dict(s.info) for s in up}, **extra})

    def unplaced_message(self) -> str:
        import ray

        need = self.factory.bundles()
        free = ray.available_resources()
        return (f"no replica could be placed on {self.where} within {self.placement_timeout:g} s:"
                f" one needs {need}, free now "
                f"{ {k: v for k, v in free.items() if any(k in b for b in need)} } (see "
                "`ray status`: other jobs hold the resources, or the autoscaler cannot add such "
                "a node); use a longer --placement_timeout or fewer resources per replica")

    def stop(self, bound_s: float | None = None) -> None:
        """Close every replica's engines at once, give them `bound_s` together, then kill
        every actor (a stop must end within seconds, whatever the number of replicas)."""
        from actors.common import close_all

        close_all([s.handle for s in self.slots.values() if s.state != "gone"],
                  CLOSE_BOUND_S if bound_s is None else bound_s)
