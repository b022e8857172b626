"""Which isolation layers this machine offers: the plan (namespaces, Landlock, uid switch,
capability drop, cgroups), how it degrades one layer at a time, and how it is reported."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, replace

from ..errors import LatentMASError
from .cgroups import V2, probe_cgroups
from .confine import PRIVATE_DIRS, landlock_abi

SANDBOX_UID = 65534                  # "nobody": the uid a root scorer runs programs as

# How much isolation a run insists on (--sandbox_level); scoring code refuses to start below it.
#   strict        standard + writes outside the scratch folder blocked (Landlock, or the uid
#                 switch with private /tmp, /var/tmp, /dev/shm) + cgroup pids and memory limits
#   standard      PID and network namespaces, a private tmpfs on the scratch folder, /tmp,
#                 /var/tmp and /dev/shm (nothing the program writes there outlives it)
#   rlimits-only  whatever works, down to rlimits and a scratch folder (no isolation: trusted code)
LEVELS = ("strict", "standard", "rlimits-only")
DEFAULT_LEVEL = "standard"   # what every Linux with util-linux and mount namespaces gives


class SandboxUnavailable(LatentMASError):
    """The isolation the run's --sandbox_level asks for is missing on this machine."""


def missing_for(level: str, p: "Plan") -> list[str]:
    """What `p` lacks for `level` (empty when it is enough)."""
    if level not in LEVELS:
        raise ValueError(f"unknown sandbox level {level!r}; use one of {', '.join(LEVELS)}")
    if level == "rlimits-only":
        return []
    out = []
    if not p.pidns:
        out.append("PID and network namespaces (util-linux unshare)")
    if not p.tmpfs:
        out.append("private tmpfs mounts (scratch, " + ", ".join(PRIVATE_DIRS) + ")")
    if level == "strict":
        if not writes_blocked(p):
            out.append("Landlock or a uid switch (root) to block writes outside the scratch folder")
        ctrls = {c for c, _ in p.cgroups}
        if not (V2 in ctrls or {"pids", "memory"} <= ctrls):
            out.append("cgroup pids and memory controllers (v1 or v2, as root)")
    return out


def writes_blocked(p: "Plan") -> bool:
    """Can the program leave a file anywhere outside its scratch folder? Landlock makes all
    else read-only; the uid switch leaves only world-writable folders, which the private
    tmpfs mounts cover (/tmp, /var/tmp, /dev/shm)."""
    return bool(p.landlock) or (p.drop_uid is not None and p.tmpfs)


@dataclass(frozen=True)
class Plan:
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


def full_plan(notes: list[str]) -> Plan:
    root = os.geteuid() == 0
    prefix, userns = _probe_unshare(notes)
    abi = landlock_abi()
    if not abi:
        notes.append("Landlock unavailable: writes outside the scratch folder are not confined by it")
    return Plan(prefix=prefix, userns=userns, tmpfs=bool(prefix), landlock=abi,
                 drop_caps=root or userns, drop_uid=SANDBOX_UID if root else None,
                 cgroups=probe_cgroups(notes))


def degraded(plan: Plan) -> list[tuple[str, Plan]]:
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


PROBE_PROGRAM = """
import os
with open("probe.txt", "w") as f:
    f.write("ok")
assert open("probe.txt").read() == "ok"
{numpy}
"""



def describe(p: Plan, notes: list[str]) -> dict[str, bool | str]:
    """What `p` enforces, as sandbox_capabilities() reports it."""
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
        "private_tmp_and_shm": p.tmpfs,
        "landlock": f"ABI {p.landlock}" if p.landlock else "no",
        "writes_outside_scratch_blocked": writes_blocked(p),
        "network_blocked": net,
        "signals_outside_blocked": p.pidns or p.landlock >= 6 or p.drop_uid is not None,
        "unprivileged_uid": str(p.drop_uid) if p.drop_uid is not None else "no",
        "capabilities_dropped": p.drop_caps,
        "cgroup_pids": "pids" in ctrls or V2 in ctrls,
        "cgroup_memory": "memory" in ctrls or V2 in ctrls,
        "cgroup_version": "v2" if V2 in ctrls else "v1" if ctrls else "none",
        "rlimits": "address space, cpu, file size, open files, core, processes",
        "leftover_processes_killed_by": kill,
        "notes": "; ".join(notes) or "none",
    }
    return caps

