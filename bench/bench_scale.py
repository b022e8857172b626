"""The driver measured alone: N samples over R stand-in replicas (bench/stand_in.py: a fixed
sleep per batch, well-formed rows, no model) on a local Ray, in this process. Prints

    driver CPU ms/sample   this process's CPU time over the sampling loop / samples
    peak driver RSS        this process's maximum resident set (ru_maxrss)
    efficiency             throughput / (R x one replica's = generate_bs / latency)
    consolidate + report   samples.parquet rewritten and summary.json computed (streamed)

    python bench/bench_scale.py --samples 100000 --replicas 32 --latency 0.2 --generate_bs 20
    python bench/bench_scale.py --tiny --samples 5000      # the same with the tiny random model
                                                           # (jobs.evaluate --ray --replicas 2)
    python bench/bench_scale.py --samples 1000000 --compare 50000 --generate_bs 100 --k 4
                                                           # the driver's peak RSS at 1M vs 50k
    python bench/bench_scale.py --store --samples 1000000 --k 4 --compare 50000
                                                           # the run's end alone (below)

--store measures the end of a run at scale without a fleet: the parts a driver would have
written (one per --generate_bs samples, K rows each, stand-in rows) are written by a child
process, then a fresh child holding only the task's ids (as the driver does) consolidates
them and computes the summary; it reports its peak RSS and seconds. --compare N does the
same at N samples and prints the ratios (memory should not grow with the run).

--tiny runs `python -m jobs.evaluate` as a child on a synthetic arc_easy file of --samples
rows (baseline, 1 new token) and reports the child's peak RSS and time per sample.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, hardware  # noqa: E402

DEMO = REPO / "latentmas_ray" / "data" / "arc_easy_demo.jsonl"


def synthetic_arc(n: int, folder: Path) -> Path:
    """An arc_easy file of n rows (the demo's rows over and over; ids are line numbers)."""
    rows = DEMO.read_text().splitlines()
    path = folder / f"arc_easy_{n}.jsonl"
    with path.open("w") as f:
        for i in range(n):
            f.write(rows[i % len(rows)] + "\n")
    return path


def rss_mib(ru_maxrss_kib: int) -> float:
    return ru_maxrss_kib / 1024


def stand_in(args) -> dict:
    """The whole driver in this process, as `jobs.evaluate` runs it: the task loaded (kept on
    disk), the store opened, the sampling loop over stand-ins, then consolidation and summary;
    peak RSS is this process's maximum over all of it."""
    from rich.console import Console

    from bench.stand_in import StandInFactory
    from jobs.driver import run_on_ray
    from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, RunConfig
    from latentmas_ray.store.run_store import RunStore
    from latentmas_ray.tasks.registry import load_task

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    data = synthetic_arc(args.samples, tmp)
    k = args.k
    cfg = RunConfig(task="arc_easy", data=str(data), generate_bs=args.generate_bs,
                    output=str(tmp / "run"),
                    method=MethodConfig(method="baseline", num_return_sequences=k,
                                        temperature=0.7 if k > 1 else 0.0),
                    execution=ExecutionConfig(ray=True, replicas=args.replicas,
                                              max_in_flight=args.max_in_flight,
                                              progress_every=args.progress_every))
    t_load = time.perf_counter()
    task = load_task("arc_easy", str(data))
    load_s = time.perf_counter() - t_load
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    factory = StandInFactory(cfg, args.latency, cpus=args.cpus_per_replica)
    marks = {}

    def on_event(kind, info):
        if kind == "ready":
            marks["cpu0"], marks["t0"] = time.process_time(), time.perf_counter()

    wall = run_on_ray(cfg, task, store, None, {}, console=Console(stderr=True),
                      on_event=on_event, factory=factory)
    cpu = time.process_time() - marks["cpu0"]
    t0 = time.perf_counter()
    store.consolidate(order=(s.id for s in task.samples), read_back=False)
    complete = store.complete_samples()
    summary = store.summary(wall)
    report_s = time.perf_counter() - t0
    assert complete == args.samples and summary["samples"] == args.samples * k, (complete, summary)
    one = args.generate_bs / args.latency        # samples/s of one stand-in
    rate = args.samples / wall
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return {"mode": "stand-in", "samples": args.samples, "k": k, "replicas": args.replicas,
            "latency_s": args.latency, "generate_bs": args.generate_bs,
            "load_task_s": round(load_s, 1), "wall_s": round(wall, 2),
            "samples_per_s": round(rate, 1), "efficiency": round(rate / (args.replicas * one), 3),
            "driver_cpu_ms_per_sample": round(cpu / args.samples * 1e3, 3),
            "peak_driver_rss_mib": round(rss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss), 1),
            "consolidate_and_report_s": round(report_s, 2), "stored": summary["samples"]}


def stand_in_child(args, samples: int) -> dict:
    """`stand_in` at `samples` in a fresh process (its own peak RSS, its own local Ray)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--samples", str(samples),
           "--replicas", str(args.replicas), "--latency", str(args.latency),
           "--generate_bs", str(args.generate_bs), "--max_in_flight", str(args.max_in_flight),
           "--cpus_per_replica", str(args.cpus_per_replica), "--k", str(args.k),
           "--progress_every", str(args.progress_every)]
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert p.returncode == 0, f"the {samples}-sample run failed"
    return json.loads(p.stdout.strip().splitlines()[-1])


def tiny(args) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from tiny_model import build_tiny_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-tiny-"))
    data = synthetic_arc(args.samples, tmp)
    # The driver reports its own peak RSS at exit (RUSAGE_CHILDREN would also count the Ray
    # processes a local Ray starts under it, workers included).
    own_rss = ("import atexit, resource, runpy, sys\n"
               "atexit.register(lambda: print('DRIVER_MAXRSS_KIB', resource.getrusage("
               "resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
               "sys.argv[0] = 'jobs.evaluate'\n"
               "runpy.run_module('jobs.evaluate', run_name='__main__')\n")
    cmd = [sys.executable, "-c", own_rss, "--model_name", build_tiny_model_dir(),
           "--task", "arc_easy", "--data", str(data), "--method", "baseline",
           "--max_new_tokens", "1", "--dtype", "float32", "--device", "cpu",
           "--replicas", "2", "--torch_threads", "1", "--generate_bs", str(args.generate_bs),
           "--output", str(tmp / "run")]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    total = time.perf_counter() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((tmp / "run" / "summary.json").read_text())
    wall = summary["wall_seconds_this_session"]
    return {"mode": "tiny", "samples": args.samples, "replicas": 2,
            "wall_s": round(wall, 2), "ms_per_sample": round(wall / args.samples * 1e3, 3),
            "process_s": round(total, 1),
            "peak_driver_rss_mib": round(rss_mib(int(p.stderr.split("DRIVER_MAXRSS_KIB")[-1].split()[0])), 1),
            "stored": summary["samples"]}


WRITE_PARTS = """
import sys
from bench.stand_in import row
from latentmas_ray.spec.config import MethodConfig, RunConfig
from latentmas_ray.store.run_store import RunStore
from latentmas_ray.tasks.base import Sample
n, k, bs, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cfg = RunConfig(task="arc_easy", method=MethodConfig(method="baseline", temperature=0.7 if k > 1
                else 0.0, num_return_sequences=k))
store = RunStore(out)
store.open(cfg.to_dict())
for i in range(0, n, bs):
    rows = []
    for j in range(i, min(i + bs, n)):
        s = Sample(id=f"arc_easy-{j}", task="arc_easy", kind="mcq", question="q", gold="A")
        rows += [{**row(s), "sample_index": c, "correct": (j + c) % 2 == 0} for c in range(k)]
    store.append(rows)
"""

END_OF_RUN = """
import json, resource, sys, time
from latentmas_ray.store.run_store import RunStore
n, out = int(sys.argv[1]), sys.argv[2]
order = [f"arc_easy-{j}" for j in range(n)]        # the driver holds the task's ids
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
store = RunStore(out)
store.consolidate(order=order, read_back=False)
summary = store.summary(1.0)
took = time.perf_counter() - t0
print(json.dumps({"consolidate_and_report_s": round(took, 2), "rows": summary["samples"],
                  "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "ids_rss_mib": round(base / 1024, 1)}))
"""


def store_end(n: int, k: int, bs: int) -> dict:
    """The end of a run of n samples x k completions (see the module's doc)."""
    import os
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-store-"))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", WRITE_PARTS, str(n), str(k), str(bs), str(tmp / "run")],
                   cwd=REPO, env=env, check=True)
    write_s = time.perf_counter() - t0
    p = subprocess.run([sys.executable, "-c", END_OF_RUN, str(n), str(tmp / "run")], cwd=REPO,
                       env=env, check=True, capture_output=True, text=True)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["rows"] == n * k, out
    import shutil
    shutil.rmtree(tmp, ignore_errors=True)
    return {"mode": "store", "samples": n, "k": k, "parts": -(-n // bs),
            "write_parts_s": round(write_s, 1), **out}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--replicas", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.2, help="seconds per batch of a stand-in")
    p.add_argument("--generate_bs", type=int, default=20)
    p.add_argument("--max_in_flight", type=int, default=2)
    p.add_argument("--cpus_per_replica", type=float, default=0.01)
    p.add_argument("--progress_every", type=float, default=10.0)
    p.add_argument("--tiny", action="store_true", help="the tiny random model instead")
    p.add_argument("--store", action="store_true", help="the run's end alone (module doc)")
    p.add_argument("--k", type=int, default=1, help="completions per sample")
    p.add_argument("--compare", type=int, default=0,
                   help="also at this many samples, each size in its own process; prints the ratio")
    args = p.parse_args()
    print(hardware(), flush=True)
    if args.store:
        big = store_end(args.samples, args.k, args.generate_bs)
        print(json.dumps(big), flush=True)
        if args.compare:
            small = store_end(args.compare, args.k, args.generate_bs)
            print(json.dumps(small), flush=True)
            print(f"peak RSS {big['samples']} / {small['samples']} samples (K={args.k}): "
                  f"{big['peak_rss_mib'] / small['peak_rss_mib']:.2f}x; "
                  f"consolidate + report {big['consolidate_and_report_s']} s vs "
                  f"{small['consolidate_and_report_s']} s", flush=True)
        return
    if args.compare and not args.tiny:
        big = stand_in_child(args, args.samples)
        print(json.dumps(big), flush=True)
        small = stand_in_child(args, args.compare)
        print(json.dumps(small), flush=True)
        print(f"driver peak RSS {big['samples']} / {small['samples']} samples (K={args.k}): "
              f"{big['peak_driver_rss_mib']} / {small['peak_driver_rss_mib']} MiB = "
              f"{big['peak_driver_rss_mib'] / small['peak_driver_rss_mib']:.2f}x; consolidate + "
              f"report {big['consolidate_and_report_s']} s vs {small['consolidate_and_report_s']} s",
              flush=True)
        return
    print(json.dumps(tiny(args) if args.tiny else stand_in(args)), flush=True)


if __name__ == "__main__":
    main()
