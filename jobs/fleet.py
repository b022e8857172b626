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
batches go to the others at once. Only when nothing was ever placed within
--placement_timeout, or a seat keeps failing to load, does the run stop.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable

from jobs.placement import seat_group
from latentmas_ray.errors import ConfigError, LatentMASError

PLACE_GRACE_S = 10.0      # the run starts once the seats placed within this are loaded
RETRY_PING_S = 0.2        # a restarting replica is asked again this long after "unavailable"
MAX_LOAD_FAILURES = 3     # a seat whose fresh replicas die this often while loading is given up
REPLACEMENTS_PER_SEAT = 4 # more than this x seats replacements: something is wrong everywhere


class Slot:
    """One replica actor (group): its number, seat, handle and state."""

    def __init__(self, rid: int, seat: int, handle):
        self.rid, self.seat, self.handle = rid, seat, handle
        self.state = "loading"              # loading | up | restarting | gone
        self.info: dict[str, Any] = {}
        self.since = time.perf_counter()    # when it entered its state
        self.ping_at: float | None = None   # a re-ping is due then


class Seat:
    def __init__(self, index: int, pg):
        self.index, self.pg = index, pg
        self.placed = False
        self.load_failures = 0
        self.given_up = False


class Fleet:
    def __init__(self, factory, replicas: int, where: str, *, inflight: dict,
                 console, emit: Callable[[str, dict], None], placement_timeout: float,
                 ready_timeout: float, is_config_error: Callable[[BaseException], bool],
                 describe_error: Callable[[BaseException], str]):
        self.factory, self.n, self.where = factory, replicas, where
        self.inflight, self.console, self.emit = inflight, console, emit
        self.placement_timeout, self.ready_timeout = placement_timeout, ready_timeout
        self.is_config_error, self.describe_error = is_config_error, describe_error
        self.seats: list[Seat] = []
        self.slots: dict[int, Slot] = {}
        self.rids = itertools.count()
        self.started = False
        self.t0 = time.perf_counter()
        self.replacements = 0
        self.joined: list[tuple[int, bool]] = []      # (rid, new replica) for the scheduler
        self.last_up = self.t0

    # ----- placing ---------------------------------------------------------------------------
    def place_all(self) -> None:
        bundles = self.factory.bundles()
        for i in range(self.n):
            seat = Seat(i, seat_group(bundles, f"latentmas-{os.getpid()}-seat{i}"))
            self.seats.append(seat)
            self.inflight[seat.pg.ready()] = ("pg", i)

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
            seat = self.seats[what]
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
            if kind == "load" and (self.is_config_error(e) or "ConfigError" in str(e)):
                raise ConfigError(f"replica {slot.rid} could not start on {self.where}: "
                                  f"{why}") from None
            if kind == "ping" and isinstance(e, RayActorError) and not isinstance(e, ActorDiedError):
                slot.ping_at = time.perf_counter() + RETRY_PING_S    # still restarting
                return
            if kind == "load":
                self.seats[slot.seat].load_failures += 1
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

    def replace(self, rid: int, why: str) -> None:
        """Kill the replica for good; a fresh one takes its seat (unless the seat failed too
        often to load)."""
        slot = self.slots[rid]
        if slot.state == "gone":
            return
        slot.state = "gone"
        slot.handle.kill()
        seat = self.seats[slot.seat]
        self.replacements += 1
        if self.replacements > REPLACEMENTS_PER_SEAT * self.n:
            raise LatentMASError(f"{self.replacements} replicas had to be replaced (last: {why}); "
                                 "something is wrong on every node; finished samples are saved, "
                                 "rerun the same command to resume")
        if seat.load_failures >= MAX_LOAD_FAILURES:
            seat.given_up = True
            self.console.print(f"[red]replica seat {seat.index} given up[/]: {MAX_LOAD_FAILURES} "
                               f"replicas died while loading ({why})", highlight=False)
            if all(s.given_up for s in self.seats):
                raise ConfigError(f"no replica could load on {self.where}: {why}")
            return
        new = self.spawn(seat)
        self.console.print(f"[yellow]replica {rid} replaced[/] by replica {new.rid} ({why})",
                           highlight=False)
        self.emit("replica_replaced", {"replica": rid, "by": new.rid, "error": why})

    # ----- time ------------------------------------------------------------------------------
    def tick(self) -> None:
        """Timed work, called every loop turn: due re-pings, timeouts, the start."""
        now = time.perf_counter()
        for slot in list(self.slots.values()):
            if slot.ping_at is not None and now >= slot.ping_at:
                self.ping(slot)
            elif slot.state in ("loading", "restarting") and now - slot.since > self.ready_timeout:
                if slot.state == "loading" and not self.seats[slot.seat].placed:
                    continue
                if not self.up() and not self.started:
                    raise ConfigError(f"{self.factory.unit} did not load the model within "
                                      f"{self.ready_timeout:g} s on {self.where}")
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

    def stop(self) -> None:
        for s in self.slots.values():
            s.handle.kill()
