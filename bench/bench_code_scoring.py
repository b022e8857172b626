"""Score every canonical solution of MBPP+ and HumanEval+ (both file formats) in the sandbox.

    python bench/bench_code_scoring.py [--workers N] [--limit N] [--data DIR]

For each of mbppplus.jsonl, mbppplus_hf.jsonl, humanevalplus.jsonl, humanevalplus_hf.jsonl:
scores the canonical solution of every row (all must pass) and one wrong solution per row (a
function with the right name that returns None; all must fail), then prints passed/failed
counts, wall time and sandbox runs per second, and the sandbox capabilities. Exits 1 if a
canonical solution fails or a wrong one passes, listing them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATASETS = REPO.parent / "shared" / "datasets"

from latentmas_ray.sandbox import SandboxLimits, sandbox_capabilities  # noqa: E402
from latentmas_ray.tasks.code_tasks import (parse_humanevalplus, parse_mbppplus,  # noqa: E402
                                            score_code_many)
from latentmas_ray.tasks.files import read_rows  # noqa: E402

FILES = [("mbppplus.jsonl", parse_mbppplus), ("mbppplus_hf.jsonl", parse_mbppplus),
         ("humanevalplus.jsonl", parse_humanevalplus), ("humanevalplus_hf.jsonl", parse_humanevalplus)]


def fenced(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code.strip(chr(10))}\n```\n"


def canonical_completion(sample) -> str:
    # HumanEval+ canonical solutions are function bodies: give the whole function, the usual
    # shape of a model's answer. (The tests also cover body-only answers.)
    code = sample.meta.get("prompt", "") + sample.meta["canonical_solution"]
    return fenced(code)


def wrong_completion(sample) -> str:
    return fenced(f"def {sample.entry_point}(*args, **kwargs):\n    return None\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=None, help="parallel sandboxes (default: CPUs)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N rows of each file")
    ap.add_argument("--data", type=Path, default=DATASETS, help="folder holding the four files")
    ap.add_argument("--wall_s", type=float, default=30.0, help="wall-clock limit per program")
    args = ap.parse_args()

    cpu = platform.processor() or "cpu"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    workers = args.workers or len(os.sched_getaffinity(0))
    print(f"machine: {cpu}, {os.cpu_count()} cores, uid {os.geteuid()}, Python {platform.python_version()}")
    t = time.monotonic()
    caps = sandbox_capabilities()
    print(f"sandbox probe: {time.monotonic() - t:.2f} s")
    print("sandbox capabilities:")
    for k, v in caps.items():
        print(f"  {k:32s} {v}")
    limits = SandboxLimits(wall_s=args.wall_s, cpu_s=args.wall_s)
    print(f"limits: {limits}; workers: {workers}\n")

    bad: list[str] = []
    total_runs, total_time = 0, 0.0
    header = f"{'file':24s} {'rows':>5s} {'canonical pass/fail':>20s} {'wrong pass/fail':>16s} {'wall s':>8s} {'runs/s':>7s}"
    print(header)
    print("-" * len(header))
    for name, parse in FILES:
        path = args.data / name
        if not path.exists():
            print(f"{name:24s} missing, skipped")
            continue
        rows, _ = read_rows(path)
        if args.limit:
            rows = rows[:args.limit]
        samples, _ = parse(rows, str(path), "error")
        completions = [canonical_completion(s) for s in samples] + [wrong_completion(s) for s in samples]
        t0 = time.monotonic()
        scores = score_code_many(completions, samples + samples, limits, workers=workers)
        dt = time.monotonic() - t0
        n = len(samples)
        canon, wrong = scores[:n], scores[n:]
        cp = sum(s.correct for s in canon)
        wp = sum(s.correct for s in wrong)
        total_runs += 2 * n
        total_time += dt
        print(f"{name:24s} {n:5d} {f'{cp}/{n - cp}':>20s} {f'{wp}/{n - wp}':>16s} {dt:8.1f} {2 * n / dt:7.1f}")
        for s, sc in zip(samples, canon):
            if not sc.correct:
                bad.append(f"{name} {s.id}: canonical solution FAILED: {sc.error}")
        for s, sc in zip(samples, wrong):
            if sc.correct:
                bad.append(f"{name} {s.id}: wrong solution PASSED")
    print("-" * len(header))
    if total_time:
        print(f"total: {total_runs} sandbox runs in {total_time:.1f} s ({total_runs / total_time:.1f} runs/s)")
    if bad:
        print(f"\n{len(bad)} problem(s):")
        for b in bad:
            print("  " + b)
        return 1
    print("\nall canonical solutions passed, all wrong solutions failed")
    print(json.dumps({"runs": total_runs, "seconds": round(total_time, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
