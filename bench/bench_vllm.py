"""HF-only LatentMAS vs the hybrid (HF latent agents + vLLM judger) on the same samples.

    python bench/bench_vllm.py [--samples 20] [--max_new_tokens 64] [--latent_steps 4]
                               [--generate_bs 10] [--model_name DIR] [--dtype float32]
                               [--skip_ray] [--skip_text]

Prints, for each setting: samples/s, generated (judger) tokens/s, bytes shipped per sample
(the judger's input embeddings: what crosses from the HF actor to the vLLM actor) and the
HF/vLLM time split, plus how many judger outputs equal the HF-only ones (greedy).

Settings:
1. HF only, in process: the latent agents and the judger on the HF engine.
2. Hybrid, in process: HF engine and vLLM engine (its EngineCore is a child process), phases
   back to back (no overlap).
3. Contention: the HF latent phase alone vs while vLLM decodes another batch at the same time
   (both engines of one process busy at once), to see what overlapping costs on this machine.
4. Hybrid on Ray, pipelined: one HF actor + one vLLM actor, two batches in flight, so the HF
   actor runs batch k+1 while vLLM decodes batch k; with the cores split (HF 1 torch thread,
   vLLM's OpenMP bound to the other core) and with the defaults.
(--skip_text off) 5. Baseline on HF vs on vLLM, for the text methods' speed.
(--streaming) vLLM kept full (issue 14): occupancy and throughput of the old design (batch
   forms, a barrier per batch) vs the new (requests streamed per sample) for the three methods,
   and the whole-process acceptance figures; see bench/vllm_streaming.py.

Without CUDA this runs on the CPU and says so; with a GPU the same script runs there.
Startup (model load, vLLM engine start, Ray start) is excluded from every rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, hardware  # noqa: E402
import vllm_streaming  # noqa: E402


def batches(samples, bs):
    return [samples[i:i + bs] for i in range(0, len(samples), bs)]


def line(name, n, wall, tokens, shipped, hf_s, vllm_s, same=None) -> dict:
    row = dict(name=name, sps=n / wall, tps=tokens / wall, kib=shipped / n / 1024 if shipped else 0.0,
               hf=hf_s, vllm=vllm_s, wall=wall, same=same)
    split = f"HF {hf_s:6.1f} s / vLLM {vllm_s:6.1f} s"
    print(f"  {name:44s} {row['sps']:6.3f} samples/s  {row['tps']:7.1f} tok/s  "
          f"{row['kib']:7.0f} KiB/sample  {split}  wall {wall:6.1f} s"
          + (f"  same as HF: {same}" if same is not None else ""), flush=True)
    return row


def judger_ids(results):
    return {r.id if hasattr(r, "id") else r["id"]:
            (r.agents[-1].output_ids if hasattr(r, "agents") else r["agents"][-1]["output_ids"])
            for r in results}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--latent_steps", type=int, default=4)
    ap.add_argument("--generate_bs", type=int, default=10)
    ap.add_argument("--model_name", default=None)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max_num_seqs", type=int, default=16)
    ap.add_argument("--skip_ray", action="store_true")
    ap.add_argument("--skip_text", action="store_true")
    ap.add_argument("--ray_only", action="store_true", help="only section 4 (no HF-only reference:"
                    " the agreement column then compares with the first Ray setting)")
    ap.add_argument("--ray_bs", type=int, default=None,
                    help="batch size on Ray (default --generate_bs); smaller batches = more "
                         "batches in the pipeline")
    ap.add_argument("--torch_threads", type=int, default=1,
                    help="HF torch threads in this process (default 1: on a 2-vCPU VM two threads "
                         "were erratic, 1-7x slower than one)")
    vllm_streaming.add_arguments(ap)
    args = ap.parse_args()
    if args.streaming:          # issue 14: old design vs new (bench/vllm_streaming.py)
        vllm_streaming.main(args)
        return

    import torch
    torch.set_num_threads(args.torch_threads)

    from latentmas_ray.spec.config import MethodConfig, ModelConfig, VLLMConfig
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.engines.hf_vllm_pair import HybridEngine
    from latentmas_ray.engines.vllm import VLLMEngine
    from latentmas_ray.methods import get_method, hybrid
    from latentmas_ray.spec.models import resolve_model
    from latentmas_ray.tasks.registry import load_task

    path = str(resolve_model(args.model_name))
    model_cfg = ModelConfig(name_or_path=path, dtype=args.dtype)
    cuda = torch.cuda.is_available()
    options = VLLMConfig(max_model_len=4096, max_num_seqs=args.max_num_seqs, cpu_kv_cache_gib=2)
    loaded = load_task("gsm8k", str(DATASETS / "gsm8k.jsonl"), max_samples=args.samples + 2).samples
    samples, warm = loaded[:args.samples], loaded[args.samples:]     # warm-ups never hit the
    #                                                                  prefix cache of the runs
    cfg = MethodConfig(method="latent_mas", latent_steps=args.latent_steps,
                       max_new_tokens=args.max_new_tokens, temperature=0.0)
    n = len(samples)
    print(f"hardware: {hardware()}")
    print(f"model: {Path(path).name} ({args.dtype}), GSM8K x {n}, latent_mas m={args.latent_steps} "
          f"realign off, greedy, max_new_tokens {args.max_new_tokens}, batches of "
          f"{args.generate_bs}; torch threads {torch.get_num_threads()}")
    table = []

    # ---- 1. HF only ---------------------------------------------------------------------
    if args.ray_only:
        run_ray(args, model_cfg, cfg, path, options, samples, warm, None, table, cuda)
        print_table(table)
        return
    hf = HFEngine.load(model_cfg, path)
    latent_mas = get_method("latent_mas")
    latent_mas(hf, warm, dataclassed(cfg, max_new_tokens=4), 42)          # warm-up
    t0 = time.perf_counter()
    hf_res = [r for b in batches(samples, args.generate_bs) for r in latent_mas(hf, b, cfg, 42)]
    wall = time.perf_counter() - t0
    tok = sum(r.generated_tokens for r in hf_res)
    lat_s = sum(a.seconds for r in hf_res for a in r.agents[:-1])
    jud_s = sum(r.agents[-1].seconds for r in hf_res)
    print("\nin process:")
    table.append(line("1. HF only (latent agents | judger on HF)", n, wall, tok, 0, lat_s + jud_s, 0.0))
    print(f"     HF split: latent agents {lat_s:.1f} s, judger decode {jud_s:.1f} s")
    ref = judger_ids(hf_res)

    # ---- 2. hybrid in process -----------------------------------------------------------
    t0 = time.perf_counter()
    vllm = VLLMEngine.load(model_cfg, path, options)
    print(f"  (vLLM engine start {time.perf_counter() - t0:.1f} s)")
    eng = HybridEngine(hf, vllm)
    hybrid.run_batch(eng, warm, dataclassed(cfg, max_new_tokens=4), 42)    # warm-up
    vllm.reset_prefix_cache()        # every timed vLLM run prefills from scratch
    stats: dict = {}
    t0 = time.perf_counter()
    hy_res = [r for b in batches(samples, args.generate_bs)
              for r in hybrid.run_batch(eng, b, cfg, 42, stats=stats)]
    wall = time.perf_counter() - t0
    got = judger_ids(hy_res)
    same = f"{sum(ref[k] == got[k] for k in ref)}/{n}"
    table.append(line("2. hybrid, one process, sequential", n, wall,
                      sum(r.generated_tokens for r in hy_res),
                      sum(s.shipped_bytes for s in stats.values()),
                      sum(s.hf_seconds for s in stats.values()),
                      sum(s.vllm_seconds for s in stats.values()), same))

    # ---- 3. contention: both engines busy at once ---------------------------------------
    b1, b2 = batches(samples, args.generate_bs)[:2] if n > args.generate_bs else (samples, samples)
    lb = hybrid.latent_phase(hf, b2, cfg, 42)
    t0 = time.perf_counter()
    hybrid.latent_phase(hf, b1, cfg, 42)
    hf_alone = time.perf_counter() - t0
    vllm.reset_prefix_cache()
    t0 = time.perf_counter()
    hybrid.judge_phase(vllm, lb, cfg, 42)
    v_alone = time.perf_counter() - t0
    box: dict = {}

    def decode():
        t = time.perf_counter()
        hybrid.judge_phase(vllm, lb, cfg, 42)
        box["v"] = time.perf_counter() - t
    th = threading.Thread(target=decode)
    vllm.reset_prefix_cache()
    t0 = time.perf_counter()
    th.start()
    hybrid.latent_phase(hf, b1, cfg, 42)
    hf_busy = time.perf_counter() - t0
    th.join()
    both = time.perf_counter() - t0
    print(f"\ncontention (batch of {len(b1)}; HF {torch.get_num_threads()} torch threads in this "
          f"process, vLLM EngineCore in its child):")
    print(f"  HF latent phase alone {hf_alone:.1f} s, vLLM judger decode alone {v_alone:.1f} s "
          f"(sum {hf_alone + v_alone:.1f} s)")
    print(f"  at the same time: HF {hf_busy:.1f} s, vLLM {box['v']:.1f} s, both done after "
          f"{both:.1f} s (overlap gain {(hf_alone + v_alone) / both:.2f}x)")
    vllm.close()
    del eng, vllm

    if not args.skip_ray:
        run_ray(args, model_cfg, cfg, path, options, samples, warm, ref, table, cuda)

    # ---- 5. baseline on HF vs vLLM --------------------------------------------------------
    if not args.skip_text:
        base = get_method("baseline")
        bcfg = dataclassed(cfg, method="baseline")
        t0 = time.perf_counter()
        hres = [r for b in batches(samples, args.generate_bs) for r in base(hf, b, bcfg, 42)]
        hw = time.perf_counter() - t0
        vllm = VLLMEngine.load(model_cfg, path, options)
        base(vllm, warm, dataclassed(bcfg, max_new_tokens=4), 42)
        t0 = time.perf_counter()
        vres = [r for b in batches(samples, args.generate_bs) for r in base(vllm, b, bcfg, 42)]
        vw = time.perf_counter() - t0
        vllm.close()
        ref_b = judger_ids(hres)
        same = f"{sum(ref_b[k] == v for k, v in judger_ids(vres).items())}/{n}"
        print("\nbaseline (text only):")
        table.append(line("5a. baseline on HF", n, hw, sum(r.generated_tokens for r in hres), 0, hw, 0.0))
        table.append(line("5b. baseline on vLLM", n, vw, sum(r.generated_tokens for r in vres), 0,
                          0.0, vw, same))

    print_table(table)


def print_table(table) -> None:
    print("\n| setting | samples/s | generated tok/s | KiB shipped / sample | HF s | vLLM s | "
          "judger tokens = HF |")
    print("|---|---|---|---|---|---|---|")
    for r in table:
        print(f"| {r['name']} | {r['sps']:.3f} | {r['tps']:.1f} | {r['kib']:.0f} | {r['hf']:.1f} | "
              f"{r['vllm']:.1f} | {r['same'] or '-'} |")


def run_ray(args, model_cfg, cfg, path, options, samples, warm, ref, table, cuda) -> None:
    """Section 4: one HF actor + one vLLM actor, pipelined, per thread setting."""
    import ray

    from actors.vllm_actor import start_hybrid_replica
    from latentmas_ray.spec.config import ExecutionConfig, RunConfig

    n = len(samples)
    bs = args.ray_bs or args.generate_bs
    ray.init(address="local", num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False,
             logging_level="WARNING")
    run_cfg = RunConfig(task="gsm8k", seed=42, generate_bs=args.generate_bs, use_vllm=True,
                        model=model_cfg, method=cfg, execution=ExecutionConfig(vllm=options))
    cores = os.cpu_count() or 1
    half = max(1, cores // 2)
    settings = [  # vLLM binds its OpenMP threads to the first half, HF runs on the rest
        (f"4a. Ray pipelined, cores split (vLLM 0-{half - 1}, HF {half}-{cores - 1})",
         dict(hf_threads=max(1, cores - half), hf_cpu_affinity=list(range(half, cores)),
              vllm_cpu_bind=f"0-{half - 1}" if half > 1 else "0")),
        (f"4b. Ray pipelined, shared cores (both on 0-{cores - 1})",
         dict(hf_threads=cores, vllm_cpu_bind=f"0-{cores - 1}"))]
    if cuda:
        settings = [("4. Ray pipelined, GPU 0.5 + 0.5", dict(hf_gpus=0.5, vllm_gpus=0.5))]
    print(f"\nRay (one HF actor + one vLLM actor, batches of {bs}, 2 batches in flight):")
    if ref is None:
        print("  (--ray_only: no HF-only run, so 'same as HF' compares with the first setting)")
    for name, kw in settings:
        t0 = time.perf_counter()
        rep = start_hybrid_replica(run_cfg, path, {}, **kw)
        info = ray.get(rep.ready.remote())
        start_s = time.perf_counter() - t0
        ray.get(rep.run.remote(warm))                                   # warm-up
        t0 = time.perf_counter()
        rows = run_pipelined([rep], samples, bs, max_in_flight=2)
        wall = time.perf_counter() - t0
        got = judger_ids(rows)
        if ref is None:
            ref = got
        same = f"{sum(ref[k] == got[k] for k in ref)}/{n}"
        # HF actor time = the latent agents' seconds; vLLM's = the judger's (input assembly on
        # HF is a few ms of it); bytes = the hf -> vllm hop of each row
        table.append(line(name, n, wall, sum(r["generated_tokens"] for r in rows),
                          sum(h["bytes"] for r in rows for h in r["hops"]),
                          sum(a["seconds"] for r in rows for a in r["agents"][:-1]),
                          sum(r["agents"][-1]["seconds"] for r in rows), same))
        hop_ms = [h["ms"] for r in rows for h in r["hops"]]
        print(f"     hf -> vllm transfer: {sum(hop_ms) / len(hop_ms):.2f} ms per sample (put + get)")
        print(f"     (actors ready in {start_s:.1f} s; HF torch threads "
              f"{info.get('torch_threads')}, vLLM bind {kw.get('vllm_cpu_bind') or 'auto'}; "
              f"busy time HF + vLLM {table[-1]['hf'] + table[-1]['vllm']:.1f} s in "
              f"{wall:.1f} s wall)")
        rep.kill()
        time.sleep(2)
    ray.shutdown()


def run_pipelined(replicas: list, samples: list, batch_size: int,
                  max_in_flight: int = 2, on_batch=None) -> list[dict]:
    """This bench's harness: batches over the replicas, at most `max_in_flight` per replica,
    rows in sample order (no fault handling; the project's driver is jobs/driver.py)."""
    import ray

    batches = [list(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
    queue = list(enumerate(batches))
    inflight: dict = {}
    load = [0] * len(replicas)
    out: dict[int, list[dict]] = {}
    while queue or inflight:
        for r, rep in enumerate(replicas):
            while queue and load[r] < max_in_flight:
                k, batch = queue.pop(0)
                inflight[rep.run.remote(batch)] = (k, r)
                load[r] += 1
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            k, r = inflight.pop(ref)
            load[r] -= 1
            out[k] = ray.get(ref)
            if on_batch:
                on_batch(k, out[k])
    return [row for k in sorted(out) for row in out[k]]


def dataclassed(cfg, **kw):
    import dataclasses
    return dataclasses.replace(cfg, **kw)


if __name__ == "__main__":   # required: vLLM spawns its EngineCore process
    main()
