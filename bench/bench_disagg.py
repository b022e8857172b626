"""Disaggregated LatentMAS (one actor per role) on a local 4-node Ray cluster, embedded SmolLM2.

    python bench/bench_disagg.py [--samples 12] [--generate_bs 2] [--max_new_tokens 16]
                                 [--latent_steps 4] [--model_name DIR] [--repeats 3]

Prints:
1. One hop, planner actor -> critic actor on another Ray node (two raylets on this machine:
   loopback TCP, a lower bound for a real network), one sample, at three prompt lengths: the
   KV cache (bytes, move to CPU + put + get, load) against the input embeddings (bytes, the
   same transfer, plus the receiver's re-prefill). Best of --repeats. Then what
   `--hop_payload auto` measures and picks.
2. A disaggregated run (kv payload): wall time, per-hop mean bytes and ms per sample from the
   store rows, and each role actor's busy fraction, over the window in which the pipeline was
   full (every role started, none finished) and over its whole run.
Timings include whatever else loads the machine (see `load` in the header).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402


def make_cfg(args, model_dir: str, out: Path):
    from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig

    return RunConfig(task="arc_easy", max_samples=args.samples, generate_bs=args.generate_bs,
                     output=str(out),
                     model=ModelConfig(name_or_path=model_dir, dtype="float32", device="cpu"),
                     method=MethodConfig(method="latent_mas", latent_steps=args.latent_steps,
                                         max_new_tokens=args.max_new_tokens, temperature=0))


def hop_bench(args, cfg, model_dir: str) -> None:
    import ray

    from actors.common import actor_options, remote_form
    from actors.role_actor import RoleWorker
    from latentmas_ray.methods.disaggregated import choose_payload
    from latentmas_ray.tasks.registry import load_task

    base = load_task("arc_easy", max_samples=1).samples[0]
    filler = " Consider each option carefully and explain which facts support it."
    cls = remote_form(RoleWorker)
    opts = actor_options(cpus=1, max_restarts=0)
    planner = cls.options(**opts, resources={"worker_0": 0.01}).remote(
        cfg, model_dir, {}, "planner", 1)
    critic = cls.options(**opts, resources={"worker_1": 0.01}).remote(
        cfg, model_dir, {}, "critic", 1)
    info = ray.get([planner.ready.remote(), critic.ready.remote()])
    assert info[0]["node_id"] != info[1]["node_id"]
    print(f"\n1. one hop planner -> critic (nodes {info[0]['node_id'][:8]} -> "
          f"{info[1]['node_id'][:8]}), one sample, m = {args.latent_steps}, best of {args.repeats}")
    print(f"   {'positions':>9s} | {'KV bytes':>10s} {'transfer':>9s} {'load':>7s} {'total':>8s} | "
          f"{'emb bytes':>10s} {'transfer':>9s} {'prefill':>8s} {'total':>8s} | winner")
    for reps in (0, 12, 60):
        sample = dataclasses.replace(base, question=base.question + filler * reps)
        row = {}
        for payload in ("kv", "embeds"):
            best = None
            for _ in range(args.repeats):
                m = ray.get(critic.measure_hop.remote(planner.step.remote([sample], payload)))
                if best is None or m["transfer_ms"] + m["rebuild_ms"] < best["transfer_ms"] + best["rebuild_ms"]:
                    best = m
            row[payload] = best
        k, e = row["kv"], row["embeds"]
        kt, et = k["transfer_ms"] + k["rebuild_ms"], e["transfer_ms"] + e["rebuild_ms"]
        print(f"   {k['positions']:9d} | {k['bytes'] / 1e6:7.2f} MB {k['transfer_ms']:6.1f} ms "
              f"{k['rebuild_ms']:4.1f} ms {kt:5.1f} ms | {e['bytes'] / 1e6:7.3f} MB "
              f"{e['transfer_ms']:6.1f} ms {e['rebuild_ms']:5.1f} ms {et:5.1f} ms | "
              f"{'kv' if kt <= et else 'embeds'} ({max(kt, et) / max(min(kt, et), 1e-9):.1f}x)")
    profile = ray.get(planner.cost_profile.remote())
    nbytes = 16 << 20
    best = min(ray.get(critic.probe_receive.remote(planner.probe_send.remote(nbytes)))["ms"]
               for _ in range(3))
    bpm = nbytes / best
    choice = choose_payload(profile["kv"], profile["embeds"], profile["prefill_ms_per_pos"], bpm)
    breakeven = (profile["kv"] - profile["embeds"]) / profile["prefill_ms_per_pos"] / 1e3
    print(f"   per position: KV {profile['kv']:,} B, embeddings {profile['embeds']:,} B "
          f"({profile['kv'] / profile['embeds']:.0f}x); prefill {profile['prefill_ms_per_pos']:.3f} "
          f"ms/position; link {bpm / 1e3:.0f} MB/s (16 MB probe)")
    print(f"   --hop_payload auto -> {choice} (re-prefill pays only below "
          f"{breakeven:.0f} MB/s on this engine)")
    for h in (planner, critic):
        ray.kill(h)


def pipeline_bench(args, cfg) -> None:
    from rich.console import Console

    from jobs.driver import run_on_ray
    from latentmas_ray.spec.config import ExecutionConfig
    from latentmas_ray.store.run_store import RunStore
    from latentmas_ray.tasks.registry import load_task

    task = load_task("arc_easy", max_samples=args.samples)
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    events = []
    buf = io.StringIO()
    cfg = dataclasses.replace(cfg, execution=ExecutionConfig(
        ray=True, placement="disaggregated", num_gpus_per_replica=0, torch_threads=1,
        hop_payload="kv"))
    wall = run_on_ray(cfg, task, store, cfg.model.name_or_path, {},
                      on_event=lambda k, i: events.append((k, i)),
                      console=Console(file=buf, width=200))
    rows = store.read().to_pylist()
    print(f"\n2. disaggregated run, kv payload: {len(rows)} samples, batches of "
          f"{cfg.generate_bs}, m = {cfg.method.latent_steps}, {cfg.method.max_new_tokens} new "
          f"tokens: {wall:.1f} s, {len(rows) / wall:.2f} samples/s")
    hops: dict[str, list] = {}
    for r in rows:
        for h in r["hops"]:
            hops.setdefault(f"{h['src']} -> {h['dst']}", []).append((h["bytes"], h["ms"]))
    for k, v in hops.items():
        print(f"   hop {k:20s} {sum(b for b, _ in v) / len(v) / 1e6:6.2f} MB/sample "
              f"{sum(m for _, m in v) / len(v):6.1f} ms/sample")
    stats = next((i for k, i in events if k == "role_stats"), {})
    for pipe, st in stats.items():
        busy = st["busy"]
        window = next(iter(busy.values()))["window_s"] if busy else 0
        print(f"   busy, pipeline full ({window:.1f} s window) / whole run:")
        for role, b in busy.items():
            print(f"     {role:8s} {b['steady']:5.0%} / {b['overall']:5.0%}  "
                  f"({b['calls']} calls, {b['busy_s']:.1f} s busy)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=12)
    p.add_argument("--generate_bs", type=int, default=2)
    p.add_argument("--max_new_tokens", type=int, default=16)
    p.add_argument("--latent_steps", type=int, default=4)
    p.add_argument("--model_name", default=None, help="default: the embedded SmolLM2-135M")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip", default="", help="comma list of parts to skip: 1,2")
    args = p.parse_args()
    skip = set(args.skip.split(","))

    import torch
    from cluster.local_cluster import in_process_cluster

    from latentmas_ray.spec.models import resolve_model

    torch.set_num_threads(1)
    model_dir = str(resolve_model(args.model_name))
    print(hardware())
    print(f"model {model_dir}; cluster: head + 3 worker nodes, 1 CPU slot each, 1 torch thread "
          "per role actor")
    with in_process_cluster(3):
        cfg = make_cfg(args, model_dir, Path(tempfile.mkdtemp(prefix="bench-disagg-")) / "run")
        if "1" not in skip:
            hop_bench(args, cfg, model_dir)
            time.sleep(1.0)
        if "2" not in skip:
            pipeline_bench(args, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
