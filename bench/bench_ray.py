"""What Ray costs and what it buys, on this machine, with the embedded SmolLM2-135M.

    python bench/bench_ray.py [--samples 8] [--max_new_tokens 32] [--latent_steps 4]
                              [--model_name DIR] [--repeats 2]

Prints:
1. The same samples in process vs through Ray on one replica, same torch threads (goal: ratio
   <= 1.05). Both exclude model loading and cluster start: the in-process time is the batch
   loop (generate + score + store append); the Ray time is run_on_ray's sampling loop.
2. One vs two replicas with one torch thread each (goal on a 2-core machine: >= 1.8x).
3. Object-store time and bytes for one sample's LatentMAS working memory: the full KV cache at
   the judger's start vs the judger's input as embeddings (its prompt's token embeddings plus
   the 3*m latent vectors), moved between actors on two different Ray nodes (two raylets on
   this machine, so over loopback TCP: a lower bound for a real network).
Timings are the best of --repeats runs; other load on the machine (see `load` in the header)
inflates them.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import hardware  # noqa: E402


def make_cfg(args, model_dir: str, out: Path, bs: int):
    from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig

    return RunConfig(task="arc_easy", max_samples=args.samples, generate_bs=bs, output=str(out),
                     model=ModelConfig(name_or_path=model_dir, dtype="float32", device="cpu"),
                     method=MethodConfig(method="latent_mas", latent_steps=args.latent_steps,
                                         max_new_tokens=args.max_new_tokens, temperature=0))


def in_process(args, model_dir, task, threads: int) -> tuple[float, list[dict]]:
    import torch

    from latentmas_ray.run.batch import Evaluator
    from latentmas_ray.store.run_store import RunStore

    torch.set_num_threads(threads)
    best, rows = float("inf"), []
    ev = None
    for _ in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="bench-inproc-"))
        cfg = make_cfg(args, model_dir, out, args.generate_bs)
        ev = ev or Evaluator(cfg, model_dir)
        store = RunStore(out)
        store.open(cfg.to_dict())
        t0 = time.perf_counter()
        rows = []
        for i in range(0, len(task.samples), cfg.generate_bs):
            batch_rows = ev.run(task.samples[i:i + cfg.generate_bs])
            store.append(batch_rows)
            rows += batch_rows
        best = min(best, time.perf_counter() - t0)
    return best, rows


def through_ray(args, model_dir, task, replicas: int, threads: int, bs: int) -> tuple[float, list]:
    from rich.console import Console

    from jobs.driver import run_on_ray
    from latentmas_ray.spec.config import ExecutionConfig
    from latentmas_ray.store.run_store import RunStore

    best, rows = float("inf"), []
    for _ in range(args.repeats):
        out = Path(tempfile.mkdtemp(prefix="bench-ray-"))
        cfg = dataclasses.replace(make_cfg(args, model_dir, out, bs), execution=ExecutionConfig(
            ray=True, replicas=replicas, num_gpus_per_replica=0, torch_threads=threads))
        store = RunStore(out)
        store.open(cfg.to_dict())
        wall = run_on_ray(cfg, task, store, model_dir, {}, console=Console(file=io.StringIO()))
        best = min(best, wall)
        rows = store.read().to_pylist()
    return best, rows


def same_results(a: list[dict], b: list[dict]) -> bool:
    strip = lambda r: (r["id"], r["prediction"], [tuple(x["output_ids"]) for x in r["agents"]])  # noqa: E731
    return sorted(map(strip, a)) == sorted(map(strip, b))


# ----- object store: KV cache vs embeddings ----------------------------------------------------

def one_sample_payloads(model_dir: str, question: str, kind: str, steps: int):
    """(kv_state, embeddings) for one sample at the judger's start, from the real engine."""
    import torch

    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.latent.rollout import run_latent_agent
    from latentmas_ray.prompts import AGENT_ROLES, build_messages

    engine = HFEngine.load(ModelConfig(dtype="float32", device="cpu"), model_dir)
    realign = engine.realigner(False)
    latents: list[torch.Tensor] = []

    def recording(h):
        e = realign(h)
        latents.append(e.detach()[0])
        return e

    def ids_for(role):
        return [engine.tokenize(engine.render(build_messages("latent_mas", "sequential", role, kind,
                                                             question, "", None)))]

    kv = engine.new_memory(1)
    for role in AGENT_ROLES[:-1]:
        ids, mask = engine.pad_left(ids_for(role))
        run_latent_agent(engine, kv, ids, mask, steps, recording)
    judger_ids, _ = engine.pad_left(ids_for("judger"))
    with torch.no_grad():
        judger_emb = engine.model.get_input_embeddings()(judger_ids)[0]         # [Tj, D]
    embeddings = torch.cat([judger_emb, torch.stack(latents)]).contiguous()    # [Tj + 3m, D]
    state = kv.to_state("cpu")
    cfg = engine.model.config
    return state, embeddings, kv.length, judger_ids.shape[1], cfg


def tensor_bytes(obj) -> int:
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(x) for x in obj)
    if isinstance(obj, dict):
        return sum(tensor_bytes(x) for x in obj.values())
    return 0


def object_store_bench(args, model_dir: str, question: str, kind: str) -> None:
    import ray
    from cluster.local_cluster import in_process_cluster

    state, emb, kv_len, judger_len, mcfg = one_sample_payloads(model_dir, question, kind,
                                                               args.latent_steps)
    payloads = {"KV cache (judger start)": state, "embeddings (judger prompt + latents)": emb}
    print(f"\n3. object store, one sample: {kv_len} cache columns (3 agents' prompts + "
          f"{3 * args.latent_steps} latent steps), judger prompt {judger_len} tokens, "
          f"model {mcfg.num_hidden_layers} layers x {mcfg.num_key_value_heads} kv heads x "
          f"{getattr(mcfg, 'head_dim', mcfg.hidden_size // mcfg.num_attention_heads)} dims, fp32")

    with in_process_cluster(2):     # nodes worker_0 (a) and worker_1 (b)
        @ray.remote(num_cpus=0)
        class Holder:
            def __init__(self):
                self.obj = None

            def make(self, blob):          # deserialises the payload on node a
                self.obj = pickle.loads(blob)
                return True

            def give(self):                # returns it: stored in node a's object store
                return self.obj

        @ray.remote(num_cpus=0)
        class Taker:
            def take(self, obj):           # the argument is fetched from node a to node b
                return tensor_bytes(obj)

        a = Holder.options(resources={"worker_0": 0.01}).remote()
        b = Taker.options(resources={"worker_1": 0.01}).remote()
        print(f"   {'payload':38s} {'tensor bytes':>13s} {'serialised':>11s} "
              f"{'node a -> node b (median)':>26s}")
        for name, obj in payloads.items():
            blob = pickle.dumps(obj, protocol=5)
            ray.get(a.make.remote(blob))
            times = []
            for _ in range(7):
                ref = a.give.remote()
                ray.wait([ref], fetch_local=False)          # produced on node a
                t0 = time.perf_counter()
                n = ray.get(b.take.remote(ref))             # moved to node b and deserialised
                times.append(time.perf_counter() - t0)
                del ref
            print(f"   {name:38s} {n / 1024:10.1f} KB {len(blob) / 1024:8.1f} KB "
                  f"{statistics.median(times) * 1e3:20.1f} ms")
        kv_b, emb_b = tensor_bytes(state), tensor_bytes(emb)
        print(f"   KV cache / embeddings: {kv_b / emb_b:.1f}x the bytes")
        per_tok = 2 * mcfg.num_hidden_layers * mcfg.num_key_value_heads * \
            getattr(mcfg, "head_dim", mcfg.hidden_size // mcfg.num_attention_heads) * 4
        print(f"   per cache column: {per_tok / 1024:.1f} KB here (fp32); Qwen3-14B in bf16 "
              f"(40 layers x 8 kv heads x 128 dims x 2 x 2 bytes): 160 KB, so a "
              f"{kv_len}-column memory would be {kv_len * 160 / 1024:.1f} MB vs "
              f"{(judger_len + 3 * args.latent_steps) * 5120 * 2 / 1024:.0f} KB of embeddings "
              f"(hidden 5120, computed, not measured)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--generate_bs", type=int, default=2)
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--latent_steps", type=int, default=4)
    p.add_argument("--model_name", default=None, help="default: the embedded SmolLM2-135M")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of both sides of part 1 (default 1: with two threads on a "
                        "2-core machine, any other load makes torch's thread pool stall)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip", default="", help="comma list of parts to skip: 1,2,3")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))

    import ray

    from latentmas_ray.spec.models import resolve_model
    from latentmas_ray.tasks.registry import load_task

    model_dir = str(resolve_model(args.model_name))
    task = load_task("arc_easy", max_samples=args.samples)
    threads = args.threads
    print(f"bench_ray: {hardware()}, ray {ray.__version__}")
    print(f"model {Path(model_dir).name}; latent_mas on {len(task.samples)} arc_easy samples, "
          f"latent_steps {args.latent_steps}, max_new_tokens {args.max_new_tokens}, greedy, "
          f"generate_bs {args.generate_bs}; best of {args.repeats}")

    if not ({"1", "2"} <= skip):
        t = time.perf_counter()
        ray.init(address="local", num_cpus=(os.cpu_count() or 1) + 2, include_dashboard=False,
                 logging_level="error")
        print(f"(local Ray started in {time.perf_counter() - t:.1f} s; not counted below)")
    try:
        if "1" not in skip:
            t_in, rows_in = in_process(args, model_dir, task, threads)
            t_ray, rows_ray = through_ray(args, model_dir, task, 1, threads, args.generate_bs)
            print(f"\n1. in process vs Ray, 1 replica, {threads} torch thread(s): "
                  f"{t_in:.2f} s vs {t_ray:.2f} s -> ratio {t_ray / t_in:.3f} (goal <= 1.05); "
                  f"same results: {same_results(rows_in, rows_ray)}")
        if "2" not in skip:
            t1, rows1 = through_ray(args, model_dir, task, 1, 1, args.generate_bs)
            t2, rows2 = through_ray(args, model_dir, task, 2, 1, args.generate_bs)
            print(f"\n2. Ray, 1 vs 2 replicas, 1 torch thread each: {t1:.2f} s vs {t2:.2f} s -> "
                  f"speed-up {t1 / t2:.2f}x (goal >= 1.8x); {len(task.samples) / t1:.2f} vs "
                  f"{len(task.samples) / t2:.2f} samples/s; same results: "
                  f"{same_results(rows1, rows2)}")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    if "3" not in skip:
        s = task.samples[0]
        object_store_bench(args, model_dir, s.question, s.kind)
    return 0


if __name__ == "__main__":
    sys.exit(main())
