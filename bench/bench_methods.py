"""Baseline vs TextMAS vs LatentMAS on the embedded SmolLM2, on the same samples.

    python bench/bench_methods.py [--samples 20] [--max_new_tokens 256] [--latent_steps 4]

Prints, per task and method: accuracy, generated tokens per sample, wall time per sample, and
the LatentMAS/TextMAS ratios; then batched vs unbatched samples/s, and the peak memory of the
README's demo run. Goals on a 2-core CPU: LatentMAS generates <= 25% of TextMAS's tokens and
runs >= 3x faster; the demo run peaks at <= 4 GiB.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, REPO, hardware  # noqa: E402


def evaluate(evaluator, samples, bs: int):
    rows, start = [], time.perf_counter()
    for i in range(0, len(samples), bs):
        rows += evaluator.run(samples[i:i + bs])
    return rows, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--tasks", nargs="+", default=["gsm8k", "arc_easy"])
    ap.add_argument("--methods", nargs="+", default=["baseline", "text_mas", "latent_mas"])
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--latent_steps", type=int, default=4)
    ap.add_argument("--generate_bs", type=int, default=10)
    ap.add_argument("--batch_check", type=int, default=6, help="samples for batched vs unbatched")
    ap.add_argument("--skip_demo", action="store_true")
    args = ap.parse_args()

    from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.run.batch import Evaluator
    from latentmas_ray.spec.models import embedded_model_dir
    from latentmas_ray.tasks.registry import TASKS, load_task

    print(f"hardware: {hardware()}")
    print(f"model: SmolLM2-135M-Instruct fp32, greedy, max_new_tokens {args.max_new_tokens}, "
          f"latent_steps {args.latent_steps}, generate_bs {args.generate_bs}, {args.samples} samples")
    path = embedded_model_dir()
    engine = HFEngine.load(ModelConfig(), str(path))

    def evaluator_for(task: str, method: str) -> Evaluator:
        cfg = RunConfig(task=task, seed=42, generate_bs=args.generate_bs, model=ModelConfig(),
                        method=MethodConfig(method=method, latent_steps=args.latent_steps,
                                            max_new_tokens=args.max_new_tokens, temperature=0.0))
        return Evaluator(cfg, path, engine=engine)

    table = []
    for task in args.tasks:
        samples = load_task(task, str(DATASETS / TASKS[task].local_file),
                            max_samples=args.samples).samples
        for method in args.methods:
            rows, wall = evaluate(evaluator_for(task, method), samples, args.generate_bs)
            n = len(rows)
            table.append((task, method, sum(r["correct"] for r in rows) / n,
                          sum(r["generated_tokens"] for r in rows) / n, wall / n))
            print(f"  {task:9s} {method:10s} acc {table[-1][2]:6.1%}  tokens/sample "
                  f"{table[-1][3]:7.1f}  s/sample {table[-1][4]:6.2f}", flush=True)

    print("\n| task | method | accuracy | generated tokens / sample | wall s / sample |")
    print("|---|---|---|---|---|")
    for task, method, acc, tok, sec in table:
        print(f"| {task} | {method} | {acc:.1%} | {tok:.1f} | {sec:.2f} |")
    print("\n| task | LatentMAS/TextMAS tokens (goal <= 0.25) | TextMAS/LatentMAS time (goal >= 3x) |")
    print("|---|---|---|")
    for task in args.tasks:
        by = {m: (tok, sec) for t, m, _, tok, sec in table if t == task}
        if "latent_mas" in by and "text_mas" in by:
            (lt, ls), (tt, ts) = by["latent_mas"], by["text_mas"]
            print(f"| {task} | {lt / max(tt, 1e-9):.3f} | {ts / max(ls, 1e-9):.2f}x |")

    # batched vs unbatched: same samples, identical greedy tokens, different throughput
    samples = load_task("arc_easy", str(DATASETS / "arc_easy.jsonl"),
                        max_samples=args.batch_check).samples
    print(f"\nbatched vs unbatched ({len(samples)} ARC-Easy samples):")
    for method in args.methods:
        ev = evaluator_for("arc_easy", method)
        one, t1 = evaluate(ev, samples, 1)
        many, tb = evaluate(ev, samples, len(samples))
        same = all(a["agents"][-1]["output_ids"] == b["agents"][-1]["output_ids"]
                   for a, b in zip(one, many))
        print(f"  {method:10s} bs=1 {len(samples) / t1:6.3f} samples/s   bs={len(samples)} "
              f"{len(samples) / tb:6.3f} samples/s   speed-up {t1 / tb:5.2f}x   "
              f"identical tokens: {same}", flush=True)

    if not args.skip_demo:
        with tempfile.TemporaryDirectory() as out:
            cmd = [str(REPO / "scripts" / "demo.sh"), "--output", out]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        print(f"\ndemo run (scripts/demo.sh): {wall:.1f} s, peak RSS {peak_kib / 2**20:.2f} GiB "
              "(goal <= 4 GiB)")


if __name__ == "__main__":
    main()
