"""The sandbox against hostile programs: each must be scored as not passed, and contained.

Most tests run with the isolation probed on this machine; the ones about leftover processes
also run with the namespaces switched off, so the fallback cleanup (subreaper, cgroup, token
scan) is exercised where the PID namespace would otherwise hide it.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import replace

import pytest

from latentmas_ray.sandbox import (ExecResult, SandboxLimits, run_program, run_programs,
                                   sandbox_capabilities)
from latentmas_ray.sandbox.execute import execute, get_plan

FAST = SandboxLimits(wall_s=5, cpu_s=5)


def _pids_matching(marker: str) -> list[int]:
    """Processes whose command line or name contains `marker`."""
    hits = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if marker in cmd or marker in comm:
            try:
                with open(f"/proc/{name}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                        continue   # a zombie is dead; its parent just has not reaped it yet
            except OSError:
                continue
            hits.append(int(name))
    return hits


def _assert_gone(marker: str) -> None:
    deadline = time.monotonic() + 2.0
    while True:
        left = _pids_matching(marker)
        if not left:
            return
        if time.monotonic() > deadline:
            for pid in left:   # do not leave them behind even though the test fails
                try:
                    os.kill(pid, 9)
                except OSError:
                    pass
            pytest.fail(f"processes survived the sandbox: {left}")
        time.sleep(0.05)


def _plans() -> list[tuple[str, object]]:
    best = get_plan()
    plans = [("probed", best)]
    if best.pidns:
        plans.append(("no-namespaces", replace(best, prefix=(), userns=False, tmpfs=False)))
    if best.pidns or best.cgroups:
        plans.append(("no-namespaces-no-cgroups",
                      replace(best, prefix=(), userns=False, tmpfs=False, cgroups=())))
    return plans


def _run(plan, program: str, limits: SandboxLimits = FAST) -> ExecResult:
    return execute(plan, program, limits)


# ------------------------------------------------------------------------------------------

def test_capabilities_are_reported():
    caps = sandbox_capabilities()
    for key in ("pid_namespace", "landlock", "network_blocked", "cgroup_pids", "notes",
                "leftover_processes_killed_by", "writes_outside_scratch_blocked"):
        assert key in caps
    assert all(isinstance(v, (bool, str)) for v in caps.values())
    assert sandbox_capabilities() is not caps and sandbox_capabilities() == caps   # cached probe


def test_correct_program_passes_and_numpy_imports():
    r = run_program("import numpy as np\n\ndef f(x):\n    return x + 1\n\nassert f(1) == 2\n"
                    "assert float(np.arange(4).sum()) == 6.0\nprint('done')\n", FAST)
    assert r.passed and r.status == "passed", r
    assert r.returncode == 0 and r.stdout == "done\n"


def test_failing_assertion_fails_with_a_useful_detail():
    r = run_program("def f(x):\n    return x\n\nassert f(1) == 2\n", FAST)
    assert not r.passed and r.status == "failed"
    assert r.detail == "AssertionError at line 4: assert f(1) == 2"
    assert "AssertionError" in r.stderr and "runner.py" not in r.stderr and "harness" not in r.stderr


def test_exception_message_is_in_the_detail():
    r = run_program("x = {}\nx['missing']\n", FAST)
    assert r.status == "failed" and r.detail.startswith("KeyError at line 2: 'missing'")


@pytest.mark.parametrize("early", [
    "import sys; sys.exit(0)",
    "import os; os._exit(0)",
    "raise SystemExit",
    "exit()",
    "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
])
def test_exiting_before_the_tests_is_not_a_pass(early):
    r = run_program(early + "\nassert False, 'the tests ran'\n", FAST)
    assert not r.passed and r.status in ("failed", "killed"), r
    assert "the tests ran" not in r.detail


def test_printed_or_forged_pass_lines_do_not_count():
    program = (
        "import os\nprint('PASS 0000')\n"
        "for fd in range(3, 64):\n"
        "    try:\n        os.write(fd, b'PASS ' + b'0' * 64 + b'\\n')\n"
        "    except OSError:\n        pass\n"
        "os._exit(0)\n")
    r = run_program(program, FAST)
    assert not r.passed and r.status == "failed", r


def test_spamming_the_report_pipe_does_not_hide_the_failure():
    program = ("import os\n"
               "for fd in range(3, 64):\n"
               "    try:\n        os.write(fd, b'READY\\nSTATUS {}\\nnoise\\n' * 3000)\n"
               "    except OSError:\n        pass\n"
               "assert False, 'real failure'\n")
    r = run_program(program, FAST)
    assert r.status == "failed" and "real failure" in r.detail, r


def test_main_guard_block_does_not_run():
    r = run_program("if __name__ == '__main__':\n    raise SystemExit(1)\nx = 1\n", FAST)
    assert r.passed, r


def test_stdin_is_empty():
    r = run_program("input()\n", FAST)
    assert r.status == "failed" and "EOFError" in r.detail


def test_infinite_loop_times_out_promptly():
    t = time.monotonic()
    r = run_program("while True:\n    pass\n", SandboxLimits(wall_s=2, cpu_s=30))
    assert r.status == "timeout" and not r.passed
    assert "wall-clock limit 2s" in r.detail
    assert time.monotonic() - t < 4


def test_cpu_limit():
    r = run_program("while True:\n    pass\n", SandboxLimits(wall_s=10, cpu_s=1))
    assert r.status == "timeout" and "CPU" in r.detail, r
    assert r.seconds < 5


@pytest.mark.parametrize("hog", [
    "x = bytearray(10 ** 10)\n",
    "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))\n",
])
def test_memory_hog_fails(hog):
    r = run_program(hog, SandboxLimits(wall_s=10, memory_mb=512))
    assert not r.passed and r.status in ("failed", "killed"), r
    assert r.seconds < 8


def test_file_size_limit():
    r = run_program("with open('big', 'wb') as f:\n    f.write(b'x' * (3 * 2 ** 20))\n",
                    SandboxLimits(wall_s=5, file_size_mb=1))
    assert not r.passed and ("File too large" in r.detail or "file-size" in r.detail), r


def test_huge_output_is_capped_and_does_not_hang():
    t = time.monotonic()
    r = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n",
                    SandboxLimits(wall_s=20, output_bytes=4096))
    assert r.status == "killed" and "output limit" in r.detail, r
    assert time.monotonic() - t < 10
    assert len(r.stdout) < 4096 + 100


def test_large_but_bounded_output_keeps_the_tail():
    r = run_program("print('a' * 100000)\nprint('the end')\n", SandboxLimits(wall_s=5, output_bytes=1000))
    assert r.passed
    assert r.stdout.startswith("[... ") and r.stdout.endswith("the end\n")
    assert len(r.stdout) < 1100


def test_parent_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("LMR_TEST_SECRET", "hunter2-secret")
    program = ("import os\n"
               "assert 'LMR_TEST_SECRET' not in os.environ\n"
               "assert b'hunter2' not in open('/proc/self/environ', 'rb').read()\n"
               "assert os.environ['PYTHONHASHSEED'] == '0'\n"
               "assert os.environ['HOME'] == os.getcwd()\n"
               "assert hash('abc') == hash('abc')\n")
    r = run_program(program, FAST)
    assert r.passed, r


def test_scratch_folder_is_fresh_and_removed():
    first = run_program("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\n", FAST)
    assert first.passed, first
    scratch = first.stdout.strip()
    assert not os.path.exists(scratch)
    second = run_program("import os\nassert not os.path.exists('left.txt')\nassert os.listdir('.') == []\n", FAST)
    assert second.passed, second


def test_writes_and_deletes_outside_scratch_are_blocked(tmp_path):
    if not sandbox_capabilities()["writes_outside_scratch_blocked"]:
        pytest.skip("this machine offers no write confinement (no Landlock, not root)")
    # World-writable, so only the sandbox (not file permissions) can stop the program.
    tmp_path.chmod(0o777)
    victim, doomed = tmp_path / "victim.txt", tmp_path / "doomed.txt"
    victim.write_text("original")
    doomed.write_text("keep me")
    for p in (victim, doomed):
        p.chmod(0o666)
    attacks = [
        f"open({str(victim)!r}, 'w').write('pwned')\n",
        f"open({str(victim)!r}, 'a').write('pwned')\n",
        f"import os\nos.remove({str(doomed)!r})\n",
        f"import os\nos.rename({str(doomed)!r}, {str(tmp_path / 'moved')!r})\n",
        f"import os\nos.symlink('/etc/passwd', {str(tmp_path / 'link')!r})\n",
        f"import os\nos.mkdir({str(tmp_path / 'newdir')!r})\n",
        f"import shutil\nshutil.rmtree({str(tmp_path)!r})\n",
    ]
    for attack in attacks:
        r = run_program(attack, FAST)
        assert not r.passed and r.status == "failed", (attack, r)
    assert victim.read_text() == "original" and doomed.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["doomed.txt", "victim.txt"]


def test_killing_the_parent_or_everyone_fails_and_the_scorer_survives():
    program = ("import os, signal\n"
               "for kill in (lambda: os.kill(os.getppid(), signal.SIGKILL),\n"
               "             lambda: os.kill(1, signal.SIGKILL),\n"
               "             lambda: os.kill(-1, signal.SIGKILL),\n"
               "             lambda: os.killpg(0, signal.SIGKILL)):\n"
               "    try:\n        kill()\n    except OSError:\n        pass\n"
               "raise SystemExit(0)\n")
    r = run_program(program, FAST)
    assert not r.passed and r.status in ("failed", "killed"), r
    assert run_program("assert 1 + 1 == 2\n", FAST).passed   # the machinery still works


def test_network_is_unreachable():
    if sandbox_capabilities()["network_blocked"].startswith("NOT"):
        pytest.skip("this machine offers no network isolation")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        port = listener.getsockname()[1]
        r = run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
                        "print('connected')\n", FAST)
        assert not r.passed and r.status == "failed", r
        assert "connected" not in r.stdout
        listener.settimeout(0.2)
        with pytest.raises(socket.timeout):
            listener.accept()


@pytest.mark.parametrize("plan_name,plan", _plans())
def test_fork_bomb_is_contained_and_cleaned_up(plan_name, plan):
    marker = "lmrb" + uuid.uuid4().hex[:8]   # a process name (15 chars max) its forks inherit
    program = ("import ctypes, os\n"
               f"ctypes.CDLL(None).prctl(15, {marker.encode()!r}, 0, 0, 0)\n"
               "while True:\n"
               "    try:\n        os.fork()\n    except OSError:\n        pass\n")
    limits = SandboxLimits(wall_s=3, cpu_s=10, max_procs=32)
    if os.geteuid() == 0 and not plan.cgroups and plan.drop_uid is None:
        pytest.skip("root without cgroups or a uid switch cannot limit processes")
    t = time.monotonic()
    r = _run(plan, program, limits)
    assert not r.passed and r.status in ("timeout", "failed", "killed"), r
    assert time.monotonic() - t < 10
    _assert_gone(marker)


@pytest.mark.parametrize("plan_name,plan", _plans())
@pytest.mark.parametrize("ending", ["normal", "timeout"])
def test_escaped_background_processes_are_killed(plan_name, plan, ending):
    # A setsid'd sleeper and a double-forked, setsid'd one with a cleared environment; the
    # program then either ends (passing) or hangs until the wall clock kills it.
    m1 = f"{9000 + uuid.uuid4().int % 999}.{uuid.uuid4().int % 10 ** 6}"
    m2 = f"{9000 + uuid.uuid4().int % 999}.{uuid.uuid4().int % 10 ** 6}"
    program = (
        "import os, subprocess, time\n"
        f"subprocess.Popen(['sleep', {m1!r}], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execve('/bin/sleep', ['sleep', {m2!r}], {{}})\n"
        "    os._exit(0)\n"
        "time.sleep(0.3)\n"
        + ("while True:\n    pass\n" if ending == "timeout" else ""))
    r = _run(plan, program, SandboxLimits(wall_s=2 if ending == "timeout" else 5))
    assert r.status == ("timeout" if ending == "timeout" else "passed"), r
    _assert_gone(m1)
    if plan.pidns or plan.cgroups or ending == "normal":
        _assert_gone(m2)
    else:   # escaped the session, cleared its token, and its runner was killed: a documented
        for pid in _pids_matching(m2):   # limit of the last fallback; do not leave it behind
            os.kill(pid, 9)


def test_run_programs_keeps_order_and_reports_progress():
    programs = ["assert True\n", "assert False\n", "x = 1\n", "raise ValueError('boom')\n"]
    done = []
    results = run_programs(programs, FAST, workers=2, progress=done.append)
    assert [r.status for r in results] == ["passed", "failed", "passed", "failed"]
    assert "ValueError at line 1: boom" == results[3].detail
    assert sum(done) == 4
    assert run_programs([], FAST) == []


def test_limits_are_validated():
    with pytest.raises(ValueError):
        SandboxLimits(wall_s=0)
    with pytest.raises(ValueError):
        SandboxLimits(memory_mb=10)


def test_a_broken_sandbox_is_an_error_not_a_pass():
    plan = replace(get_plan(), prefix=("/nonexistent/unshare",))
    r = execute(plan, "assert True\n", FAST)
    assert r.status == "error" and not r.passed, r
