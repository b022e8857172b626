"""Per-run cgroup v1 groups (pids, memory) for a root scorer: probing, limits, kill, removal."""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from typing import Sequence

from .limits import MB, SandboxLimits

_RUN_COUNTER = iter(range(1, 1 << 62))
_COUNTER_LOCK = threading.Lock()


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


def probe_cgroups(notes: list[str]) -> tuple[tuple[str, str], ...]:
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



class RunCgroups:
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
                    _write_file(os.path.join(d, "memory.limit_in_bytes"), str(limits.memory_mb * MB))
                    try:   # also cap swap where the kernel accounts it
                        _write_file(os.path.join(d, "memory.memsw.limit_in_bytes"), str(limits.memory_mb * MB))
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


