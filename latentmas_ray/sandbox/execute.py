"""Running programs in the sandbox: the plan probed once per process, one run (spawn the
runner under the plan's prefix, feed it, pump its output, clean up everything it left), and
many runs in parallel."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Sequence

from . import harness, runner
from .capabilities import (DEFAULT_LEVEL, LEVELS, PROBE_PROGRAM, Plan, SandboxUnavailable,
                           degraded, describe, full_plan, missing_for)
from .cgroups import RunCgroups
from .limits import ExecResult, SandboxLimits
from .output import classify, pump

TOKEN_ENV = "LATENTMAS_SANDBOX_TOKEN"  # per-run marker; the last-resort leftover scan looks for it
_RUNNER_PATH = os.path.abspath(runner.__file__)
_HARNESS_SOURCE: str | None = None

_PLAN: Plan | None = None
_PLAN_AT = 0.0          # when it was chosen (time.monotonic)
_PLAN_FULL = False      # it is everything the machine offers (no probe failed)
_PLAN_NOTES: list[str] = []
_PLAN_LOCK = threading.Lock()
PROBE_TRIES = 2         # a probe that fails (a load spike past its wall limit) is run again once
RECHECK_S = 300.0       # a plan chosen after failed probes is probed again after this long


@dataclass(frozen=True)
class TestCalls:
    """A test run: after the program, the harness calls `entry(*args)` for each of `count`
    argument lists and sends each result out as plain data (ExecResult.values)."""

    __test__ = False   # not a pytest test class, despite the name

    spec: str    # harness.make_spec(...)
    count: int

    @classmethod
    def of(cls, entry: str, inputs: list, transform: str = "value") -> "TestCalls":
        """inputs: a list of argument lists (lists), made of builtin data types."""
        assert type(inputs) is list and all(type(a) is list for a in inputs), "a list of argument lists"
        return cls.encoded(entry, harness.encode(inputs, cap=None), len(inputs), transform)

    @classmethod
    def encoded(cls, entry: str, inputs_json: str, count: int, transform: str = "value") -> "TestCalls":
        """The same from inputs already encoded with harness.encode."""
        return cls(harness.make_spec(entry, inputs_json, transform), count)


def _harness_source() -> str:
    global _HARNESS_SOURCE
    if _HARNESS_SOURCE is None:
        with open(harness.__file__, encoding="utf-8") as f:
            _HARNESS_SOURCE = f.read()
    return _HARNESS_SOURCE


def get_plan(level: str = DEFAULT_LEVEL) -> Plan:
    """The strongest plan whose probe passes here and that `level` accepts. A plan that passed
    its probe is kept for the process; a failed probe is tried again (PROBE_TRIES) before a
    layer is given up, never below what `level` needs (SandboxUnavailable then, naming what is
    missing and the flag), and a plan chosen after failures is probed again later
    (RECHECK_S), so a bad moment (load, a full disk) does not weaken the rest of a run."""
    global _PLAN, _PLAN_AT, _PLAN_FULL
    with _PLAN_LOCK:
        fresh = _PLAN_FULL or time.monotonic() - _PLAN_AT < RECHECK_S
        if _PLAN is not None and fresh and not missing_for(level, _PLAN):
            return _PLAN
        notes: list[str] = []
        plans = degraded(full_plan(notes))
        chosen, lacking = _probe(plans, level, notes)
        _PLAN_NOTES[:] = notes
        if chosen is None:
            weaker = LEVELS[min(LEVELS.index(level) + 1, len(LEVELS) - 1)]
            raise SandboxUnavailable(
                f"the code sandbox cannot give --sandbox_level {level} here: missing "
                f"{'; '.join(lacking)} ({'; '.join(notes) or 'no notes'}); pass --sandbox_level "
                f"{weaker} to score with weaker isolation (`python -m latentmas_ray.sandbox` "
                "shows what this machine enforces)")
        _PLAN, _PLAN_AT, _PLAN_FULL = chosen, time.monotonic(), chosen == plans[0][1]
        return _PLAN


def _probe(plans: list[tuple[str, Plan]], level: str, notes: list[str]) -> tuple[Plan | None, list[str]]:
    """The first plan (strongest first) that `level` accepts and whose probe passes within
    PROBE_TRIES; else None and what the last acceptable plan lacked."""
    import importlib.util
    program = PROBE_PROGRAM.format(numpy="import numpy" if importlib.util.find_spec("numpy") else "")
    limits = SandboxLimits(wall_s=60, cpu_s=30)
    lacking = missing_for(level, plans[0][1])
    for dropped, plan in plans:
        if missing_for(level, plan):
            if dropped:
                lacking = [f"{dropped} (its probe failed)"]
            break
        if dropped:
            notes.append(f"dropped {dropped}")
        for _ in range(PROBE_TRIES):
            res = execute(plan, program, limits)
            if res.passed:
                return plan, []
            last = res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ""
            notes.append(f"probe failed ({res.status}: {res.detail}{' / ' + last if last else ''})")
    return None, lacking


def sandbox_capabilities(level: str = DEFAULT_LEVEL) -> dict[str, bool | str]:
    """What the sandbox enforces on this machine at `level` (probed once, then cached), for
    the CLI and the run's summary. Raises SandboxUnavailable when `level` cannot be had."""
    return {"level": level, **describe(get_plan(level), _PLAN_NOTES)}


# Running one program

_SITE_DIRS: list[str] | None = None


def _site_dirs() -> list[str]:
    """This interpreter's site-packages folders (the sandbox's Python starts without `site`).
    Their .pth files are not processed: plain installed packages (numpy...) import normally,
    editable installs (this project's own) do not."""
    global _SITE_DIRS
    if _SITE_DIRS is None:
        import site
        dirs = list(site.getsitepackages()) if hasattr(site, "getsitepackages") else []
        dirs += [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
        seen: list[str] = []
        for d in dirs:
            if os.path.isdir(d) and d not in seen:
                seen.append(d)
        _SITE_DIRS = seen
    return _SITE_DIRS


def _clean_env(scratch: str, token: str) -> dict[str, str]:
    """The program's whole environment, built from nothing (no secret of ours leaks in)."""
    one = "1"   # one BLAS/OpenMP thread: numpy must import under RLIMIT_AS and the pids limit
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": scratch, "TMPDIR": scratch, "TMP": scratch, "TEMP": scratch,
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8",
        "PYTHONSAFEPATH": "1", "PYTHONNOUSERSITE": "1",
        "OPENBLAS_NUM_THREADS": one, "OMP_NUM_THREADS": one, "MKL_NUM_THREADS": one,
        "NUMEXPR_NUM_THREADS": one, "VECLIB_MAXIMUM_THREADS": one, "MPLBACKEND": "Agg",
        TOKEN_ENV: token,
    }


def _kill_by_token(token: str) -> None:
    """Last resort without a PID namespace: kill every process started with this run's token in
    its environment (escaped the session, reparented away from the runner)."""
    needle = f"{TOKEN_ENV}={token}".encode()
    me = os.getpid()
    for _ in range(50):
        hits = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if needle in f.read():
                        hits.append(int(name))
            except OSError:
                continue
        if not hits:
            return
        for pid in hits:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def run_program(program: str, limits: SandboxLimits = SandboxLimits(),
                tests: TestCalls | None = None, level: str = DEFAULT_LEVEL) -> ExecResult:
    """Run `program` in the sandbox; with `tests`, the harness then calls the program's entry
    point on each test input and the results come back in ExecResult.values. Passed means
    the program (and the calls) ran to the end without raising, nothing more: whether the
    values are right is the caller's comparison. Never raises for anything the program does;
    a failure of the sandbox itself is status "error". Raises SandboxUnavailable when this
    machine cannot give `level` (LEVELS)."""
    if not isinstance(program, str):
        raise TypeError(f"program must be str, got {type(program).__name__}")
    return execute(get_plan(level), program, limits, tests)


def run_programs(programs: Sequence[str],
                 limits: SandboxLimits | Sequence[SandboxLimits] = SandboxLimits(),
                 workers: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 tests: Sequence[TestCalls | None] | None = None,
                 level: str = DEFAULT_LEVEL) -> list[ExecResult]:
    """Run many programs in parallel (threads driving sandbox processes), results in order.
    level: the isolation required (capabilities.LEVELS); SandboxUnavailable before any run
    when this machine cannot give it.

    limits: one SandboxLimits for all, or one per program.
    tests: None, or one TestCalls (or None) per program.
    workers: concurrent sandboxes, default the CPUs this process may use.
    progress: called as progress(k) with the number of programs that just finished (k = 1 each
    time), so it plugs into a progress bar's `advance`.
    """
    programs = list(programs)
    per = [limits] * len(programs) if isinstance(limits, SandboxLimits) else list(limits)
    if len(per) != len(programs):
        raise ValueError(f"{len(per)} limits for {len(programs)} programs")
    calls = [None] * len(programs) if tests is None else list(tests)
    if len(calls) != len(programs):
        raise ValueError(f"{len(calls)} test specs for {len(programs)} programs")
    if not programs:
        return []
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    get_plan(level)   # probe once (or refuse), before the threads race for it
    results: list[ExecResult | None] = [None] * len(programs)
    ex = ThreadPoolExecutor(max_workers=min(workers, len(programs)), thread_name_prefix="sandbox")
    try:
        futures = {ex.submit(run_program, p, lim, c, level): i
                   for i, (p, lim, c) in enumerate(zip(programs, per, calls))}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(1)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def execute(plan: Plan, program: str, limits: SandboxLimits,
            tests: TestCalls | None = None) -> ExecResult:
    """One run under `plan` (run_program uses the probed plan; tests try others)."""
    t0 = time.monotonic()
    try:
        return _execute_inner(plan, program, limits, tests, t0)
    except Exception as e:  # noqa: BLE001 - the scorer never crashes; this is a harness failure
        return ExecResult(False, "error", None, "", "", time.monotonic() - t0,
                          f"sandbox error: {type(e).__name__}: {e}")


def _execute_inner(plan: Plan, program: str, limits: SandboxLimits, tests: TestCalls | None,
                   t0: float) -> ExecResult:
    scratch = tempfile.mkdtemp(prefix="lmr-sbx-")
    cgroups: RunCgroups | None = None
    proc: subprocess.Popen | None = None
    rfd = wfd = -1
    token = secrets.token_hex(16)
    try:
        if plan.drop_uid is not None:
            os.chown(scratch, plan.drop_uid, plan.drop_uid)
        if plan.cgroups:
            cgroups = RunCgroups(plan.cgroups, limits)
        nonce = secrets.token_hex(32)
        rfd, wfd = os.pipe()
        header = {
            "report_fd": wfd, "nonce": nonce, "scratch": scratch, "pidns": plan.pidns,
            "site_dirs": _site_dirs(),
            "tmpfs_mb": max(64, 4 * limits.file_size_mb) if plan.tmpfs else 0,
            "landlock_abi": plan.landlock, "drop_caps": plan.drop_caps, "drop_uid": plan.drop_uid,
            "cgroup_procs": cgroups.procs_files() if cgroups else [],
            # with a pids cgroup the count is exact; else RLIMIT_NPROC (per uid) is what we have
            "nproc": None if (cgroups and cgroups.limits("pids")) or (os.geteuid() == 0 and plan.drop_uid is None)
            else limits.max_procs,
            "limits": {"cpu_s": limits.cpu_s, "memory_mb": int(limits.memory_mb),
                       "file_size_mb": int(limits.file_size_mb)},
        }
        if tests is not None:
            header["harness"] = {"source": _harness_source(), "spec": tests.spec}
        payload = json.dumps(header).encode() + b"\n" + program.encode("utf-8", "surrogatepass")
        cmd = [*plan.prefix, sys.executable, "-S", "-s", "-B", _RUNNER_PATH, runner.RUNNER_FLAG]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(wfd,), cwd=scratch,
                                env=_clean_env(scratch, token), start_new_session=True)
        os.close(wfd)
        wfd = -1
        io = pump(proc, rfd, payload, limits, t0)
        if proc.returncode is None:   # still running (timeout / output flood): kill it all now
            try:
                os.killpg(proc.pid, signal.SIGKILL)   # unshare's death takes the namespace along
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        oom = cgroups.oom_killed() if cgroups else False
        return classify(io, proc.returncode, limits, oom, nonce, time.monotonic() - t0,
                        tests.count if tests is not None else 0)
    finally:
        if proc is not None and proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
        if cgroups is not None:
            cgroups.remove()
        if not plan.pidns:
            _kill_by_token(token)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    if stream:
                        stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for fd in (rfd, wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(scratch, ignore_errors=True)


