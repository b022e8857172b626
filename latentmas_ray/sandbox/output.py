"""One run's output: draining stdout/stderr/report with caps (the pump), folding the report
lines in, and classifying how the run ended (passed, failed, timeout, killed, error)."""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import time
from dataclasses import dataclass, field

from .harness import Digest, decode
from .limits import ExecResult, SandboxLimits, flood_limit

EXIT_GRACE_S = 0.3   # how long pipes may stay open after the runner exited (fallback mode)
REPORT_LINE_MAX = 2 * 1024 * 1024      # a VALUE line carries up to harness.VALUE_CAP of JSON
VALUES_TOTAL_MAX = 64 * 1024 * 1024    # what a run's VALUE lines may hold in all, in memory


class Tail:
    """The last `cap` bytes of a stream, and how many came in total."""

    def __init__(self, cap: int):
        self.cap, self.total, self.buf = cap, 0, bytearray()

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.cap:
            del self.buf[:-self.cap]

    def text(self) -> str:
        data = bytes(self.buf[-self.cap:])
        s = data.decode("utf-8", errors="replace")
        dropped = self.total - len(data)
        return f"[... {dropped} earlier bytes dropped ...]\n{s}" if dropped > 0 else s


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"

@dataclass
class RunIO:
    """What came back. Report lines are folded in as they arrive (never stored), so a program
    spamming the report pipe cannot push the runner's own lines out."""
    stdout: Tail
    stderr: Tail
    timed_out: bool = False
    flooded: bool = False
    ready: bool = False
    pass_nonce: str | None = None
    fail: dict | None = None       # the first FAIL line
    status: dict | None = None     # the last STATUS line (the supervisor writes it last)
    setup_error: str | None = None
    values: dict = field(default_factory=dict)   # test index -> ("v", json) | ("h", sha256 hex)
    values_bytes: int = 0
    last_test: int | None = None




def pump(proc: subprocess.Popen, rfd: int, payload: bytes, limits: SandboxLimits,
          t0: float) -> RunIO:
    """Feed stdin, drain stdout/stderr/report with caps, until everything closed or a limit hit."""
    io = RunIO(Tail(limits.output_bytes), Tail(limits.output_bytes))
    deadline = t0 + limits.wall_s
    flood = flood_limit(limits)
    sel = selectors.DefaultSelector()
    assert proc.stdin and proc.stdout and proc.stderr
    fds = {proc.stdout.fileno(): "out", proc.stderr.fileno(): "err", rfd: "rep"}
    for fd, name in fds.items():
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ, name)
    win = proc.stdin.fileno()
    os.set_blocking(win, False)
    sel.register(win, selectors.EVENT_WRITE, "in")
    pending = memoryview(payload)
    report_buf = bytearray()
    exited_at = None
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                io.timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            open_reads = [k for k in sel.get_map().values() if k.data != "in"]
            if not open_reads:   # all pipes closed: only the exit (or the deadline) is left
                try:
                    proc.wait(timeout=max(0.0, deadline - now))
                except subprocess.TimeoutExpired:
                    io.timed_out = True
                break
            if exited_at is not None and now - exited_at > EXIT_GRACE_S:
                break   # something that escaped holds our pipes: cleanup will kill it
            wait = min(deadline - now, 0.05 if exited_at is not None else 0.25)
            for key, _ in sel.select(wait):
                if key.data == "in":
                    try:
                        n = os.write(win, pending[:65536])
                        pending = pending[n:]
                    except BlockingIOError:
                        continue
                    except OSError:   # the runner died before reading it all
                        pending = pending[:0]
                    if not pending:
                        sel.unregister(win)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    continue
                if key.data == "out":
                    io.stdout.add(data)
                elif key.data == "err":
                    io.stderr.add(data)
                else:
                    report_buf += data
                    if b"\n" in data:
                        *lines, rest = bytes(report_buf).split(b"\n")
                        report_buf = bytearray(rest)
                        for line in lines:
                            _take_report_line(io, line.decode("utf-8", "replace"))
                    if len(report_buf) > REPORT_LINE_MAX:   # a line that never ends: noise
                        report_buf = bytearray()
            if io.stdout.total + io.stderr.total > flood:
                io.flooded = True
                break
    finally:
        sel.close()
    if report_buf:
        _take_report_line(io, report_buf.decode("utf-8", "replace"))
    return io


def _take_report_line(io: RunIO, line: str) -> None:
    kind, _, rest = line.partition(" ")
    if kind == "PASS" and io.pass_nonce is None:
        io.pass_nonce = rest.strip()
    elif kind == "READY":
        io.ready = True
    elif kind == "FAIL" and io.fail is None:
        try:
            io.fail = json.loads(rest)
        except ValueError:
            io.fail = {"type": "Exception", "msg": rest[:200]}
    elif kind == "STATUS":
        try:
            io.status = json.loads(rest)
        except ValueError:
            pass
    elif kind == "SETUP_ERROR":
        io.setup_error = rest[:500]
    elif kind == "TEST":
        io.last_test = int(rest) if _is_index(rest) else io.last_test
    elif kind in ("VALUE", "DIGEST"):
        index, _, payload = rest.partition(" ")
        cost = len(payload) + 64   # a floor per entry: empty lines must not grow it for free
        if _is_index(index) and int(index) not in io.values and io.values_bytes + cost <= VALUES_TOTAL_MAX:
            io.values[int(index)] = ("v" if kind == "VALUE" else "h", payload)
            io.values_bytes += cost


def _is_index(s: str) -> bool:
    return 0 < len(s) <= 9 and s.isascii() and s.isdigit()


class _NoValue:
    """What ExecResult.values holds for a test whose result never came (None is a result)."""

    def __repr__(self):
        return "<no result>"


NO_VALUE = _NoValue()


def decode_values(io: RunIO, n: int) -> tuple:
    """The first n test results: decoded values, harness.Digest for a digest, NO_VALUE where
    nothing (or nothing decodable) came."""
    out = []
    for i in range(n):
        kind, payload = io.values.get(i, (None, ""))
        try:
            if kind == "h" and not (len(payload) == 64 and all(c in "0123456789abcdef" for c in payload)):
                kind = None
            out.append(decode(payload) if kind == "v" else Digest(payload) if kind == "h" else NO_VALUE)
        except (ValueError, KeyError, TypeError, IndexError, RecursionError, MemoryError):
            out.append(NO_VALUE)   # not the harness's JSON: no value for this test
    return tuple(out)


def classify(io: RunIO, rc: int | None, limits: SandboxLimits, oom: bool, nonce: str,
             seconds: float, n_values: int = 0) -> ExecResult:
    out, err = io.stdout.text(), io.stderr.text()

    def result(status: str, code: int | None, detail: str) -> ExecResult:
        return ExecResult(status == "passed", status, code, out, err, seconds, detail,
                          decode_values(io, n_values), io.last_test)

    ready = io.ready
    status_info = io.status if isinstance(io.status, dict) else {}
    fail_info = io.fail if isinstance(io.fail, dict) else None
    sig = status_info.get("signal")
    code = status_info.get("exit")
    code = -sig if isinstance(sig, int) else code if isinstance(code, int) else None

    if io.pass_nonce is not None and ready and secrets.compare_digest(io.pass_nonce.encode(), nonce.encode()):
        return result("passed", 0 if code is None else code, "all tests passed")
    if io.timed_out:
        return result("timeout", code, f"wall-clock limit {limits.wall_s:g}s exceeded")
    if io.flooded:
        return result("killed", code, f"output limit exceeded (more than "
                      f"{flood_limit(limits)} bytes written)")
    if not ready:
        why = io.setup_error if io.setup_error else (
            (err.strip().splitlines() or [f"runner exited with {rc}"])[-1])
        return result("error", code, f"sandbox setup failed: {why}"[:500])
    if fail_info is not None:
        return result("failed", code, _fail_detail(fail_info))
    if isinstance(sig, int):
        cpu = status_info.get("cpu") or 0
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu >= limits.cpu_s):
            return result("timeout", code, f"CPU-time limit {limits.cpu_s:g}s exceeded")
        if oom:
            return result("killed", code, f"memory limit {limits.memory_mb} MB exceeded (killed)")
        if sig == signal.SIGXFSZ:
            return result("killed", code, f"file-size limit {limits.file_size_mb} MB exceeded")
        return result("killed", code, f"killed by {_signame(sig)} before its tests finished")
    if code is not None:
        return result("failed", code, f"the program exited (code {code}) before its tests finished")
    return result("error", code, f"the sandbox runner ended without a status (exit {rc})")


def _fail_detail(info: dict) -> str:
    typ = str(info.get("type") or "Exception")
    msg = " ".join(str(info.get("msg") or "").split())
    line, code = info.get("line"), " ".join(str(info.get("code") or "").split())
    if typ == "SystemExit":
        return msg + (f" (line {line})" if line else "")
    where = f" at line {line}" if line else ""
    text = f"{typ}{where}"
    if msg:
        text += f": {msg}"
    elif code:
        text += f": {code}"
    return text[:400]


