"""Run an untrusted Python program (a model's code followed by its tests) and say if it passed.

Why: scoring MBPP+/HumanEval+ means executing whatever a model wrote, thousands of times, on
machines we care about (here and in CI we run as root). The reference ran it with exec() in a
forked process and nothing else. This module runs it inside the strongest isolation the
machine offers, detected at run time and reported by `sandbox_capabilities()`.

What "passed" means: the program ran to its end and raised nothing. Exit codes are not trusted
(`sys.exit(0)` or `os._exit(0)` before the tests looks like success). The runner inside the
sandbox gets a secret nonce on stdin (read before any untrusted code runs) and writes it to a
private pipe only after the whole program completed; the scorer counts a pass only when that
exact nonce arrives. A harness or sandbox failure is "error", never "passed".

Layers, each used when it works here. The first run probes them: the full set runs a small
program (writes a file, imports numpy); if that fails, layers are given up one at a time, in
the order cgroups, scratch tmpfs, Landlock, uid switch, capability drop, namespaces, until
the probe passes (`_degraded`; the reasons land in sandbox_capabilities()["notes"]):
  1. util-linux `unshare --pid --fork --kill-child --mount-proc --net --ipc` (as root directly,
     otherwise inside a new user namespace): a PID namespace, so when the runner (its init)
     exits the kernel kills every descendant, setsid/double-forked ones included, and nothing
     outside is visible or signalable; a network namespace with no interfaces; a private
     tmpfs mounted on the scratch folder (size-capped, vanishes with the namespace).
  2. Landlock (kernel ABI >= 1): everything outside the scratch folder becomes read-only for
     the program (writes to /dev/null allowed); ABI >= 4 also denies TCP bind/connect; ABI >= 6
     forbids signalling processes outside the sandbox.
  3. As root: the program runs as uid/gid 65534 with every capability dropped except
     CAP_DAC_READ_SEARCH (so it can still read a Python installed under /root), which makes
     file permissions and RLIMIT_NPROC apply, plus no_new_privs.
  4. As root with cgroup v1: a per-run pids cgroup (pids.max = max_procs) and memory cgroup
     (limit = memory_mb); every process left in them is killed at the end.
  5. Always: own session, rlimits (address space, CPU, file size, open files, core, processes),
     a clean environment built from scratch, a fresh scratch cwd removed afterwards, stdin from
     /dev/null, a wall-clock limit enforced by the scorer, stdout/stderr read with a cap (a
     program writing far past the cap is killed), and a cleanup that kills the process group,
     the cgroup members and (without a PID namespace) every process carrying this run's
     environment token. Without a PID namespace the runner is also a child subreaper, so
     orphans reparent to it and are killed when the program ends.

What a hostile program inside the same interpreter can still do (honest limits):
  * fake a pass: the nonce and the pipe live in the runner's memory (frames, gc, /proc/self/fd),
    so a deliberate attacker can write the nonce itself, or monkeypatch the test helpers and
    builtins the tests use, or return objects whose __eq__ is always True. The nonce defeats
    accidental and naive early exits, not an adversary who targets this harness.
  * read any file the machine lets it read (reads are not restricted), use CPU for up to the
    limits, and fill its scratch folder up to the tmpfs size (or, without a mount namespace, up
    to the file-size limit per file).
  * without namespaces, Landlock and root (the last-resort fallback): reach the network, signal
    other processes of the same user (including the scorer), write wherever that user may, and
    leave behind a process that both escaped the session and cleared its environment.
  * RLIMIT_CPU and RLIMIT_AS are per process; only the cgroups limit the sum.

This file is also the sandbox's runner: the scorer starts `python code_exec.py --sandbox-runner`
inside the sandbox, so everything above the first `__main__` guard uses only the standard library
and stays cheap to import.
"""

from __future__ import annotations

import json
import os
import sys

RUNNER_FLAG = "--sandbox-runner"
PROGRAM_FILENAME = "<program>"       # what tracebacks and failure details name the program
SANDBOX_UID = 65534                  # "nobody": the uid a root scorer runs programs as
_TOKEN_ENV = "LATENTMAS_SANDBOX_TOKEN"  # per-run marker; the last-resort leftover scan looks for it

# Linux ABI numbers. Landlock's syscalls are numbered alike on every architecture (they came
# after the syscall tables were unified); the prctl/capability constants are arch-independent.
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
_PR_SET_KEEPCAPS, _PR_CAPBSET_DROP, _PR_SET_CHILD_SUBREAPER = 8, 24, 36
_PR_SET_NO_NEW_PRIVS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE = 38, 47, 2
_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8

# Landlock filesystem rights that change the file system (ABI 1 bits, then the later ones).
_LL_WRITE_FILE, _LL_TRUNCATE, _LL_REFER = 1 << 1, 1 << 14, 1 << 13
_LL_MODIFY_ABI1 = _LL_WRITE_FILE | sum(1 << b for b in (4, 5, 6, 7, 8, 9, 10, 11, 12))
_LL_NET_BIND_TCP, _LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
_LL_SCOPE_ABSTRACT_UNIX_SOCKET, _LL_SCOPE_SIGNAL = 1 << 0, 1 << 1


# ------------------------------------------------------------------------------------------
# Kernel helpers (used by the runner and by the scorer's probe)

def _libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable (not Linux, disabled, too old)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        ctypes, libc = _libc()
        v = libc.syscall(ctypes.c_long(_SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0),
                         ctypes.c_long(_LANDLOCK_CREATE_RULESET_VERSION))
    except Exception:
        return 0
    return max(0, int(v))


def _landlock_restrict(abi: int, writable_dir: str) -> None:
    """Make the whole file system read-only for this process and its children, except
    `writable_dir` and /dev/null; with ABI >= 4 deny TCP, with ABI >= 6 scope signals."""
    ctypes, libc = _libc()
    c_long = ctypes.c_long

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    fs = _LL_MODIFY_ABI1 | (_LL_REFER if abi >= 2 else 0) | (_LL_TRUNCATE if abi >= 3 else 0)
    net = (_LL_NET_BIND_TCP | _LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (_LL_SCOPE_ABSTRACT_UNIX_SOCKET | _LL_SCOPE_SIGNAL) if abi >= 6 else 0
    size = 8 if abi < 4 else (16 if abi < 6 else 24)   # the struct grew with the ABI
    attr = RulesetAttr(fs, net, scoped)
    rfd = libc.syscall(c_long(_SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), c_long(size), c_long(0))
    if rfd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(writable_dir, fs), (os.devnull, fs & (_LL_WRITE_FILE | _LL_TRUNCATE))]
        for path, allowed in rules:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(allowed, pfd)
                if libc.syscall(c_long(_SYS_LANDLOCK_ADD_RULE), c_long(rfd),
                                c_long(_LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), c_long(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(pfd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(c_long(_SYS_LANDLOCK_RESTRICT_SELF), c_long(rfd), c_long(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(rfd)


def _drop_privileges(uid: int | None, keep_read_search: bool) -> None:
    """Drop every capability (keeping CAP_DAC_READ_SEARCH if asked) and switch to `uid`.

    Root without capabilities is still root for file ownership and RLIMIT_NPROC, hence the uid
    switch. CAP_DAC_READ_SEARCH is kept (also as an ambient capability, so a subprocess keeps
    it) because the Python running us may live under a 0700 directory such as /root/.pyenv.
    """
    ctypes, libc = _libc()
    keep = {_CAP_DAC_READ_SEARCH} if keep_read_search else set()
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    for cap in range(last_cap + 1):
        if cap not in keep:
            libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)   # EINVAL for unknown caps: ignored
    if uid is not None:
        libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]

    mask = sum(1 << c for c in keep)
    data = (Data * 2)()
    data[0].effective = data[0].permitted = data[0].inheritable = mask
    if libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    for cap in keep:
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    if uid is not None and (os.getuid(), os.geteuid()) != (uid, uid):
        raise OSError(f"still uid {os.getuid()}/{os.geteuid()} after setresuid({uid})")
    with open("/proc/self/status") as f:
        eff = next((ln.split()[1] for ln in f if ln.startswith("CapEff:")), None)
    if eff is not None and int(eff, 16) != mask:
        raise OSError(f"capabilities still {eff} after dropping them")


# ------------------------------------------------------------------------------------------
# The runner: runs inside the sandbox as `python code_exec.py --sandbox-runner`.
#
# Protocol. stdin: one JSON header line, then the program (UTF-8). The runner forks: the parent
# ("supervisor", trusted code only, the PID namespace's init when there is one) waits for the
# child and reports how it ended; the child applies every restriction, then runs the program.
# Report pipe lines: "CHILD <pid>", "READY" (restrictions applied, untrusted code starts next),
# "SETUP_ERROR <msg>", "FAIL <json>", "PASS <nonce>", and last "STATUS <json>" (exit/signal/cpu).
# The program can write to the pipe too: only "PASS <the right nonce>" is ever trusted.

def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass   # the scorer stopped listening (timeout): nothing left to tell it


def _runner_main() -> None:
    raw = sys.stdin.buffer.read()
    head, _, body = raw.partition(b"\n")
    cfg = json.loads(head)
    program = body.decode("utf-8", "surrogatepass")
    del raw, body
    rfd = int(cfg["report_fd"])
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)   # the program reads an empty stdin
    os.close(null)
    try:
        if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
            del sys.path[0]   # Python 3.10 has no PYTHONSAFEPATH: keep our package dir off the path
        # We start with -S (no site: its .pth processing costs ~40 ms a run); put the
        # installed packages back on the path, and exit()/quit()/help() back in builtins.
        sys.path.extend(d for d in cfg["site_dirs"] if d not in sys.path)
        import site
        site.setquit()
        site.setcopyright()
        site.sethelper()
        if not cfg["pidns"]:
            _libc()[1].prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)   # orphans come back to us
        if cfg["tmpfs_mb"]:
            _mount_private_tmpfs(cfg["scratch"], cfg["tmpfs_mb"], cfg["drop_uid"])
        os.chdir(cfg["scratch"])
    except BaseException as e:  # noqa: BLE001 - report any setup failure, never run the program
        _write_all(rfd, f"SETUP_ERROR supervisor: {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    pid = os.fork()
    if pid == 0:
        try:
            _child(cfg, program, rfd)
        finally:
            os._exit(120)   # unreachable unless _child returns
    _write_all(rfd, f"CHILD {pid}\n".encode())
    while True:   # reap whatever exits (orphans reparent to us) until the program's process does
        try:
            wpid, status, usage = os.wait4(-1, 0)
        except ChildProcessError:
            status, usage = None, None
            break
        except InterruptedError:
            continue
        if wpid == pid:
            break
    if not cfg["pidns"]:
        _kill_descendants()   # in a PID namespace our exit does this, in the kernel
    info: dict = {"exit": None, "signal": None, "cpu": None, "maxrss_kb": None}
    if status is not None:
        if os.WIFSIGNALED(status):
            info["signal"] = os.WTERMSIG(status)
        else:
            info["exit"] = os.WEXITSTATUS(status)
        info["cpu"] = round(usage.ru_utime + usage.ru_stime, 3)
        info["maxrss_kb"] = usage.ru_maxrss
    _write_all(rfd, ("STATUS " + json.dumps(info) + "\n").encode())
    os._exit(0)


def _mount_private_tmpfs(path: str, size_mb: int, uid: int | None) -> None:
    """Mount a size-capped tmpfs on the scratch folder inside our own mount namespace."""
    ctypes, libc = _libc()
    owner = uid if uid is not None else os.getuid()
    opts = f"size={int(size_mb)}m,nr_inodes=65536,mode=0700,uid={owner},gid={owner}".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, opts) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {path} failed")


def _kill_descendants() -> None:
    """SIGKILL every child of ours until none is left (we are a subreaper, so grandchildren
    whose parent died are our children too)."""
    import signal
    import time
    me = os.getpid()
    for _ in range(400):
        kids = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat", "rb") as f:
                        stat = f.read()
                    if int(stat[stat.rindex(b")") + 2:].split()[1]) == me:
                        kids.append(int(name))
                except (OSError, ValueError, IndexError):
                    continue
        if not kids:
            return
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(0.005)


def _set_rlimits(lim: dict, nproc: int | None) -> None:
    import resource
    mb = 1024 * 1024
    cpu = max(1, int(-(-lim["cpu_s"] // 1)))   # ceil
    settings = [
        (resource.RLIMIT_AS, lim["memory_mb"] * mb),
        # soft limit -> SIGXCPU (reported as a CPU timeout), hard limit one second later -> SIGKILL
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, lim["file_size_mb"] * mb),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ]
    if nproc is not None:
        settings.append((resource.RLIMIT_NPROC, nproc))
    for which, value in settings:
        soft, hard = value if isinstance(value, tuple) else (value, value)
        _, cur_hard = resource.getrlimit(which)
        if cur_hard != resource.RLIM_INFINITY:   # never try to raise a hard limit we were given
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(which, (soft, hard))


def _child(cfg: dict, program: str, rfd: int) -> None:
    try:
        os.setsid()   # own session: killpg(0) hits only the program's group, never the runner
        for procs in cfg["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write("0")   # "0" = the writing process
        _set_rlimits(cfg["limits"], cfg["nproc"])
        if cfg["landlock_abi"]:
            _landlock_restrict(cfg["landlock_abi"], cfg["scratch"])
        if cfg["drop_caps"]:
            _drop_privileges(cfg["drop_uid"], keep_read_search=cfg["drop_uid"] is not None)
        os.closerange(3, rfd)
        os.closerange(rfd + 1, 65536)
    except BaseException as e:  # noqa: BLE001
        _write_all(rfd, f"SETUP_ERROR sandbox: {type(e).__name__}: {e}\n".encode())
        os._exit(121)
    nonce = cfg.pop("nonce")
    _write_all(rfd, b"READY\n")
    _run_untrusted(program, nonce, rfd)


def _run_untrusted(program: str, nonce: str, rfd: int) -> None:
    import builtins
    import traceback
    # __name__ is not "__main__": like the reference (exec in a worker) and EvalPlus, a
    # model's `if __name__ == "__main__":` demo block does not run (it may read stdin or exit).
    env = {"__name__": "__sandbox__", "__builtins__": builtins}
    sys.argv = [PROGRAM_FILENAME]
    try:
        # dont_inherit: this module's `from __future__ import annotations` must not leak in.
        code = compile(program, PROGRAM_FILENAME, "exec", dont_inherit=True)
        exec(code, env)
    except BaseException as e:  # noqa: BLE001 - SystemExit too: exiting early is a failure
        try:
            info = _describe_exception(e, program)
        except BaseException:  # noqa: BLE001 - a hostile __str__ must not hide the failure
            info = {"type": "Exception", "msg": "(undescribable exception)", "line": None, "code": ""}
        try:
            if not isinstance(e, SystemExit):
                tb = e.__traceback__   # start at the program's first frame: ours are noise
                while tb is not None and tb.tb_frame.f_code.co_filename != PROGRAM_FILENAME:
                    tb = tb.tb_next
                traceback.print_exception(type(e), e, tb, limit=-8)
        except BaseException:  # noqa: BLE001
            pass
        _flush_std()
        _write_all(rfd, ("FAIL " + json.dumps(info) + "\n").encode())
        os._exit(1)
    _flush_std()
    _write_all(rfd, f"PASS {nonce}\n".encode())
    os._exit(0)   # skip atexit handlers and thread joins the program may have set up


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001
            pass


def _describe_exception(e: BaseException, program: str) -> dict:
    line = None
    if isinstance(e, SyntaxError) and e.filename == PROGRAM_FILENAME:
        line = e.lineno
    else:
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == PROGRAM_FILENAME:
                line = tb.tb_lineno
            tb = tb.tb_next
    code = ""
    if line:
        lines = program.splitlines()
        if 0 < line <= len(lines):
            code = lines[line - 1].strip()[:160]
    if isinstance(e, SystemExit):
        msg = f"the program called exit({e.code!r}) before its tests finished"
    else:
        msg = str(e)
        msg = msg[:300] + ("..." if len(msg) > 300 else "")
    return {"type": type(e).__name__, "msg": msg, "line": line, "code": code}


if __name__ == "__main__" and sys.argv[1:] == [RUNNER_FLAG]:
    _runner_main()   # never returns; the scorer side below is not needed inside the sandbox


# ------------------------------------------------------------------------------------------
# The scorer side.

import math  # noqa: E402 - the runner above must not pay for these imports
import secrets  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor, as_completed  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

_RUNNER_PATH = os.path.abspath(__file__)
_MB = 1024 * 1024
# A program that writes more than max(64 x output_bytes, 8 MiB) to stdout+stderr is killed:
# the scorer keeps only the tails anyway, and draining gigabytes would burn the wall clock.
_OUTPUT_KILL_FACTOR = 64
_OUTPUT_KILL_FLOOR = 8 * 1024 * 1024


def _flood_limit(limits: "SandboxLimits") -> int:
    return max(limits.output_bytes * _OUTPUT_KILL_FACTOR, _OUTPUT_KILL_FLOOR)
_EXIT_GRACE_S = 0.3   # how long pipes may stay open after the runner exited (fallback mode)


@dataclass(frozen=True)
class SandboxLimits:
    """Per-program limits. cpu_s and memory_mb apply to each process (rlimits) and, where cgroups
    work, memory_mb and max_procs to the whole sandbox. output_bytes is how much of the end of
    stdout and of stderr is kept."""

    wall_s: float = 30.0
    cpu_s: float = 30.0
    memory_mb: int = 2048   # address space: numpy needs a few hundred MB of it just to import
    max_procs: int = 64
    file_size_mb: int = 16
    output_bytes: int = 65536

    def __post_init__(self):
        for name in ("wall_s", "cpu_s", "memory_mb", "max_procs", "file_size_mb", "output_bytes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise ValueError(f"SandboxLimits.{name} must be a positive number, got {v!r}")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxLimits.memory_mb must be >= 64 (Python itself needs it), got {self.memory_mb}")


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str            # "passed" | "failed" | "timeout" | "error" (harness/sandbox) | "killed"
    returncode: int | None  # the program's exit code, -N if killed by signal N, None if unknown
    stdout: str            # the last output_bytes of stdout (a marker line says if cut)
    stderr: str
    seconds: float
    detail: str            # one line for a human: "AssertionError at line 12: assert f(1) == 2"


# ------------------------------------------------------------------------------------------
# What works on this machine (probed once per process)

@dataclass(frozen=True)
class _Plan:
    prefix: tuple[str, ...] = ()      # the unshare command line, () for none
    userns: bool = False              # the namespaces live in a new user namespace (not root)
    tmpfs: bool = False               # private size-capped tmpfs on the scratch folder
    landlock: int = 0                 # Landlock ABI used, 0 = none
    drop_caps: bool = False           # drop capabilities (root, or root in a user namespace)
    drop_uid: int | None = None       # run the program as this uid (root only)
    cgroups: tuple[tuple[str, str], ...] = ()   # (controller, parent dir) for per-run groups

    @property
    def pidns(self) -> bool:
        return bool(self.prefix)


_PLAN: _Plan | None = None
_PLAN_NOTES: list[str] = []
_PLAN_LOCK = threading.Lock()
_RUN_COUNTER = iter(range(1, 1 << 62))
_COUNTER_LOCK = threading.Lock()


def _find_unshare() -> str | None:
    found = shutil.which("unshare")
    if found:
        return found
    for p in ("/usr/bin/unshare", "/bin/unshare", "/usr/sbin/unshare"):
        if os.access(p, os.X_OK):
            return p
    return None


def _probe_unshare(notes: list[str]) -> tuple[tuple[str, ...], bool]:
    exe = _find_unshare()
    if exe is None:
        notes.append("no unshare binary (util-linux): no namespaces")
        return (), False
    ns = ["--pid", "--fork", "--kill-child", "--mount-proc", "--net", "--ipc"]
    tries = []
    if os.geteuid() == 0:
        tries.append(([exe, *ns], False))
    tries.append(([exe, "--user", "--map-root-user", *ns], True))
    for cmd, userns in tries:
        try:
            r = subprocess.run([*cmd, "true"], stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=15, env={"PATH": "/usr/bin:/bin"})
        except (OSError, subprocess.SubprocessError) as e:
            notes.append(f"{' '.join(cmd[1:])}: {type(e).__name__}: {e}")
            continue
        if r.returncode == 0:
            return tuple(cmd), userns
        err = r.stderr.decode(errors="replace").strip().splitlines()
        notes.append(f"unshare {'with' if userns else 'without'} a user namespace failed: "
                     f"{err[-1] if err else 'exit ' + str(r.returncode)}")
    return (), False


def _own_cgroups() -> dict[str, str]:
    own: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                parts = line.rstrip("\n").split(":", 2)
                if len(parts) == 3:
                    for ctrl in parts[1].split(","):
                        own[ctrl] = parts[2]
    except OSError:
        pass
    return own


def _probe_cgroups(notes: list[str]) -> tuple[tuple[str, str], ...]:
    """cgroup v1 pids and memory parents we can create groups in (root only), nested under our
    own group so the container's accounting still covers the sandboxes."""
    if os.geteuid() != 0:
        return ()
    own = _own_cgroups()
    found = []
    for ctrl, knob in (("pids", "pids.max"), ("memory", "memory.limit_in_bytes")):
        mount = f"/sys/fs/cgroup/{ctrl}"
        if not os.path.isfile(os.path.join(mount, "cgroup.procs")):
            continue
        parent = os.path.join(mount, own.get(ctrl, "/").lstrip("/"))
        if not os.path.isdir(parent):
            parent = mount
        test = os.path.join(parent, f"lmr-sbx-probe-{os.getpid()}")
        try:
            os.mkdir(test)
            ok = os.path.exists(os.path.join(test, knob))
            os.rmdir(test)
        except OSError as e:
            notes.append(f"cgroup {ctrl}: cannot create a group under {parent} ({e.strerror})")
            continue
        if ok:
            _sweep_stale_cgroups(parent)
            found.append((ctrl, parent))
    if not found:
        notes.append("no usable cgroup v1 pids/memory controller")
    return tuple(found)


def _sweep_stale_cgroups(parent: str) -> None:
    """Remove groups left by scorers that died (their pid is in the name)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith("lmr-sbx-"):
            continue
        try:
            pid = int(name.split("-")[2])
        except (IndexError, ValueError):
            continue
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        _kill_cgroup(os.path.join(parent, name))
        try:
            os.rmdir(os.path.join(parent, name))
        except OSError:
            pass


def _full_plan(notes: list[str]) -> _Plan:
    root = os.geteuid() == 0
    prefix, userns = _probe_unshare(notes)
    abi = landlock_abi()
    if not abi:
        notes.append("Landlock unavailable: writes outside the scratch folder are not confined by it")
    return _Plan(prefix=prefix, userns=userns, tmpfs=bool(prefix), landlock=abi,
                 drop_caps=root or userns, drop_uid=SANDBOX_UID if root else None,
                 cgroups=_probe_cgroups(notes))


def _degraded(plan: _Plan) -> list[tuple[str, _Plan]]:
    """The plans to try, strongest first: each step gives up one more layer."""
    steps = [("cgroups", dict(cgroups=())), ("scratch tmpfs", dict(tmpfs=False)),
             ("Landlock", dict(landlock=0)), ("uid switch", dict(drop_uid=None)),
             ("capability drop", dict(drop_caps=False)), ("namespaces", dict(prefix=(), userns=False))]
    out = [("", plan)]
    for what, change in steps:
        nxt = replace(out[-1][1], **change)
        if nxt != out[-1][1]:
            out.append((what, nxt))
    return out


_PROBE_PROGRAM = """
import os
with open("probe.txt", "w") as f:
    f.write("ok")
assert open("probe.txt").read() == "ok"
{numpy}
"""


def _get_plan() -> _Plan:
    global _PLAN
    with _PLAN_LOCK:
        if _PLAN is not None:
            return _PLAN
        notes: list[str] = []
        import importlib.util
        program = _PROBE_PROGRAM.format(
            numpy="import numpy" if importlib.util.find_spec("numpy") else "")
        limits = SandboxLimits(wall_s=60, cpu_s=30)
        chosen = None
        for dropped, plan in _degraded(_full_plan(notes)):
            if dropped:
                notes.append(f"dropped {dropped}")
            res = _execute(plan, program, limits)
            if res.passed:
                chosen = plan
                break
            notes.append(f"probe failed ({res.status}: {res.detail}"
                         f"{' / ' + res.stderr.strip().splitlines()[-1] if res.stderr.strip() else ''})")
        if chosen is None:
            chosen = _Plan()   # nothing worked: run_program will report the errors it sees
            notes.append("even the bare fallback failed its probe")
        _PLAN_NOTES[:] = notes
        _PLAN = chosen
        return _PLAN


def sandbox_capabilities() -> dict[str, bool | str]:
    """What the sandbox enforces on this machine (probed once, then cached), for the CLI."""
    p = _get_plan()
    net = ("network namespace (no interfaces)" if p.pidns else
           "Landlock (TCP only)" if p.landlock >= 4 else "NOT blocked")
    kill = ("PID namespace" if p.pidns else
            "cgroup + subreaper + token scan" if p.cgroups else "subreaper + process group + token scan")
    ctrls = {c for c, _ in p.cgroups}
    caps: dict[str, bool | str] = {
        "running_as_root": os.geteuid() == 0,
        "pid_namespace": p.pidns,
        "net_namespace": p.pidns,
        "user_namespace": p.userns,
        "private_scratch_tmpfs": p.tmpfs,
        "landlock": f"ABI {p.landlock}" if p.landlock else "no",
        "writes_outside_scratch_blocked": bool(p.landlock) or p.drop_uid is not None,
        "network_blocked": net,
        "signals_outside_blocked": p.pidns or p.landlock >= 6 or p.drop_uid is not None,
        "unprivileged_uid": str(p.drop_uid) if p.drop_uid is not None else "no",
        "capabilities_dropped": p.drop_caps,
        "cgroup_pids": "pids" in ctrls,
        "cgroup_memory": "memory" in ctrls,
        "rlimits": "address space, cpu, file size, open files, core, processes",
        "leftover_processes_killed_by": kill,
        "notes": "; ".join(_PLAN_NOTES) or "none",
    }
    return caps


# ------------------------------------------------------------------------------------------
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
        _TOKEN_ENV: token,
    }


class _RunCgroups:
    """This run's pids/memory groups (cgroup v1)."""

    def __init__(self, parents: Sequence[tuple[str, str]], limits: SandboxLimits):
        with _COUNTER_LOCK:
            n = next(_RUN_COUNTER)
        name = f"lmr-sbx-{os.getpid()}-{n}-{secrets.token_hex(3)}"
        self.dirs: dict[str, str] = {}
        try:
            for ctrl, parent in parents:
                d = os.path.join(parent, name)
                os.mkdir(d)
                self.dirs[ctrl] = d
                if ctrl == "pids":
                    _write_file(os.path.join(d, "pids.max"), str(limits.max_procs))
                elif ctrl == "memory":
                    _write_file(os.path.join(d, "memory.limit_in_bytes"), str(limits.memory_mb * _MB))
                    try:   # also cap swap where the kernel accounts it
                        _write_file(os.path.join(d, "memory.memsw.limit_in_bytes"), str(limits.memory_mb * _MB))
                    except OSError:
                        pass
        except BaseException:
            self.remove()
            raise

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs.values()]

    def oom_killed(self) -> bool:
        d = self.dirs.get("memory")
        if not d:
            return False
        try:
            with open(os.path.join(d, "memory.oom_control")) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and int(v) > 0:
                        return True
            with open(os.path.join(d, "memory.failcnt")) as f:
                return int(f.read()) > 0
        except (OSError, ValueError):
            return False

    def remove(self) -> None:
        for d in self.dirs.values():
            _kill_cgroup(d)
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)
                    _kill_cgroup(d)


def _write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _kill_cgroup(d: str) -> None:
    for _ in range(100):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.005)


def _kill_by_token(token: str) -> None:
    """Last resort without a PID namespace: kill every process started with this run's token in
    its environment (escaped the session, reparented away from the runner)."""
    needle = f"{_TOKEN_ENV}={token}".encode()
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


class _Tail:
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


def run_program(program: str, limits: SandboxLimits = SandboxLimits()) -> ExecResult:
    """Run `program` (candidate code followed by its tests) in the sandbox. Never raises for
    anything the program does; a failure of the sandbox itself is status "error"."""
    if not isinstance(program, str):
        raise TypeError(f"program must be str, got {type(program).__name__}")
    return _execute(_get_plan(), program, limits)


def run_programs(programs: Sequence[str],
                 limits: SandboxLimits | Sequence[SandboxLimits] = SandboxLimits(),
                 workers: int | None = None,
                 progress: Callable[[int], None] | None = None) -> list[ExecResult]:
    """Run many programs in parallel (threads driving sandbox processes), results in order.

    limits: one SandboxLimits for all, or one per program.
    workers: concurrent sandboxes, default the CPUs this process may use.
    progress: called as progress(k) with the number of programs that just finished (k = 1 each
    time), so it plugs into a progress bar's `advance`.
    """
    programs = list(programs)
    per = [limits] * len(programs) if isinstance(limits, SandboxLimits) else list(limits)
    if len(per) != len(programs):
        raise ValueError(f"{len(per)} limits for {len(programs)} programs")
    if not programs:
        return []
    if workers is None:
        try:
            workers = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            workers = os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    _get_plan()   # probe once, before the threads race for it
    results: list[ExecResult | None] = [None] * len(programs)
    ex = ThreadPoolExecutor(max_workers=min(workers, len(programs)), thread_name_prefix="sandbox")
    try:
        futures = {ex.submit(run_program, p, lim): i for i, (p, lim) in enumerate(zip(programs, per))}
        for fut in as_completed(futures):
            results[futures[fut]] = fut.result()
            if progress is not None:
                progress(1)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
    return results  # type: ignore[return-value]


def _execute(plan: _Plan, program: str, limits: SandboxLimits) -> ExecResult:
    t0 = time.monotonic()
    try:
        return _execute_inner(plan, program, limits, t0)
    except Exception as e:  # noqa: BLE001 - the scorer never crashes; this is a harness failure
        return ExecResult(False, "error", None, "", "", time.monotonic() - t0,
                          f"sandbox error: {type(e).__name__}: {e}")


def _execute_inner(plan: _Plan, program: str, limits: SandboxLimits, t0: float) -> ExecResult:
    scratch = tempfile.mkdtemp(prefix="lmr-sbx-")
    cgroups: _RunCgroups | None = None
    proc: subprocess.Popen | None = None
    rfd = wfd = -1
    token = secrets.token_hex(16)
    try:
        if plan.drop_uid is not None:
            os.chown(scratch, plan.drop_uid, plan.drop_uid)
        if plan.cgroups:
            cgroups = _RunCgroups(plan.cgroups, limits)
        nonce = secrets.token_hex(32)
        rfd, wfd = os.pipe()
        header = {
            "report_fd": wfd, "nonce": nonce, "scratch": scratch, "pidns": plan.pidns,
            "site_dirs": _site_dirs(),
            "tmpfs_mb": max(64, 4 * limits.file_size_mb) if plan.tmpfs else 0,
            "landlock_abi": plan.landlock, "drop_caps": plan.drop_caps, "drop_uid": plan.drop_uid,
            "cgroup_procs": cgroups.procs_files() if cgroups else [],
            # with a pids cgroup the count is exact; else RLIMIT_NPROC (per uid) is what we have
            "nproc": None if (cgroups and "pids" in cgroups.dirs) or (os.geteuid() == 0 and plan.drop_uid is None)
            else limits.max_procs,
            "limits": {"cpu_s": limits.cpu_s, "memory_mb": int(limits.memory_mb),
                       "file_size_mb": int(limits.file_size_mb)},
        }
        payload = json.dumps(header).encode() + b"\n" + program.encode("utf-8", "surrogatepass")
        cmd = [*plan.prefix, sys.executable, "-S", "-s", "-B", _RUNNER_PATH, RUNNER_FLAG]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(wfd,), cwd=scratch,
                                env=_clean_env(scratch, token), start_new_session=True)
        os.close(wfd)
        wfd = -1
        io = _pump(proc, rfd, payload, limits, t0)
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
        return _classify(io, proc.returncode, limits, oom, nonce, time.monotonic() - t0)
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


@dataclass
class _IO:
    """What came back. Report lines are folded in as they arrive (never stored), so a program
    spamming the report pipe cannot push the runner's own lines out."""
    stdout: _Tail
    stderr: _Tail
    timed_out: bool = False
    flooded: bool = False
    ready: bool = False
    pass_nonce: str | None = None
    fail: dict | None = None       # the first FAIL line
    status: dict | None = None     # the last STATUS line (the supervisor writes it last)
    setup_error: str | None = None


def _pump(proc: subprocess.Popen, rfd: int, payload: bytes, limits: SandboxLimits,
          t0: float) -> _IO:
    """Feed stdin, drain stdout/stderr/report with caps, until everything closed or a limit hit."""
    io = _IO(_Tail(limits.output_bytes), _Tail(limits.output_bytes))
    deadline = t0 + limits.wall_s
    flood = _flood_limit(limits)
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
            if exited_at is not None and now - exited_at > _EXIT_GRACE_S:
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
                    while b"\n" in report_buf:
                        line, _, rest = bytes(report_buf).partition(b"\n")
                        report_buf = bytearray(rest)
                        _take_report_line(io, line.decode("utf-8", "replace"))
                    if len(report_buf) > 65536:   # a line that never ends: the program's noise
                        report_buf = bytearray()
            if io.stdout.total + io.stderr.total > flood:
                io.flooded = True
                break
    finally:
        sel.close()
    if report_buf:
        _take_report_line(io, report_buf.decode("utf-8", "replace"))
    return io


def _take_report_line(io: _IO, line: str) -> None:
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


def _classify(io: _IO, rc: int | None, limits: SandboxLimits, oom: bool, nonce: str,
              seconds: float) -> ExecResult:
    out, err = io.stdout.text(), io.stderr.text()

    def result(status: str, code: int | None, detail: str) -> ExecResult:
        return ExecResult(status == "passed", status, code, out, err, seconds, detail)

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
                      f"{_flood_limit(limits)} bytes written)")
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


if __name__ == "__main__":
    print(json.dumps(sandbox_capabilities(), indent=2))
