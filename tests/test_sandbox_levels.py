"""A sandbox that fails closed and says what it enforces (issue 23, Build 5): --sandbox_level,
probes retried rather than cached as a weaker plan, private /tmp and /dev/shm, cgroup memory
limits over several processes, and every claim of the capability report checked by trying it."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import replace

import pytest

import latentmas_ray.sandbox.execute as ex
from latentmas_ray.sandbox import SandboxLimits, SandboxUnavailable, run_programs, sandbox_capabilities
from latentmas_ray.sandbox.capabilities import LEVELS, Plan, missing_for
from latentmas_ray.sandbox.confine import PRIVATE_DIRS
from latentmas_ray.sandbox.execute import execute, get_plan
from latentmas_ray.sandbox.limits import ExecResult

FAST = SandboxLimits(wall_s=20, cpu_s=10)


@pytest.fixture
def fresh_plan(monkeypatch):
    """get_plan probes again in this test (and the cache is restored after it)."""
    monkeypatch.setattr(ex, "_PLAN", None)
    monkeypatch.setattr(ex, "_PLAN_FULL", False)
    monkeypatch.setattr(ex, "_PLAN_NOTES", [])


def _failing_probes(monkeypatch, fails: int):
    """execute() with its first `fails` probe runs turned into failures; returns the count."""
    real, seen = ex.execute, {"n": 0}

    def execute(plan, program, limits, tests=None):
        if "probe.txt" in program:
            seen["n"] += 1
            if seen["n"] <= fails:
                return ExecResult(False, "timeout", None, "", "", 60.0, "wall time limit (60 s) exceeded")
        return real(plan, program, limits, tests)

    monkeypatch.setattr(ex, "execute", execute)
    return seen


def test_a_failed_probe_is_retried_not_cached_as_a_weaker_plan(monkeypatch, fresh_plan):
    seen = _failing_probes(monkeypatch, fails=1)
    plan = get_plan("strict")
    assert seen["n"] == 2 and not missing_for("strict", plan)   # the full plan, on its 2nd try
    assert ex._PLAN_FULL


def test_a_probe_that_keeps_failing_refuses_to_score(monkeypatch, fresh_plan):
    _failing_probes(monkeypatch, fails=10**6)
    with pytest.raises(SandboxUnavailable) as e:
        run_programs(["print(1)"], FAST, level="standard")
    msg = str(e.value)
    assert "--sandbox_level standard" in msg and "--sandbox_level rlimits-only" in msg
    assert "\n" not in msg
    assert ex._PLAN is None   # nothing weaker was cached for the rest of the process


def test_a_machine_without_namespaces_refuses_standard_and_accepts_rlimits_only(monkeypatch, fresh_plan):
    monkeypatch.setattr(ex, "full_plan", lambda notes: Plan())   # no unshare, no Landlock, no cgroups
    with pytest.raises(SandboxUnavailable, match="missing PID and network namespaces"):
        get_plan("standard")
    with pytest.raises(SandboxUnavailable, match="cgroup pids and memory"):
        get_plan("strict")
    assert get_plan("rlimits-only") == Plan()
    assert run_programs(["assert 1 + 1 == 2"], FAST, level="rlimits-only")[0].passed
    assert sandbox_capabilities("rlimits-only")["level"] == "rlimits-only"


def test_unknown_level_is_refused():
    with pytest.raises(ValueError, match="unknown sandbox level"):
        missing_for("paranoid", Plan())
    assert LEVELS == ("strict", "standard", "rlimits-only")


# ------------------------------------------------------------------------------------------
# private /tmp, /var/tmp, /dev/shm

def _leave_files(tag: str) -> str:
    return "\n".join([
        "import os",
        "written = []",
        f"for d in {list(PRIVATE_DIRS)!r}:",
        "    try:",
        f"        open(os.path.join(d, {tag!r}), 'w').write('left behind')",
        "        written.append(d)",
        "    except OSError:",
        "        pass",
        "print(written)",
    ]) + "\n"


@pytest.mark.parametrize("landlock", [True, False], ids=["as-probed", "without-landlock"])
def test_nothing_written_to_tmp_or_shm_outlives_the_program(landlock):
    plan = get_plan()
    if not plan.tmpfs:
        pytest.skip("no mount namespace here (the standard level refuses to score then)")
    if not landlock:
        plan = replace(plan, landlock=0)   # the tmpfs mounts alone must hold
    tag = f"lmr-left-{secrets.token_hex(6)}"
    r = execute(plan, _leave_files(tag), FAST)
    assert r.passed, r
    if not landlock:   # the writes happened, inside the program's own mounts
        assert "/tmp" in r.stdout and "/dev/shm" in r.stdout, r.stdout
    for d in PRIVATE_DIRS:
        assert not os.path.exists(os.path.join(d, tag)), f"the program left {d}/{tag}"


# ------------------------------------------------------------------------------------------
# cgroups: a memory limit over several processes

HOGS = """
import os, time
kids = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        block = bytearray(150 * 1024 * 1024)   # each child alone is under the per-process cap
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(5)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
"""


def test_several_processes_cannot_exceed_the_memory_limit_together():
    caps = sandbox_capabilities()
    if os.geteuid() != 0 or caps["cgroup_version"] == "none":
        pytest.skip("no cgroup memory controller for us here (not root, or none mounted)")
    r = execute(get_plan(), HOGS, SandboxLimits(wall_s=30, cpu_s=20, memory_mb=300))
    assert not r.passed, r
    alone = execute(get_plan(), HOGS.replace("range(4)", "range(1)"), SandboxLimits(wall_s=30, cpu_s=20, memory_mb=300))
    assert alone.passed, alone   # one such child fits: it is the sum that is refused


# ------------------------------------------------------------------------------------------
# the capability report tells the truth: each claim is tried

def _listening_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


def test_every_claim_of_the_capability_report_holds(tmp_path):
    caps = sandbox_capabilities()
    checks = 0
    if caps["writes_outside_scratch_blocked"]:
        tmp_path.chmod(0o777)
        target = tmp_path / "claimed-blocked.txt"
        r = ex.run_program(f"open({str(target)!r}, 'w').write('x')\n", FAST)
        assert not r.passed and not target.exists(), r
        checks += 1
    if caps["private_tmp_and_shm"]:
        tag = f"lmr-claim-{secrets.token_hex(6)}"
        assert ex.run_program(_leave_files(tag), FAST).passed
        assert not any(os.path.exists(os.path.join(d, tag)) for d in PRIVATE_DIRS)
        checks += 1
    if caps["network_blocked"] != "NOT blocked":
        server, port = _listening_port()
        try:
            r = ex.run_program(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)\n", FAST)
            assert not r.passed, r
        finally:
            server.close()
        checks += 1
    if caps["signals_outside_blocked"]:
        r = ex.run_program(f"import os\nos.kill({os.getpid()}, 0)\n", FAST)
        assert not r.passed, r
        checks += 1
    if caps["unprivileged_uid"] != "no":
        r = ex.run_program(f"import os\nassert os.getuid() == os.geteuid() == {caps['unprivileged_uid']}\n", FAST)
        assert r.passed, r
        checks += 1
    if caps["capabilities_dropped"]:
        r = ex.run_program("line = [l for l in open('/proc/self/status') if l.startswith('CapEff')][0]\n"
                           "assert int(line.split()[1], 16) & ~(1 << 2) == 0, line\n", FAST)
        assert r.passed, r
        checks += 1
    if caps["pid_namespace"]:
        r = ex.run_program(f"import os\nassert not os.path.exists('/proc/{os.getpid()}')\n", FAST)
        assert r.passed, r
        checks += 1
    if caps["cgroup_pids"]:
        bomb = "import os\nfor _ in range(200):\n    os.fork() or (__import__('time').sleep(3), os._exit(0))\n"
        r = ex.run_program(bomb, SandboxLimits(wall_s=20, cpu_s=10, max_procs=16))
        assert not r.passed, r
        checks += 1
    assert checks >= 1 or os.geteuid() != 0


# ------------------------------------------------------------------------------------------
# a run and `latentmas-ray score` refuse, one line, before any heavy work; the weaker level,
# when asked, is recorded in config.json, summary.json and the report's header

def _run_argv(tiny_model_dir, datasets_dir, out, *extra) -> list[str]:
    return ["run", "--model_name", tiny_model_dir, "--dtype", "float32", "--device", "cpu",
            "--task", "humanevalplus", "--data", str(datasets_dir / "humanevalplus.jsonl"),
            "--max_samples", "1", "--latent_steps", "1", "--max_new_tokens", "4",
            "--temperature", "0", "--output", str(out), *extra]


def test_a_run_refuses_code_without_its_isolation_and_records_a_weaker_level(
        monkeypatch, fresh_plan, tiny_model_dir, datasets_dir, tmp_path, capsys):
    import json

    from latentmas_ray.cli import main
    monkeypatch.setattr(ex, "full_plan", lambda notes: Plan())   # a machine without namespaces
    out = tmp_path / "run"
    assert main(_run_argv(tiny_model_dir, datasets_dir, out)) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert "--sandbox_level standard" in text and "--sandbox_level rlimits-only" in text, text
    assert not out.exists()   # refused before the model loaded and the run folder was made

    assert main(_run_argv(tiny_model_dir, datasets_dir, out, "--sandbox_level", "rlimits-only")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sandbox"]["level"] == "rlimits-only" and summary["sandbox"]["pid_namespace"] is False
    config = json.loads((out / "config.json").read_text())
    assert config["run"]["execution"]["sandbox_level"] == "rlimits-only"
    assert main(["report", str(out), "--output", str(tmp_path / "report")]) == 0
    header = (tmp_path / "report" / "report.md").read_text().split("## ")[0]
    assert "Code sandbox (--sandbox_level, what it enforced): run: rlimits-only (rlimits only)" in header


def test_score_command_refuses_and_accepts_the_weaker_level(monkeypatch, fresh_plan, datasets_dir,
                                                           tmp_path, capsys):
    import json

    from latentmas_ray.cli import main
    monkeypatch.setattr(ex, "full_plan", lambda notes: Plan())
    preds = tmp_path / "p.jsonl"
    preds.write_text(json.dumps({"id": "HumanEval/0", "completion": "```python\ndef f(): pass\n```"}) + "\n")
    argv = ["score", "--task", "humanevalplus", "--data", str(datasets_dir / "humanevalplus.jsonl"),
            "--predictions", str(preds)]
    assert main(argv) == 2
    assert "--sandbox_level rlimits-only" in "".join(capsys.readouterr())
    assert main(argv + ["--sandbox_level", "rlimits-only"]) == 0
    assert "level rlimits-only" in "".join(capsys.readouterr())


# ------------------------------------------------------------------------------------------
# cgroup v2 (this machine mounts v1 controllers; the v2 file protocol is checked on a folder)

def test_cgroup_v2_group_gets_memory_and_pids_limits_and_reports_oom(tmp_path):
    from latentmas_ray.sandbox.cgroups import V2, RunCgroups
    run = RunCgroups(((V2, str(tmp_path)),), SandboxLimits(memory_mb=300, max_procs=16))
    (group,) = run.dirs.values()
    read = lambda name: open(os.path.join(group, name)).read()   # noqa: E731
    assert read("memory.max") == str(300 * 1024 * 1024) and read("pids.max") == "16"
    assert read("memory.swap.max") == "0"
    assert run.limits("memory") and run.limits("pids")
    assert run.procs_files() == [os.path.join(group, "cgroup.procs")]
    open(os.path.join(group, "memory.events"), "w").write("low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")
    assert not run.oom_killed()
    open(os.path.join(group, "memory.events"), "w").write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert run.oom_killed()


def test_cgroup_v2_probe_needs_both_controllers(tmp_path):
    from latentmas_ray.sandbox.cgroups import probe_v2
    (tmp_path / "cgroup.controllers").write_text("cpu io\n")
    notes: list[str] = []
    assert probe_v2(notes, mounts=[str(tmp_path)], own="/") is None
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    assert probe_v2(notes, mounts=[str(tmp_path)], own="/") is None   # a plain folder: no knobs
    assert any("get no memory/pids limits" in n for n in notes), notes
