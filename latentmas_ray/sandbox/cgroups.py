"""Per-run cgroups (pids, memory) for a root scorer, v1 or v2, whichever is mounted: probing,
limits, kill, removal.

v1: a group per controller under our own group of each hierarchy (pids.max,
memory.limit_in_bytes). v2 (one unified hierarchy): one group holding both limits (pids.max,
memory.max, memory.swap.max = 0), made beside our own group (a v2 group that holds processes,
ours, cannot also give its children controllers), or under the root, which may."""

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


def _group_has(parent: str, knobs: tuple[str, ...], what: str, notes: list[str]) -> bool | None:
    """Create and remove a probe group under `parent`: whether it has every knob, or None (with
    a note) when no group can be created there."""
    test = os.path.join(parent, f"lmr-sbx-probe-{os.getpid()}")
    try:
        os.mkdir(test)
        ok = all(os.path.exists(os.path.join(test, k)) for k in knobs)
        os.rmdir(test)
    except OSError as e:
        notes.append(f"{what}: cannot create a group under {parent} ({e.strerror})")
        return None
    return ok


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
        ok = _group_has(parent, (knob,), f"cgroup {ctrl}", notes)
        if ok is None:
            continue
        if ok:
            _sweep_stale_cgroups(parent)
            found.append((ctrl, parent))
    if found:
        return tuple(found)
    v2 = probe_v2(notes)
    if v2:
        return ((V2, v2),)
    notes.append("no usable cgroup pids/memory controllers (v1 or v2)")
    return ()


V2 = "v2"   # Plan.cgroups' controller name for a v2 group (pids and memory together)


def _v2_mounts() -> list[str]:
    try:
        with open("/proc/self/mounts") as f:
            return [ln.split()[1] for ln in f if len(ln.split()) > 2 and ln.split()[2] == "cgroup2"]
    except OSError:
        return []


def probe_v2(notes: list[str], mounts: Sequence[str] | None = None, own: str | None = None) -> str | None:
    """A v2 folder whose new children get memory.max and pids.max, or None."""
    for mount in (_v2_mounts() if mounts is None else mounts):
        try:
            with open(os.path.join(mount, "cgroup.controllers")) as f:
                if not {"memory", "pids"} <= set(f.read().split()):
                    continue
        except OSError:
            continue
        path = _own_cgroups().get("", "/") if own is None else own
        mine = os.path.normpath(os.path.join(mount, path.lstrip("/")))
        parent = mount if mine == os.path.normpath(mount) or not os.path.isdir(mine) else os.path.dirname(mine)
        try:
            with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
                f.write("+memory +pids")
        except OSError:
            pass   # already on, or not ours to turn on: the test group below tells
        ok = _group_has(parent, ("memory.max", "pids.max"), "cgroup v2", notes)
        if ok is None:
            continue
        if ok:
            _sweep_stale_cgroups(parent)
            return parent
        notes.append(f"cgroup v2: groups under {parent} get no memory/pids limits")
    return None


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
                if ctrl == V2:
                    _write_file(os.path.join(d, "pids.max"), str(limits.max_procs))
                    _write_file(os.path.join(d, "memory.max"), str(limits.memory_mb * MB))
                    try:   # no swap: the memory limit is the limit
                        _write_file(os.path.join(d, "memory.swap.max"), "0")
                    except OSError:
                        pass
                elif ctrl == "pids":
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

    def limits(self, what: str) -> bool:
        """Does this run have a group limiting `what` ("pids" or "memory")?"""
        return what in self.dirs or V2 in self.dirs

    def oom_killed(self) -> bool:
        if V2 in self.dirs:
            try:
                with open(os.path.join(self.dirs[V2], "memory.events")) as f:
                    return any(ln.split()[0] in ("oom_kill", "max") and int(ln.split()[1]) > 0
                               for ln in f if len(ln.split()) == 2)
            except (OSError, ValueError):
                return False
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


