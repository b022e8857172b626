"""A sweep on a local Ray cluster with the tiny random model: 2 x 2 (latent_steps x
latent_space_realign) plus the baseline on 2 replicas loads the model exactly once per replica
and every point's rows equal the point run alone; the baseline runs once; a SIGKILLed sweep
driver, rerun, finishes every point with nothing recomputed."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from rich.console import Console  # noqa: E402

from latentmas_ray.run.batch import Evaluator  # noqa: E402
from latentmas_ray.spec.config import RunConfig  # noqa: E402
from latentmas_ray.store.run_store import RunStore  # noqa: E402
from latentmas_ray.tasks.registry import load_task  # noqa: E402
from test_ray_driver import comparable, part_ids  # noqa: E402 (rows without timings; ids in parts)
from tiny_model import build_tiny_model_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N = 6
GRID = ["--grid", "method=baseline,latent_mas", "--grid", "latent_steps=1,2",
        "--grid", "latent_space_realign=false,true"]


def sweep_args(model_dir: str, out: Path, address: str) -> list[str]:
    return ["--model_name", model_dir, "--dtype", "float32", "--device", "cpu",
            "--task", "arc_easy", "--max_samples", str(N), "--generate_bs", "2",
            "--max_new_tokens", "8", "--temperature", "0", "--torch_threads", "1",
            "--num_gpus_per_replica", "0", "--replicas", "2", "--max_in_flight", "1",
            "--address", address, "--output", str(out), *GRID]


@pytest.fixture(scope="module")
def cluster():
    from cluster.local_cluster import in_process_cluster

    with in_process_cluster(2) as (c, workers):
        yield c


@pytest.fixture(scope="module")
def model_dir() -> str:
    return build_tiny_model_dir()


def alone(model_dir: str, run_folder: Path) -> dict[str, dict]:
    """The point's rows run alone in this process (one batch of all samples)."""
    import torch

    cfg = RunConfig.from_dict(json.loads((run_folder / "config.json").read_text())["run"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = Evaluator(cfg, model_dir).run(load_task("arc_easy", max_samples=N).samples)
    finally:
        torch.set_num_threads(threads)
    return {r["id"]: comparable(r) for r in rows}


@pytest.mark.ray
def test_sweep_on_two_replicas_loads_once_each(cluster, model_dir, tmp_path):
    import jobs.sweep as js
    from jobs.sweep import build_parser, run_from_args

    events = []
    real = js.run_sweep_on_ray
    js.run_sweep_on_ray = lambda *a, **kw: real(*a, **kw, on_event=lambda k, i: events.append((k, i)))
    buf = io.StringIO()
    try:
        args = build_parser().parse_args(sweep_args(model_dir, tmp_path / "sweep", cluster.address))
        assert run_from_args(args, Console(file=buf, width=200), ray=True) == 0, buf.getvalue()
    finally:
        js.run_sweep_on_ray = real
    log = buf.getvalue()
    ready = next(info for kind, info in events if kind == "ready")
    assert len(ready["replicas"]) == 2
    assert not [k for k, _ in events if k in ("replica_replaced", "replica_down")]
    (stats,) = [info["replicas"] for kind, info in events if kind == "replica_stats"]
    assert len(stats) == 2 and all(s["engines_loaded"] == 1 for s in stats), stats
    assert {s["pid"] for s in stats} == {r["pid"] for r in ready["replicas"].values()}
    assert sum(s["batches"] for s in stats) >= 5 * N // 2          # every point's batches
    assert all(len(s["points"]) >= 2 for s in stats)               # points interleaved
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert len(sweep["points"]) == 5                               # the baseline once
    assert "3 grid settings are the same run as another and run once" in log
    for p in sweep["points"]:
        folder = Path(p["path"])
        assert sorted(part_ids(folder)) == sorted(alone(model_dir, folder)), p["run"]
        got = {r["id"]: comparable(r) for r in RunStore(folder).read().to_pylist()}
        assert got == alone(model_dir, folder), p["run"]
        assert json.loads((folder / "summary.json").read_text())["samples"] == N
    assert log.count(" finished: ") == 5                          # a line per point
    progress = json.loads((tmp_path / "sweep" / "progress.json").read_text())
    assert progress["progress"]["done"] == 5 * N
    assert all(p["done"] == p["total"] == N for p in progress["points"].values())


@pytest.mark.ray
def test_killed_sweep_driver_resumes_every_point(cluster, model_dir, tmp_path):
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "tests")]))
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)
    out = tmp_path / "sweep"
    killer = (
        "import os, signal, sys, functools, jobs.sweep as s\n"
        "n = [0]\n"
        "def on_event(kind, info):\n"
        "    if kind == 'batch':\n"
        "        n[0] += 1\n"
        "        if n[0] == 4: os.kill(os.getpid(), signal.SIGKILL)\n"
        "s.run_sweep_on_ray = functools.partial(s.run_sweep_on_ray, on_event=on_event)\n"
        "sys.exit(s.main(sys.argv[1:]))\n")
    args = sweep_args(model_dir, out, cluster.address)
    first = subprocess.run([sys.executable, "-c", killer, *args], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=400)
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    sweep = json.loads((out / "sweep.json").read_text())
    folders = [Path(p["path"]) for p in sweep["points"]]
    before = {f: part_ids(f) for f in folders}
    written = sum(map(len, before.values()))
    assert 8 <= written < 5 * N and len([f for f in folders if before[f]]) >= 2

    second = subprocess.run([sys.executable, "-m", "jobs.sweep", *args], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=400)
    assert second.returncode == 0, second.stderr[-3000:]
    for f in folders:
        after = part_ids(f)
        assert sorted(after) == sorted(alone(model_dir, f)), f      # every sample exactly once
        assert after[:len(before[f])] == before[f]                  # the first session's parts
        got = {r["id"]: comparable(r) for r in RunStore(f).read().to_pylist()}
        assert got == alone(model_dir, f)
    assert json.loads((out / "selection.json").read_text())["chosen"] in {f.name for f in folders}
