"""The driver at scale, with stand-in replicas (bench/stand_in.py: no model, a fixed sleep per
batch): a config error raised in an actor stops the run at once; a broken replica is replaced;
a run waits for the GPU node it needs; code is scored only where the scoring resource is; the
store's summaries are computed without Python rows; progress lines show without a terminal."""

from __future__ import annotations

import dataclasses
import io
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from rich.console import Console  # noqa: E402

from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, RunConfig  # noqa: E402
from latentmas_ray.errors import ConfigError  # noqa: E402
from latentmas_ray.store.run_store import RunStore, summarize  # noqa: E402
from latentmas_ray.tasks.registry import load_task  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from bench.stand_in import StandInFactory  # noqa: E402


@pytest.fixture
def head_only():
    """A 2-CPU head (with the scoring resource) and no worker: tests add nodes."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                      "resources": {"scoring": 1}})
    ray.init(address=c.address, logging_level="error")
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def drive(tmp_path, make_factory, *, replicas=2, n=20, bs=2, on_event=None, **ex):
    cfg = RunConfig(task="arc_easy", max_samples=n, generate_bs=bs, output=str(tmp_path / "run"),
                    method=MethodConfig(method="baseline"),
                    execution=ExecutionConfig(ray=True, replicas=replicas, progress_every=0.5,
                                              **ex))
    task = load_task("arc_easy", max_samples=n)
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    events: list[tuple[str, dict]] = []

    def hook(kind, info):
        events.append((kind, info))
        if on_event:
            on_event(kind, info)

    from jobs.driver import run_on_ray
    buf = io.StringIO()
    try:
        run_on_ray(cfg, task, store, None, {}, console=Console(file=buf, width=200),
                   on_event=hook, factory=make_factory(cfg))
    finally:
        log = buf.getvalue()
    return store, events, log


@pytest.mark.ray
def test_config_error_in_an_actor_stops_the_run_without_retries(head_only, tmp_path):
    calls = tmp_path / "calls.txt"
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^prompt of 9999 tokens is longer than the engine"):
        drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.05, config_error=True,
                                                    calls_file=str(calls)),
              replicas=2, n=20, bs=2)
    attempts = calls.read_text().splitlines()
    # at most the batches in flight when the first error came back: 2 replicas x 2 slots
    assert 1 <= len(attempts) <= 4, attempts
    assert RunStore(tmp_path / "run").done_ids() == set()
    assert time.perf_counter() - t0 < 60


@pytest.mark.ray
def test_broken_replica_is_replaced_and_every_sample_is_correct(head_only, tmp_path):
    # 0.2 s per batch, 50 batches: long enough for the replacement to load and take work
    store, events, log = drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.2, broken={0}),
                               replicas=2, n=50, bs=1)
    table = store.read()
    assert sorted(table.column("id").to_pylist()) == sorted(
        s.id for s in load_task("arc_easy", max_samples=50).samples)
    assert all(table.column("correct").to_pylist()), log
    replaced = [info for kind, info in events if kind == "replica_replaced"]
    assert [r["replica"] for r in replaced] == [0], log
    assert any(kind == "replica_up" and info["replica"] == replaced[0]["by"]
               for kind, info in events), log
    batches_by = {info["replica"] for kind, info in events if kind == "batch"}
    assert replaced[0]["by"] in batches_by and 0 not in batches_by
    assert "gave up" not in log


@pytest.mark.ray
def test_run_waits_for_the_gpu_node_it_needs(head_only, tmp_path):
    """No GPU anywhere at the start; a GPU node joins 4 s later (its own `ray start` process,
    as an autoscaler's node would); the run waits for it, then runs on it."""
    import os
    import shutil
    import signal
    import subprocess

    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    started = {}

    def add_gpu_node():
        time.sleep(4)
        started["p"] = subprocess.Popen(
            [ray_cli, "start", "--address", head_only.address, "--num-cpus=1", "--num-gpus=1",
             "--block", "--disable-usage-stats"], start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    threading.Thread(target=add_gpu_node, daemon=True).start()
    try:
        store, events, log = drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.02, gpus=1.0),
                                   replicas=1, n=6, bs=2, autoscale=True, placement_timeout=120)
    finally:
        if "p" in started:
            os.killpg(started["p"].pid, signal.SIGTERM)
            started["p"].wait(timeout=60)
    assert "p" in started and next(kind for kind, _ in events) == "ready"
    assert len(store.done_ids()) == 6
    assert all(info["gpu_ids"] for kind, ev in events if kind == "ready"
               for info in ev["replicas"].values())


@pytest.mark.ray
def test_nothing_placeable_fails_clearly_after_the_timeout(head_only, tmp_path):
    with pytest.raises(ConfigError, match=r"no replica could be placed .* within 3 s"):
        drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.02, gpus=1.0), replicas=1, n=4,
              autoscale=True, placement_timeout=3)


@pytest.mark.ray
def test_code_scoring_runs_only_where_the_scoring_resource_is(head_only, tmp_path):
    """Scoring tasks ask for one unit of --scoring_resource: with the resource nowhere, a
    scoring probe waits; the same probe lands on the node that declares it; and a code run on
    a cluster without it fails before it starts."""
    from jobs.placement import check_scoring
    from jobs.driver import Driver

    probe = ray.remote(lambda: ray.get_runtime_context().get_node_id())
    node = head_only.add_node(num_cpus=2, resources={"elsewhere": 1})
    head_only.wait_for_nodes()
    opts = Driver.score_options("scoring_x")
    waiting = probe.options(**opts).remote()
    assert ray.wait([waiting], timeout=3)[0] == [], "no node has scoring_x: it must wait"
    scorer = head_only.add_node(num_cpus=1, resources={"scoring_x": 1})
    assert ray.get(waiting, timeout=60) == scorer.node_id != node.node_id
    assert Driver.score_options("any") == {}
    with pytest.raises(ConfigError, match="no node of here has it"):
        check_scoring("scoring_y", "here", autoscale=False)


@pytest.mark.ray
def test_progress_lines_without_a_terminal(head_only, tmp_path):
    store, events, log = drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.3), replicas=1,
                               n=12, bs=1)
    lines = [ln for ln in log.splitlines() if ln.startswith("progress ")]
    assert len(lines) >= 3, log
    assert lines[-1].startswith("progress 12/12 (100.0%)") and "replicas 1/1" in lines[-1]
    assert "samples/s ETA" in lines[0] and "acc " in lines[0]
    live = RunStore(tmp_path / "run").config_path.parent / "summary.json"
    import json
    assert json.loads(live.read_text())["progress"]["done"] == 12


def test_summaries_and_consolidation_stream(tmp_path):
    """store.summary() (streamed, Arrow compute) equals summarize() of the whole table; parts
    written out of order still consolidate into the task's order."""
    from bench.stand_in import row

    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="arc_easy").to_dict())
    samples = load_task("arc_easy", max_samples=10).samples
    store.append([row(s) for s in samples[6:]])
    store.append([{**row(s), "correct": False, "error": "x"} for s in samples[:3]])
    store.append([row(s) for s in samples[3:6]])
    assert store.counts() == (10, 7)
    store.consolidate(order=[s.id for s in samples], read_back=False)
    assert RunStore(tmp_path / "run").read().column("id").to_pylist() != []
    import pyarrow.parquet as pq
    merged = pq.read_table(tmp_path / "run" / "samples.parquet")
    assert merged.column("id").to_pylist() == [s.id for s in samples]
    assert store.summary(1.0) == summarize(merged, 1.0)
    assert store.summary()["errors"] == 3 and store.summary()["correct"] == 7


# ----- issue 24: load failures, hangs ------------------------------------------------------

def all_rows_once(store, n: int) -> None:
    """Every sample exactly once in the parts, each row the clean run's (stand-in rows are a
    function of the sample alone)."""
    from bench.stand_in import row

    import pyarrow.parquet as pq
    ids = [i for f in store.part_files() for i in pq.read_table(f).column("id").to_pylist()]
    samples = load_task("arc_easy", max_samples=n).samples
    assert sorted(ids) == sorted(s.id for s in samples), "every sample exactly once"
    want = {s.id: row(s) for s in samples}
    for r in store.read().to_pylist():
        w = want[r["id"]]
        assert {k: r[k] for k in ("prediction", "correct", "error")} == \
            {k: w[k] for k in ("prediction", "correct", "error")}
        assert [{k: a[k] for k in w["agents"][0]} for a in r["agents"]] == w["agents"]


@pytest.mark.ray
def test_a_load_failure_on_one_seat_does_not_stop_the_run(head_only, tmp_path):
    # 0.3 s per batch, 40 batches: long enough for the seat's second try to load and work
    store, events, log = drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.3, load_fail={0}),
                               replicas=2, n=40, bs=1)
    all_rows_once(store, 40)
    failed = [info for kind, info in events if kind == "load_failed"]
    assert [f["replica"] for f in failed] == [0], log
    assert "no model folder on this node" in failed[0]["error"]
    assert "replica 0 failed to load" in log and "a new placement in" in log
    assert any(kind == "replica_up" and info["replica"] >= 2 for kind, info in events), log


@pytest.mark.ray
def test_no_seat_can_load_is_one_line_naming_every_seat(head_only, tmp_path):
    from latentmas_ray.errors import LatentMASError

    with pytest.raises(LatentMASError) as err:
        drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.1, load_fail="all"), replicas=2, n=4)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("no replica could load on ")
    assert "seat 0: OSError: stand-in replica" in msg
    assert "seat 1: OSError: stand-in replica" in msg


@pytest.mark.ray
def test_a_hung_replica_is_replaced_and_its_batches_run_once_elsewhere(head_only, tmp_path):
    """Replica 0's process is SIGSTOPped mid-run (it neither answers nor dies): past the batch
    deadline it is killed and replaced, its batches requeued once, every sample written
    exactly once. Prints the time from the hang to its batches finishing elsewhere."""
    import os
    import signal

    state: dict = {}

    def hook(kind, info):
        now = time.perf_counter()
        if kind == "ready":
            state["pid"] = info["replicas"][0]["pid"]
        elif kind == "batch" and info["replica"] == 0 and "hung_at" not in state:
            os.kill(state["pid"], signal.SIGSTOP)
            state["hung_at"] = now
        elif kind == "replica_hung":
            state["requeued"] = set(info["requeued"])
            state["hung_event"] = info
        elif kind == "batch" and state.get("requeued") and set(info["ids"]) & state["requeued"]:
            state["requeued"] -= set(info["ids"])
            state["moved_at"] = now

    try:
        store, events, log = drive(tmp_path, lambda cfg: StandInFactory(cfg, 0.2), replicas=2,
                                   n=30, bs=1, batch_timeout=2.0, on_event=hook)
    finally:
        if "pid" in state:
            try:
                os.kill(state["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
    all_rows_once(store, 30)
    assert state["hung_event"]["replica"] == 0, log
    assert state["requeued"] == set(), "the hung replica's batches finished elsewhere"
    replaced = [info for kind, info in events if kind == "replica_replaced"]
    assert [r["replica"] for r in replaced] == [0] and "hung" in replaced[0]["error"], log
    assert "1 hung" in log
    print(f"\nhang -> its batches finished elsewhere: {state['moved_at'] - state['hung_at']:.1f} s "
          f"(--batch_timeout 2, batches of 0.2 s)")


DRIVER = """
import functools, sys
import jobs.evaluate as e
from bench.stand_in import StandInFactory
run = e.run_on_ray
e.run_on_ray = lambda cfg, *a, **k: run(cfg, *a, factory=StandInFactory(cfg, {latency}), **k)
sys.exit(e.main(sys.argv[1:]))
"""


def session_processes(sid: int) -> list[int]:
    """Processes of session `sid` still alive (the driver and whatever it started)."""
    import os

    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[3]) == sid:      # state, ppid, pgrp, session
            out.append(int(pid))
    return out


@pytest.mark.ray
def test_sigterm_stops_the_driver_cleanly_and_a_rerun_resumes(tmp_path):
    """SIGTERM (what `ray job stop` sends) to a driver mid-run: it exits within 10 s, leaves no
    process of its own (its local Ray included), summary.json says "stopped" with exactly the
    rows on disk; the same command then finishes the run, equal to a clean one."""
    import json
    import os
    import signal
    import subprocess

    import pyarrow.parquet as pq

    out = tmp_path / "run"
    n = 40
    args = ["--task", "arc_easy", "--method", "baseline", "--max_samples", str(n),
            "--generate_bs", "1", "--replicas", "2", "--output", str(out),
            "--progress_every", "1", "--torch_threads", "1"]
    env = dict(os.environ, PYTHONPATH=str(REPO), RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    p = subprocess.Popen([sys.executable, "-c", DRIVER.format(latency=0.5), *args], env=env,
                         cwd=REPO, start_new_session=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while len(list((out / "parts").glob("part-*.parquet"))) < 3:
            assert p.poll() is None and time.time() < deadline, p.stdout.read()[-3000:]
            time.sleep(0.2)
        t0 = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        log = p.communicate(timeout=60)[0]
        took = time.perf_counter() - t0
        left = session_processes(p.pid)
        while left and time.perf_counter() - t0 < 10:
            time.sleep(0.2)
            left = session_processes(p.pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    print(f"\nSIGTERM -> exit {took:.1f} s")
    assert took < 10, log[-3000:]
    assert p.returncode == 143 and "stopped: SIGTERM" in log, log[-3000:]
    assert left == [], f"processes left behind: {left}"
    rows = [i for f in (out / "parts").glob("part-*.parquet")
            for i in pq.read_table(f).column("id").to_pylist()]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["expected"] == n
    assert summary["samples"] == len(rows) and 3 <= len(rows) < n
    assert not (out / "driver.lock").exists()

    again = subprocess.run([sys.executable, "-c", DRIVER.format(latency=0.01), *args], env=env,
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(rows)} already done" in again.stderr
    store = RunStore(out)
    all_rows_once(store, n)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["samples"] == summary["expected"] == n
