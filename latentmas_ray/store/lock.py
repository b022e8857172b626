"""One driver per run folder: DIR/driver.lock holds the host, pid and a heartbeat of the
driver that writes the folder. Two drivers on one folder would both evaluate every pending
sample, and the first to finish would consolidate a set that is neither its own nor complete.

    with RunLock(folder).held(console):    a second driver: ConfigError, one line naming the
        ...                                holder; a stale lock (its process gone on this host,
                                           or no heartbeat for STALE_S): taken over, said so

The heartbeat is rewritten every BEAT_S by a daemon thread, so a driver busy in a long call
still shows alive; a driver killed with SIGKILL leaves its lock, which the next run finds
stale (same host: its pid is gone; another host: the heartbeat is old).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

from latentmas_ray.errors import ConfigError
from latentmas_ray.store.atomic import atomic_write_text

BEAT_S = 10.0        # the holder rewrites its heartbeat this often
STALE_S = 120.0      # no heartbeat for this long: the holder is gone (another host's driver)
LOCK_NAME = "driver.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:     # someone else's process: alive
        return True
    return True


class RunLock:
    def __init__(self, folder: str | Path, stale_s: float = STALE_S, beat_s: float = BEAT_S):
        self.path = Path(folder) / LOCK_NAME
        self.stale_s, self.beat_s = stale_s, beat_s
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}
        self._stop = threading.Event()

    def holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def stale(self, held: dict) -> str | None:
        """Why the lock `held` no longer stands for a live driver (None: it does)."""
        age = time.time() - float(held.get("heartbeat", 0))
        if held.get("host") == self.me["host"] and not _alive(int(held.get("pid", -1))):
            return f"its process {held.get('pid')} is gone"
        if age > self.stale_s:
            return f"no heartbeat for {age:.0f} s"
        return None

    def _write(self) -> None:
        atomic_write_text(self.path, json.dumps({**self.me, "heartbeat": time.time()}) + "\n")

    def acquire(self) -> str | None:
        """Take the lock; returns a note when a stale one was taken over."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        note = None
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            os.close(fd)
        except FileExistsError:
            held = self.holder() or {}
            if held.get("host") == self.me["host"] and held.get("pid") == self.me["pid"]:
                pass                                       # ours (a second session in-process)
            elif (why := self.stale(held)) is None:
                age = time.time() - float(held.get("heartbeat", 0))
                raise ConfigError(
                    f"run folder {self.path.parent} is in use by the driver pid {held.get('pid')}"
                    f" on {held.get('host')} (heartbeat {age:.0f} s ago); wait for it, stop it, "
                    f"or use another --output") from None
            else:
                note = (f"took over the lock of run folder {self.path.parent} from pid "
                        f"{held.get('pid')} on {held.get('host')} ({why})")
        self._write()
        return note

    def release(self) -> None:
        self._stop.set()
        held = self.holder()
        if held and held.get("host") == self.me["host"] and held.get("pid") == self.me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            with contextlib.suppress(OSError):
                self._write()

    @contextlib.contextmanager
    def held(self, console=None) -> Iterator["RunLock"]:
        note = self.acquire()
        if note and console is not None:
            console.print(f"[yellow]{note}[/]", highlight=False)
        self._stop.clear()
        beat = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
        beat.start()
        try:
            yield self
        finally:
            self.release()
