"""The restrictions the jail applies to itself: Landlock, capability drop and uid switch, a private
tmpfs, rlimits. Linux syscalls through ctypes.

Standard library only, no imports from latentmas_ray: the runner loads this file by path inside
the jail (see runner.py); the scorer imports it as latentmas_ray.sandbox.confine for the probe.
"""

from __future__ import annotations

import os
import sys

# Linux ABI numbers. Landlock's syscalls are numbered alike on every architecture (they came
# after the syscall tables were unified); the prctl/capability constants are arch-independent.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_KEEPCAPS, PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER = 8, 24, 36
PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 38, 47, 2
CAP_DAC_READ_SEARCH = 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8

# Landlock filesystem rights that change the file system (ABI 1 bits, then the later ones).
LL_WRITE_FILE, LL_TRUNCATE, LL_REFER = 1 << 1, 1 << 14, 1 << 13
LL_MODIFY_ABI1 = LL_WRITE_FILE | sum(1 << b for b in (4, 5, 6, 7, 8, 9, 10, 11, 12))
LL_NET_BIND_TCP, LL_NET_CONNECT_TCP = 1 << 0, 1 << 1
LL_SCOPE_ABSTRACT_UNIX_SOCKET, LL_SCOPE_SIGNAL = 1 << 0, 1 << 1


def load_libc():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return ctypes, libc


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when unavailable (not Linux, disabled, too old)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        ctypes, libc = load_libc()
        v = libc.syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_long(0),
                         ctypes.c_long(LANDLOCK_CREATE_RULESET_VERSION))
    except Exception:
        return 0
    return max(0, int(v))


def landlock_restrict(abi: int, writable_dir: str) -> None:
    """Make the whole file system read-only for this process and its children, except
    `writable_dir` and /dev/null; with ABI >= 4 deny TCP, with ABI >= 6 scope signals."""
    ctypes, libc = load_libc()
    c_long = ctypes.c_long

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    fs = LL_MODIFY_ABI1 | (LL_REFER if abi >= 2 else 0) | (LL_TRUNCATE if abi >= 3 else 0)
    net = (LL_NET_BIND_TCP | LL_NET_CONNECT_TCP) if abi >= 4 else 0
    scoped = (LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL) if abi >= 6 else 0
    size = 8 if abi < 4 else (16 if abi < 6 else 24)   # the struct grew with the ABI
    attr = RulesetAttr(fs, net, scoped)
    rfd = libc.syscall(c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr), c_long(size), c_long(0))
    if rfd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    try:
        rules = [(writable_dir, fs), (os.devnull, fs & (LL_WRITE_FILE | LL_TRUNCATE))]
        for path, allowed in rules:
            pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = PathBeneath(allowed, pfd)
                if libc.syscall(c_long(SYS_LANDLOCK_ADD_RULE), c_long(rfd),
                                c_long(LANDLOCK_RULE_PATH_BENEATH), ctypes.byref(rule), c_long(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(pfd)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(c_long(SYS_LANDLOCK_RESTRICT_SELF), c_long(rfd), c_long(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(rfd)


def drop_privileges(uid: int | None, keep_read_search: bool) -> None:
    """Drop every capability (keeping CAP_DAC_READ_SEARCH if asked) and switch to `uid`.

    Root without capabilities is still root for file ownership and RLIMIT_NPROC, hence the uid
    switch. CAP_DAC_READ_SEARCH is kept (also as an ambient capability, so a subprocess keeps
    it) because the Python running us may live under a 0700 directory such as /root/.pyenv.
    """
    ctypes, libc = load_libc()
    keep = {CAP_DAC_READ_SEARCH} if keep_read_search else set()
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
    except (OSError, ValueError):
        last_cap = 63
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    for cap in range(last_cap + 1):
        if cap not in keep:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)   # EINVAL for unknown caps: ignored
    if uid is not None:
        libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0)
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
    if libc.capset(ctypes.byref(Header(LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    for cap in keep:
        libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0)
    if uid is not None and (os.getuid(), os.geteuid()) != (uid, uid):
        raise OSError(f"still uid {os.getuid()}/{os.geteuid()} after setresuid({uid})")
    with open("/proc/self/status") as f:
        eff = next((ln.split()[1] for ln in f if ln.startswith("CapEff:")), None)
    if eff is not None and int(eff, 16) != mask:
        raise OSError(f"capabilities still {eff} after dropping them")



# World-writable folders given a fresh tmpfs in the program's mount namespace, so nothing it
# writes there is seen outside or outlives it (/dev/shm also backs Ray's object store).
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")


def mount_private_dirs(scratch: str, size_mb: int, uid: int | None) -> None:
    """A size-capped tmpfs on each of PRIVATE_DIRS that exists, then the scratch folder made
    again inside them when it lived there (the new mount hides the old one)."""
    ctypes, libc = load_libc()
    opts = f"size={int(size_mb)}m,nr_inodes=65536,mode=1777".encode()
    for d in PRIVATE_DIRS:
        real = os.path.realpath(d)
        if not os.path.isdir(real):
            continue
        if libc.mount(b"tmpfs", real.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0:
            raise OSError(ctypes.get_errno(), f"mount tmpfs on {real} failed")
    if not os.path.isdir(scratch):
        os.makedirs(scratch, mode=0o700)
        if uid is not None:
            os.chown(scratch, uid, uid)


def mount_private_tmpfs(path: str, size_mb: int, uid: int | None) -> None:
    """Mount a size-capped tmpfs on the scratch folder inside our own mount namespace."""
    ctypes, libc = load_libc()
    owner = uid if uid is not None else os.getuid()
    opts = f"size={int(size_mb)}m,nr_inodes=65536,mode=0700,uid={owner},gid={owner}".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) != 0:
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {path} failed")



def set_rlimits(lim: dict, nproc: int | None) -> None:
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


