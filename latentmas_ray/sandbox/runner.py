"""The jail's runner: runs inside the sandbox as `python runner.py --sandbox-runner`.

Standard library only, no imports from latentmas_ray (the package is not importable in the
jail), and cheap to import. It loads confine.py (the restrictions) and, for a test run, the
harness (harness.py's source, sent in the header) BEFORE any untrusted code runs.

Protocol. stdin: one JSON header line, then the program (UTF-8). The runner forks: the parent
("supervisor", trusted code only, the PID namespace's init when there is one) waits for the
child and reports how it ended; the child applies every restriction, then runs the program.
Report pipe lines: "CHILD <pid>", "READY" (restrictions applied, untrusted code starts next),
"SETUP_ERROR <msg>", "TEST <i>" / "VALUE <i> <json>" / "DIGEST <i> <hex>" (the harness: test i
starts / its result), "FAIL <json>", "PASS <nonce>", and last "STATUS <json>" (exit/signal/cpu).
The program can write to the pipe too: only "PASS <the right nonce>" is trusted as "ran to the
end", and values are only ever the candidate's own answers (see the package docstring).
"""

from __future__ import annotations

import json
import os
import sys

RUNNER_FLAG = "--sandbox-runner"
PROGRAM_FILENAME = "<program>"       # what tracebacks and failure details name the program
HARNESS_FILENAME = "<harness>"


def _load_confine():
    """confine.py: a sibling module when imported, loaded by path when run as the jail's script."""
    if __package__:
        from . import confine
        return confine
    import importlib.util
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "confine.py")
    spec = importlib.util.spec_from_file_location("_lmr_confine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:
        pass   # the scorer stopped listening (timeout): nothing left to tell it

def runner_main() -> None:
    raw = sys.stdin.buffer.read()
    head, _, body = raw.partition(b"\n")
    cfg = json.loads(head)
    program = body.decode("utf-8", "surrogatepass")
    del raw, body
    rfd = int(cfg["report_fd"])
    confine = _load_confine()
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
            confine.load_libc()[1].prctl(confine.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)   # orphans come back to us
        if cfg["tmpfs_mb"]:
            confine.mount_private_dirs(cfg["scratch"], cfg["tmpfs_mb"], cfg["drop_uid"])
            confine.mount_private_tmpfs(cfg["scratch"], cfg["tmpfs_mb"], cfg["drop_uid"])
        os.chdir(cfg["scratch"])
    except BaseException as e:  # noqa: BLE001 - report any setup failure, never run the program
        write_all(rfd, f"SETUP_ERROR supervisor: {type(e).__name__}: {e}\n".encode())
        os._exit(3)
    pid = os.fork()
    if pid == 0:
        try:
            _child(cfg, program, rfd, confine)
        finally:
            os._exit(120)   # unreachable unless _child returns
    write_all(rfd, f"CHILD {pid}\n".encode())
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
    write_all(rfd, ("STATUS " + json.dumps(info) + "\n").encode())
    os._exit(0)


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


def _child(cfg: dict, program: str, rfd: int, confine) -> None:
    try:
        os.setsid()   # own session: killpg(0) hits only the program's group, never the runner
        for procs in cfg["cgroup_procs"]:
            with open(procs, "w") as f:
                f.write("0")   # "0" = the writing process
        confine.set_rlimits(cfg["limits"], cfg["nproc"])
        if cfg["landlock_abi"]:
            confine.landlock_restrict(cfg["landlock_abi"], cfg["scratch"])
        if cfg["drop_caps"]:
            confine.drop_privileges(cfg["drop_uid"], keep_read_search=cfg["drop_uid"] is not None)
        os.closerange(3, rfd)
        os.closerange(rfd + 1, 65536)
        check = _load_harness(cfg.pop("harness", None), rfd)
    except BaseException as e:  # noqa: BLE001
        write_all(rfd, f"SETUP_ERROR sandbox: {type(e).__name__}: {e}\n".encode())
        os._exit(121)
    nonce = cfg.pop("nonce")
    write_all(rfd, b"READY\n")
    _run_untrusted(program, nonce, rfd, check)


def _load_harness(harness: dict | None, rfd: int):
    """Run the harness source (trusted, before any untrusted code) in a namespace of its own;
    returns its check(env) for after the program, or None for a plain program run."""
    if not harness:
        return None
    import builtins
    ns = {"__name__": "_lmr_harness", "__builtins__": builtins}
    exec(compile(harness["source"], HARNESS_FILENAME, "exec", dont_inherit=True), ns)
    return ns["prepare"](harness["spec"], lambda line: write_all(rfd, (line + "\n").encode()))


def _run_untrusted(program: str, nonce: str, rfd: int, check) -> None:
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
        if check is not None:
            check(env)   # call the entry point on every test input, send the results out
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
        write_all(rfd, ("FAIL " + json.dumps(info) + "\n").encode())
        os._exit(1)
    _flush_std()
    write_all(rfd, f"PASS {nonce}\n".encode())
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
    runner_main()   # never returns
