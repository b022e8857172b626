"""The Ray driver on real local clusters, with the tiny random model.

- `ray job submit` to a head started and stopped by cluster/local_cluster.py (token auth on).
- A 4-node cluster (head + 3 workers with a fake GPU each, ray.cluster_utils), shared by the
  module: per-sample results equal the in-process run's (greedy, other batch size); code
  samples scored by CPU tasks; a killed actor, a removed node and a killed driver each end
  with every sample written exactly once; bad input fails before any sample runs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from rich.console import Console  # noqa: E402

from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, ModelConfig, RunConfig  # noqa: E402
from latentmas_ray.errors import ConfigError  # noqa: E402
from latentmas_ray.store.run_store import RunStore  # noqa: E402
from latentmas_ray.tasks.registry import load_task  # noqa: E402
from tiny_model import build_tiny_model_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MBPP = REPO / "tests" / "data" / "mbppplus_hf.jsonl"   # the shipped slice (tests/data)
N = 12                                   # samples in the fault tests
TIMING = {"seconds"}


def run_cfg(model_dir: str, out: Path, *, n: int = N, bs: int = 2, task: str = "arc_easy",
            data: str | None = None, method: str = "latent_mas") -> RunConfig:
    return RunConfig(task=task, data=data, max_samples=n, generate_bs=bs, output=str(out),
                     model=ModelConfig(name_or_path=model_dir, dtype="float32", device="cpu"),
                     method=MethodConfig(method=method, latent_steps=2, max_new_tokens=12,
                                         temperature=0))


def comparable(row: dict) -> dict:
    """A store row without its wall-clock fields."""
    out = {k: v for k, v in row.items() if k not in TIMING}
    out["agents"] = [{k: v for k, v in a.items() if k not in TIMING} for a in row["agents"] or []]
    return out


def part_ids(folder: Path) -> list[str]:
    """Every id in every part file: a sample written twice would show twice here."""
    return [i for f in sorted((folder / "parts").glob("part-*.parquet"))
            for i in pq.read_table(f).column("id").to_pylist()]


def ray_env(auth: str | None = None) -> dict[str, str]:
    """Environment of a driver subprocess. `auth` must match the cluster's: the head started by
    local_cluster.py uses tokens (RAY_AUTH_MODE=token); ray.cluster_utils.Cluster does not, and
    a driver sending tokens to it sees its actors die ("all references to the actor were
    removed"), so RAY_AUTH_MODE stays unset for it."""
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    if auth:
        env["RAY_AUTH_MODE"] = auth
    return env


def driver_cmd(model_dir: str, out: Path, *extra: str, n: int = N, bs: int = 2) -> list[str]:
    return [sys.executable, "-m", "jobs.evaluate", "--model_name", model_dir, "--task", "arc_easy",
            "--max_samples", str(n), "--generate_bs", str(bs), "--latent_steps", "2",
            "--max_new_tokens", "12", "--temperature", "0", "--dtype", "float32",
            "--device", "cpu", "--output", str(out), *extra]


@pytest.fixture(scope="module")
def model_dir() -> str:
    return build_tiny_model_dir()


@pytest.fixture(scope="module")
def reference(model_dir):
    """The in-process rows (one batch of all samples), by id."""
    from latentmas_ray.run.batch import Evaluator

    import torch

    cfg = run_cfg(model_dir, Path("unused"), n=N, bs=N)
    task = load_task("arc_easy", max_samples=N)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # as each replica (1 CPU slot); also fast on a busy machine
    try:
        rows = Evaluator(cfg, model_dir).run(task.samples)
    finally:
        torch.set_num_threads(threads)
    return {r["id"]: comparable(r) for r in rows}


# ----- ray job submit to a head started by cluster/local_cluster.py -------------------------

@pytest.mark.ray
def test_ray_job_submit_to_a_local_head(model_dir, reference, tmp_path):
    if shutil.which("ray", path=os.path.dirname(sys.executable)) is None and shutil.which("ray") is None:
        pytest.skip("no `ray` command")
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable)) or "ray"
    state = tmp_path / "cluster"
    env = ray_env("token")
    start = subprocess.run([sys.executable, str(REPO / "cluster" / "local_cluster.py"), "start",
                            "--workers", "1", "--auth", "token", "--state-dir", str(state)],
                           env=env, capture_output=True, text=True, timeout=240)
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        info = json.loads((state / "cluster.json").read_text())
        # the one line start prints to paste; after it `ray job ...` works as Ray prints it
        exports = [ln for ln in start.stdout.splitlines() if ln.startswith("export ")]
        assert len(exports) == 1, start.stdout
        pasted = dict(kv.split("=", 1) for kv in exports[0].split()[1:])
        assert pasted == {"RAY_ADDRESS": info["dashboard"], "RAY_AUTH_MODE": "token"}
        job_env = {**ray_env(), **pasted}
        out = tmp_path / "run"
        sub = subprocess.run([ray_cli, "job", "submit", "--working-dir", str(REPO), "--",
                              *driver_cmd(model_dir, out, "--replicas", "1", n=4)],
                             env=job_env, capture_output=True, text=True, timeout=300, cwd=REPO)
        assert sub.returncode == 0, sub.stdout[-4000:] + sub.stderr[-4000:]
        assert "succeeded" in sub.stdout + sub.stderr
        listed = subprocess.run([ray_cli, "job", "list"], env=job_env, capture_output=True,
                                text=True, timeout=120)
        assert listed.returncode == 0 and "SUCCEEDED" in listed.stdout, listed.stderr[-2000:]
    finally:
        stop = subprocess.run([sys.executable, str(REPO / "cluster" / "local_cluster.py"), "stop",
                               "--state-dir", str(state)], env=env, capture_output=True, text=True,
                              timeout=120)
    assert stop.returncode == 0 and "stopped" in stop.stdout
    assert not state.exists(), list(state.rglob("*"))     # stop removes what start created
    # The store the job wrote: config, parts, consolidated samples, summary.
    store = RunStore(out)
    assert store.config()["run"]["max_samples"] == 4
    rows = store.read().to_pylist()
    assert sorted(part_ids(out)) == sorted(r["id"] for r in rows) == sorted(list(reference)[:4])
    for r in rows:
        assert comparable(r) == reference[r["id"]]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 4 and summary["replicas"] == 1


# ----- a 4-node cluster for the rest of the module ------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from cluster.local_cluster import in_process_cluster

    with in_process_cluster(3, gpus_per_worker=1) as (c, workers):
        yield c, workers


def drive(cfg: RunConfig, *, replicas: int = 2, gpus: float | None = 1, on_event=None,
          address: str | None = None, task=None):
    from jobs.driver import run_on_ray

    cfg = dataclasses.replace(cfg, execution=ExecutionConfig(
        ray=True, replicas=replicas, num_gpus_per_replica=gpus, address=address))
    task = task or load_task(cfg.task, cfg.data, max_samples=cfg.max_samples)
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    buf = io.StringIO()
    events: list[tuple[str, dict]] = []

    def hook(kind, info):
        events.append((kind, info))
        if on_event:
            on_event(kind, info)

    wall = run_on_ray(cfg, task, store, cfg.model.name_or_path, {}, on_event=hook,
                      console=Console(file=buf, width=200))
    return store, events, buf.getvalue(), wall


@pytest.mark.ray
def test_sharded_run_equals_in_process_run(cluster, model_dir, reference, tmp_path):
    cfg = run_cfg(model_dir, tmp_path / "run", n=8, bs=3)   # other batches than the reference
    store, events, log, wall = drive(cfg)
    rows = store.read().to_pylist()
    assert sorted(part_ids(tmp_path / "run")) == sorted(list(reference)[:8])
    for r in rows:
        assert comparable(r) == reference[r["id"]], r["id"]
    ready = next(info for kind, info in events if kind == "ready")
    assert len({rep["node_id"] for rep in ready["replicas"].values()}) == 2   # spread out
    assert all(rep["gpu_ids"] for rep in ready["replicas"].values())         # fake GPU pinned
    assert {info["replica"] for kind, info in events if kind == "batch"} == {0, 1}
    assert wall > 0 and "2 replica(s) of 1 GPU" in log


@pytest.mark.ray
def test_code_samples_are_scored_by_cpu_tasks(cluster, model_dir, tmp_path):
    import torch

    from latentmas_ray.run.batch import Evaluator

    cfg = run_cfg(model_dir, tmp_path / "code", n=3, bs=2, task="mbppplus", data=str(MBPP),
                  method="baseline")
    task = load_task("mbppplus", str(MBPP), max_samples=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = {r["id"]: comparable(r) for r in Evaluator(cfg, model_dir).run(task.samples)}
    finally:
        torch.set_num_threads(threads)
    store, events, _, _ = drive(cfg, task=task)
    assert {comparable(r)["id"]: comparable(r) for r in store.read().to_pylist()} == want
    batches = [info for kind, info in events if kind == "batch"]
    assert batches and all(b["scored_by"] == "cpu_task" for b in batches)


@pytest.mark.ray
def test_killed_actor_loses_no_sample(cluster, model_dir, reference, tmp_path):
    killed = {}

    def kill_first_replica(kind, info):
        if kind == "ready":
            killed["pid"] = info["replicas"][0]["pid"]
        elif kind == "batch" and "done" not in killed:
            killed["done"] = True
            os.kill(killed["pid"], signal.SIGKILL)

    cfg = run_cfg(model_dir, tmp_path / "run", n=N, bs=1)
    store, events, log, _ = drive(cfg, on_event=kill_first_replica)
    ids = part_ids(tmp_path / "run")
    assert sorted(ids) == sorted(reference), "every sample exactly once"
    assert any(kind == "replica_down" and info["replica"] == 0 for kind, info in events), log
    for r in store.read().to_pylist():
        assert comparable(r) == reference[r["id"]]


@pytest.mark.ray
def test_killed_driver_resumes_without_recomputing(cluster, model_dir, reference, tmp_path):
    c, _ = cluster
    out = tmp_path / "run"
    env = ray_env()
    # A driver that SIGKILLs itself right after its second batch is written: no clean-up runs,
    # exactly as if the machine had killed it.
    killer = (
        "import os, signal, sys, functools, jobs.evaluate as e\n"
        "n = [0]\n"
        "def on_event(kind, info):\n"
        "    if kind == 'batch':\n"
        "        n[0] += 1\n"
        "        if n[0] == 2: os.kill(os.getpid(), signal.SIGKILL)\n"
        "e.run_on_ray = functools.partial(e.run_on_ray, on_event=on_event)\n"
        "sys.exit(e.main(sys.argv[1:]))\n")
    args = driver_cmd(model_dir, out, "--address", c.address, "--replicas", "2",
                      "--max_in_flight", "1", bs=1)[3:]
    first = subprocess.run([sys.executable, "-c", killer, *args], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    before = part_ids(out)
    assert 2 <= len(before) < N and len(set(before)) == len(before)

    second = subprocess.run([sys.executable, "-m", "jobs.evaluate", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"{len(before)} already done" in second.stderr
    # progress counts the whole run (not the samples left) and its accuracy is over the same
    # samples: the last line is the summary's figures
    lines = [ln for ln in second.stderr.splitlines() if ln.startswith("progress ")]
    assert lines and all(int(re.match(r"progress (\d+)/(\d+)", ln)[2]) == N for ln in lines)
    assert all(int(re.match(r"progress (\d+)/", ln)[1]) >= len(before) for ln in lines)
    summary = json.loads((out / "summary.json").read_text())
    assert lines[-1].startswith(f"progress {N}/{N} (100.0%)")
    assert f"acc {summary['accuracy']:.1%}" in lines[-1], (lines[-1], summary["accuracy"])
    after = part_ids(out)
    assert sorted(after) == sorted(reference), "each sample written exactly once"
    assert after[:len(before)] == before        # the first run's parts are untouched
    for r in RunStore(out).read().to_pylist():
        assert comparable(r) == reference[r["id"]]


# ----- bad input: one clear error each, before any sample runs ------------------------------

@pytest.mark.ray
def test_more_replicas_than_the_cluster_can_place(cluster, model_dir, tmp_path):
    cfg = run_cfg(model_dir, tmp_path / "run", n=4)
    with pytest.raises(ConfigError, match=r"cannot place 5 replicas of 1 CPU, 1 GPU each.*hold at most 3"):
        drive(cfg, replicas=5, gpus=1)
    assert part_ids(tmp_path / "run") == []
    assert ray.util.placement_group_table() == {} or all(
        pg["state"] == "REMOVED" for pg in ray.util.placement_group_table().values())


@pytest.mark.slow     # a driver process that imports Ray and torch (~12 s here); Ray never starts
def test_unreachable_address(model_dir, tmp_path):
    out = tmp_path / "run"
    t0 = time.perf_counter()
    p = subprocess.run(driver_cmd(model_dir, out, "--address", "127.0.0.1:1", n=2), env=ray_env(),
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "cannot reach the Ray cluster at 127.0.0.1:1" in p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists(), "checked before the run folder is made"
    assert time.perf_counter() - t0 < 60


@pytest.mark.ray
def test_gpu_request_on_a_cluster_without_gpus(model_dir, tmp_path):
    # No --address: the driver starts a local Ray in its own process; this machine has no GPU.
    out = tmp_path / "run"
    p = subprocess.run(driver_cmd(model_dir, out, "--num_gpus_per_replica", "1", n=2),
                       env=ray_env(), cwd=REPO, capture_output=True, text=True, timeout=180)
    assert p.returncode == 2, p.stderr
    assert "asks for GPUs, but a local Ray started in this process has none" in p.stderr
    assert "--num_gpus_per_replica 0" in p.stderr and "Traceback" not in p.stderr
    assert part_ids(out) == []


# Last: it takes a worker node away from the shared cluster.
@pytest.mark.ray
def test_removed_node_loses_no_sample(cluster, model_dir, reference, tmp_path):
    c, workers = cluster
    removed = {}

    def remove_first_replicas_node(kind, info):
        if kind == "ready":
            removed["node_id"] = info["replicas"][0]["node_id"]
        elif kind == "batch" and "done" not in removed:
            removed["done"] = True
            node = next(w for w in workers if w.node_id == removed["node_id"])
            c.remove_node(node)

    cfg = run_cfg(model_dir, tmp_path / "run", n=N, bs=1)
    store, events, log, _ = drive(cfg, on_event=remove_first_replicas_node)
    assert removed.get("done")
    assert sorted(part_ids(tmp_path / "run")) == sorted(reference), "every sample exactly once"
    assert any(kind == "replica_down" for kind, _ in events), log
    for r in store.read().to_pylist():
        assert comparable(r) == reference[r["id"]]


def test_address_and_placement_checks_without_a_cluster():
    from jobs.placement import check_address, placeable

    with pytest.raises(ConfigError, match="dashboard .* GCS address, e.g. head:6379"):
        check_address("http://head:8265")
    with pytest.raises(ConfigError, match="not host:port"):
        check_address("headnode")
    check_address("auto")
    nodes = [{"CPU": 2.0}, {"CPU": 1.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 4.0}]
    assert placeable(nodes, {"CPU": 1.0, "GPU": 1.0}) == 5
    assert placeable(nodes, {"CPU": 2.0}) == 1 + 0 + 4
    assert placeable(nodes, {"CPU": 1.0, "GPU": 0.5}) == 0 + 1 + 8
