"""A clean stop on SIGTERM (`ray job stop`, Kubernetes) and SIGINT (Ctrl-C).

`ray job stop` sends SIGTERM and a SIGKILL a few seconds later (RAY_JOB_STOP_WAIT_TIME_S, 3 s
by default), so the driver must be quick: the first signal only sets `requested`; the Ray
driver's loop (which wakes at least once a second) sees it, stops submitting, keeps what is
written, closes every engine at once with a short bound and withdraws its autoscaler request;
jobs/evaluate.py marks summary.json "stopped". Where no loop is listening (in process, or
before the Ray loop started) the signal raises KeyboardInterrupt at once, as Ctrl-C always
did; a second signal always does.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_CLOSE_S = 2.0      # engines closed in parallel get this long on a stop (inside Ray's 3 s)


class StopSignal:
    def __init__(self):
        self.requested: str | None = None     # the signal's name once one arrived
        self.listening = False                # a loop checks `requested` (else: raise at once)
        self.active = False                   # inside `installed()`

    def handle(self, signum, frame) -> None:
        first = self.requested is None
        self.requested = signal.Signals(signum).name
        if not (first and self.listening):
            raise KeyboardInterrupt(self.requested)

    @contextlib.contextmanager
    def installed(self) -> Iterator["StopSignal"]:
        """Handle SIGTERM and SIGINT while inside (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self.handle) for s in SIGNALS}
        self.active = True
        try:
            yield self
        finally:
            self.active = False
            for s, h in old.items():
                signal.signal(s, h)

    def reclaim(self) -> None:
        """Handle the signals again after a library replaced the handlers: `ray.init` installs
        its own SIGTERM handler (it aborts the process: no clean-up, nothing marked)."""
        if self.active and threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                signal.signal(s, self.handle)

    @contextlib.contextmanager
    def listen(self) -> Iterator[None]:
        """A loop that checks `requested` every turn runs inside."""
        self.listening = True
        try:
            yield
        finally:
            self.listening = False


NO_STOP = StopSignal()      # a driver nobody can stop by signal (tests, bench/)
