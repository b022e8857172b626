"""K completions per question: LatentMAS with K=4 (one latent rollout + one judger prefill per
question, the memory forked 4 ways for decoding) against four K=1 runs, side by side in one
process on the same questions (issue 16's acceptance: model time <= 0.5x).

    python bench/bench_completions.py [--samples 6] [--k 4] [--latent_steps 4]
        [--max_new_tokens 64] [--repeats 2] [--threads 1] [--data ../shared/datasets/gsm8k.jsonl]

Model time = wall time of the method calls (the device synchronised), model loading excluded.
The K=1 runs use run seeds seed..seed+K-1 (four independent sampled runs); both arms are
interleaved per repeat so machine noise hits both. Also printed: generated tokens, so a
difference in sampled lengths is visible.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from latentmas_ray.spec.config import MethodConfig, ModelConfig
from latentmas_ray.engines.hf import HFEngine
from latentmas_ray.methods import get_method
from latentmas_ray.spec.models import resolve_model
from latentmas_ray.tasks.registry import load_task

HERE = Path(__file__).resolve().parent


def timed(engine, samples, cfg, seed):
    engine.sync()
    t0 = time.perf_counter()
    results = get_method("latent_mas")(engine, samples, cfg, run_seed=seed)
    engine.sync()
    return time.perf_counter() - t0, sum(r.agents[-1].generated_tokens for r in results), results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=6)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--latent_steps", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=str(HERE.parent.parent / "shared" / "datasets" / "gsm8k.jsonl"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = args.data if Path(args.data).is_file() else str(HERE.parent / "tests" / "data" / "gsm8k.jsonl")
    samples = load_task("gsm8k", data, max_samples=args.samples).samples
    engine = HFEngine.load(ModelConfig(), str(resolve_model(None)))
    common = dict(method="latent_mas", latent_steps=args.latent_steps,
                  max_new_tokens=args.max_new_tokens, temperature=args.temperature)
    one, many = MethodConfig(**common), MethodConfig(**common, num_return_sequences=args.k)
    timed(engine, samples[:1], one, 0)                                  # warm-up
    t_k, t_1, tok_k, tok_1 = [], [], [], []
    for _ in range(args.repeats):
        t, n, res_k = timed(engine, samples, many, args.seed)
        t_k.append(t)
        tok_k.append(n)
        total_t, total_n = 0.0, 0
        for j in range(args.k):
            t, n, _ = timed(engine, samples, one, args.seed + j)
            total_t += t
            total_n += n
        t_1.append(total_t)
        tok_1.append(total_n)
    mk, m1 = statistics.median(t_k), statistics.median(t_1)
    print(f"SmolLM2-135M, {len(samples)} GSM8K questions ({data}), m={args.latent_steps}, "
          f"{args.max_new_tokens} new tokens, T={args.temperature}, {args.threads} thread(s), "
          f"batch = all questions, median of {args.repeats}")
    print(f"K={args.k} in one run:   {mk:7.2f} s   judger tokens {statistics.median(tok_k):.0f}"
          f"   ({[round(x, 2) for x in t_k]})")
    print(f"{args.k} runs of K=1:     {m1:7.2f} s   judger tokens {statistics.median(tok_1):.0f}"
          f"   ({[round(x, 2) for x in t_1]})")
    print(f"ratio (K={args.k} / {args.k} x K=1): {mk / m1:.3f}   "
          f"per judger token: {(mk / statistics.median(tok_k)) / (m1 / statistics.median(tok_1)):.3f}")
    answers = {}
    for r in res_k:
        answers.setdefault(r.id, []).append(r.prediction[-40:].replace("\n", " "))
    print(f"distinct completions per question (last run): "
          f"{[len(set(v)) for v in answers.values()]}")


if __name__ == "__main__":
    main()
