"""`--placement disaggregated`: one actor per LatentMAS role, the working memory moving role to
role through the object store (actors/role_actor.py, jobs/disaggregated.py).

- Bad combinations fail with one ConfigError each. (The chain without Ray and the `auto` cost
  model are tests/test_role_chain.py, beside the core they test.)
- On a 4-node local cluster (head + 3 workers, one CPU slot each, so each role lands on its own
  node): tiny model with a role actor killed after the first batch (every sample once, tokens
  equal the colocated run's), the embeddings payload, and SmolLM2 on 4 ARC-Easy samples.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, ModelConfig, RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.tasks.registry import load_task

N = 8
TIMING = {"seconds", "hops"}


def run_cfg(model_dir, out="unused", *, n=N, bs=2, memory="full", latent_steps=2,
            max_new_tokens=12, method="latent_mas") -> RunConfig:
    return RunConfig(task="arc_easy", max_samples=n, generate_bs=bs, output=str(out),
                     model=ModelConfig(name_or_path=str(model_dir), dtype="float32", device="cpu"),
                     method=MethodConfig(method=method, latent_steps=latent_steps,
                                         max_new_tokens=max_new_tokens, temperature=0,
                                         memory=memory))


# ----- config checks (the one-process chain is tests/test_role_chain.py) ------------------

def test_bad_combinations(tmp_path, capsys):
    from latentmas_ray.cli import main

    def check_disaggregated(cfg, hop_payload, **kw):     # the run spec validates itself
        dataclasses.replace(cfg, execution=ExecutionConfig(
            ray=True, placement="disaggregated", hop_payload=hop_payload), **kw)

    with pytest.raises(ConfigError, match="--hop_payload embeds needs --memory full"):
        check_disaggregated(run_cfg("m", memory="last_agent"), "embeds")
    check_disaggregated(run_cfg("m", memory="last_agent"), "auto")      # auto falls back to kv
    with pytest.raises(ConfigError, match="runs latent_mas"):
        check_disaggregated(run_cfg("m", method="baseline"), "kv")
    cfg = run_cfg("m")
    with pytest.raises(ConfigError, match="--use_vllm"):
        check_disaggregated(cfg, "kv", use_vllm=True)
    for argv, message in [
        (["--placement", "disaggregated"], "add --ray"),
        (["--ray", "--placement", "disaggregated", "--method", "text_mas"], "runs latent_mas"),
        (["--ray", "--placement", "disaggregated", "--hop_payload", "embeds", "--memory",
          "latent_only"], "needs --memory full"),
    ]:
        assert main(["run", "--output", str(tmp_path / "out"), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()


# ----- a 4-node local cluster ----------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray")
    from cluster.local_cluster import in_process_cluster

    with in_process_cluster(3) as (c, _):
        yield c


def comparable(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in TIMING}
    out["agents"] = [{k: v for k, v in a.items() if k != "seconds"} for a in row["agents"] or []]
    return out


def reference_rows(cfg, model_dir, samples) -> dict[str, dict]:
    from latentmas_ray.run.batch import Evaluator

    return {r["id"]: comparable(r) for r in Evaluator(cfg, model_dir).run(samples)}


def drive(cfg, *, hop_payload="kv", on_event=None):
    from rich.console import Console

    from jobs.driver import run_on_ray
    from latentmas_ray.store.run_store import RunStore

    cfg = dataclasses.replace(cfg, execution=ExecutionConfig(
        ray=True, placement="disaggregated", num_gpus_per_replica=0, torch_threads=1,
        hop_payload=hop_payload))

    task = load_task(cfg.task, cfg.data, max_samples=cfg.max_samples)
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    events: list[tuple[str, dict]] = []
    buf = io.StringIO()

    def hook(kind, info):
        events.append((kind, info))
        if on_event:
            on_event(kind, info)

    run_on_ray(cfg, task, store, cfg.model.name_or_path, {}, on_event=hook,
               console=Console(file=buf, width=200))
    return store, events, buf.getvalue()


def part_ids(folder: Path) -> list[str]:
    return [i for f in sorted((folder / "parts").glob("part-*.parquet"))
            for i in pq.read_table(f).column("id").to_pylist()]


@pytest.mark.ray
def test_killed_role_actor_loses_no_sample(cluster, tiny_model_dir, tmp_path):
    import ray

    n = 12          # batches of 1: the critic has work queued when it is killed
    cfg = run_cfg(tiny_model_dir, tmp_path / "run", n=n, bs=1)
    want = reference_rows(run_cfg(tiny_model_dir, n=n, bs=n), tiny_model_dir,
                          load_task("arc_easy", max_samples=n).samples)
    killed = {}

    def kill_critic(kind, info):
        if kind == "ready":
            killed["name"] = info["replicas"][0]["names"]["critic"]
        elif kind == "batch" and "done" not in killed:
            killed["done"] = True
            ray.kill(ray.get_actor(killed["name"]), no_restart=False)

    store, events, log = drive(cfg, on_event=kill_critic)
    assert killed.get("done")
    assert sorted(part_ids(tmp_path / "run")) == sorted(want), "every sample exactly once"
    rows = store.read().to_pylist()
    for r in rows:
        assert comparable(r) == want[r["id"]], r["id"]
        assert [(h["src"], h["dst"], h["payload"]) for h in r["hops"]] == [
            ("planner", "critic", "kv"), ("critic", "refiner", "kv"), ("refiner", "judger", "kv")]
    assert any(kind == "replica_down" for kind, _ in events), log
    assert any(kind == "replica_up" for kind, _ in events), log
    ready = next(info for kind, info in events if kind == "ready")
    nodes = {i["node_id"] for i in ready["replicas"][0]["roles"].values()}
    assert len(nodes) == 4, "one role per node (SPREAD)"
    assert any(kind == "role_stats" for kind, _ in events) and "busy" in log


@pytest.mark.ray
def test_embeds_payload_on_the_cluster(cluster, tiny_model_dir, tmp_path):
    cfg = run_cfg(tiny_model_dir, tmp_path / "run", n=4, bs=2)
    want = reference_rows(run_cfg(tiny_model_dir, n=4, bs=4), tiny_model_dir,
                          load_task("arc_easy", max_samples=4).samples)
    store, events, log = drive(cfg, hop_payload="embeds")
    rows = store.read().to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(want)
    for r in rows:      # token equality holds on the tiny model (the rebuild differs by rounding)
        assert comparable(r) == want[r["id"]], r["id"]
        assert [h["payload"] for h in r["hops"]] == ["embeds"] * 3


@pytest.mark.ray
def test_smollm2_disaggregated_equals_colocated(cluster, tmp_path):
    from latentmas_ray.spec.models import embedded_model_dir

    model_dir = str(embedded_model_dir())
    cfg = run_cfg(model_dir, tmp_path / "run", n=4, bs=2, max_new_tokens=16)
    want = reference_rows(run_cfg(model_dir, n=4, bs=4, max_new_tokens=16), model_dir,
                          load_task("arc_easy", max_samples=4).samples)
    store, _, log = drive(cfg)
    rows = store.read().to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(want)
    for r in rows:
        assert comparable(r) == want[r["id"]], r["id"]
        assert r["hops"][2]["bytes"] > r["hops"][0]["bytes"] > 0    # the memory grows


@pytest.mark.ray
def test_the_agents_file_sets_the_role_actors(cluster, tiny_model_dir, tmp_path):
    """--agents with three agents (one on a second checkpoint): three role actors, each
    loading its own model, and rows equal to the colocated run's."""
    import json

    from test_heterogeneous import second_model_dir

    other = second_model_dir()
    agents = [{"role": "scout", "prompt": "Scout the question: {question}"},
              {"role": "skeptic", "prompt": "Doubt everything about: {question}", "model": other},
              {"role": "decider", "prompt": "{question}\n{answer_format}"}]
    path = tmp_path / "agents.json"
    path.write_text(json.dumps(agents))

    def with_agents(c):
        return dataclasses.replace(c, method=dataclasses.replace(c.method, agents=str(path)))

    n = 4
    cfg = with_agents(run_cfg(tiny_model_dir, tmp_path / "run", n=n, bs=2))
    want = reference_rows(with_agents(run_cfg(tiny_model_dir, n=n, bs=n)), tiny_model_dir,
                          load_task("arc_easy", max_samples=n).samples)
    store, events, log = drive(cfg)
    rows = store.read().to_pylist()
    assert sorted(r["id"] for r in rows) == sorted(want)
    for r in rows:
        assert comparable(r) == want[r["id"]], r["id"]
        assert [a["role"] for a in r["agents"]] == ["scout", "skeptic", "decider"]
        assert r["agents"][1]["model"] == other
        assert [(h["src"], h["dst"]) for h in r["hops"]] == [("scout", "skeptic"),
                                                             ("skeptic", "decider")]
    ready = next(info for kind, info in events if kind == "ready")
    roles = ready["replicas"][0]["roles"]
    assert list(roles) == ["scout", "skeptic", "decider"]
    assert roles["skeptic"]["model_path"] == other
