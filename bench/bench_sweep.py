"""A 4-point grid as ONE sweep against four separate runs, whole processes side by side.

    python bench/bench_sweep.py [--samples 6] [--max_new_tokens 16] [--ray] [--model_name DIR]

Runs, each as its own process under `/usr/bin/time -v`:
  A. `latentmas-ray sweep --grid latent_steps=2,4 --grid latent_space_realign=false,true`
  B. the same four settings as four `latentmas-ray run` processes, one after the other
(`--ray`: both on a local Ray started by each process, one replica each, as a user would.)
Prints each process's wall seconds and peak memory, the ratio B / A, and where the time goes:
the evaluation loops (the runs' and points' own wall_seconds_this_session; on Ray the sweep's
loop is one shared figure) and the rest of each process (Python and torch imports, model loads,
the local cluster's start), so the saving is read off as "the same evaluation, three fewer
starts". The evaluation results are the same runs: B reuses nothing of A (other folders).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROBE = ("import sys; from latentmas_ray.cli import build_parser; build_parser(); "
         "from latentmas_ray.spec.config import ModelConfig; "
         "from latentmas_ray.spec.models import resolve_model; "
         "from latentmas_ray.engines.hf import HFEngine; "
         "HFEngine.load(ModelConfig(), str(resolve_model(sys.argv[1] or None)))")
POINTS = [(2, False), (2, True), (4, False), (4, True)]


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd` under /usr/bin/time -v; its wall seconds and peak RSS (MiB)."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, cwd=REPO, capture_output=True,
                       text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    h, m, s = (["0"] + re.search(r"Elapsed \(wall clock\) time.*: (\S+)", p.stderr).group(1)
               .split(":"))[-3:]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    return {"wall": int(h) * 3600 + int(m) * 60 + float(s), "rss_mib": rss / 1024,
            "log": p.stderr}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=6)
    ap.add_argument("--max_new_tokens", type=int, default=16)
    ap.add_argument("--model_name", default=None, help="default: the embedded SmolLM2-135M")
    ap.add_argument("--ray", action="store_true", help="on a local Ray, one replica")
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0",
               TOKENIZERS_PARALLELISM="false")
    env.pop("RAY_ADDRESS", None)
    common = ["--task", "arc_easy", "--max_samples", str(a.samples), "--generate_bs", "2",
              "--max_new_tokens", str(a.max_new_tokens), "--temperature", "0",
              "--method", "latent_mas", "--torch_threads", "2",
              *(["--model_name", a.model_name] if a.model_name else []),
              *(["--ray", "--replicas", "1", "--num_gpus_per_replica", "0"] if a.ray else [])]
    cli = [sys.executable, "-m", "latentmas_ray.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        sweep = timed([*cli, "sweep", *common, "--output", f"{tmp}/a/sweep",
                       "--grid", "latent_steps=2,4", "--grid", "latent_space_realign=false,true"],
                      env)
        sel = json.loads(Path(f"{tmp}/a/sweep/selection.json").read_text())
        points = json.loads(Path(f"{tmp}/a/sweep/sweep.json").read_text())["points"]
        loops_a = [json.loads((Path(p["path"]) / "summary.json").read_text())
                   .get("wall_seconds_this_session") for p in points]
        loop_a = sel["wall_seconds"] if a.ray else sum(loops_a)
        runs, loops_b = [], []
        for i, (steps, realign) in enumerate(POINTS):
            out = f"{tmp}/b/run{i}"
            runs.append(timed([*cli, "run", *common, "--latent_steps", str(steps), "--output", out,
                               *(["--latent_space_realign"] if realign else [])], env))
            loops_b.append(json.loads(Path(out, "summary.json").read_text())
                           ["wall_seconds_this_session"])
        # what one process pays before it evaluates anything: imports and one model load
        probe = timed([sys.executable, "-c", PROBE, a.model_name or ""], env)
        fleet = re.findall(r"model loaded in ([\d.]+) s", sweep.get("log", ""))
    sep = sum(r["wall"] for r in runs)
    where = "local Ray, 1 replica" if a.ray else "in process"
    print(f"4-point grid, {a.samples} arc_easy samples x {a.max_new_tokens} new tokens, {where}, "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"  one sweep process:     {sweep['wall']:7.1f} s wall, peak {sweep['rss_mib']:.0f} MiB; "
          f"evaluation {loop_a:.1f} s, the rest (start, imports, one model load"
          f"{', cluster start' if a.ray else ''}, report) {sweep['wall'] - loop_a:.1f} s")
    print(f"  four run processes:    {sep:7.1f} s wall ("
          + ", ".join(f"{r['wall']:.1f}" for r in runs) + f"), peak {max(r['rss_mib'] for r in runs):.0f}"
          f" MiB each; evaluation {sum(loops_b):.1f} s, the rest (4 x start, imports, model load"
          f"{', cluster start' if a.ray else ''}) {sep - sum(loops_b):.1f} s")
    print(f"  one process that only imports and loads the model: {probe['wall']:.1f} s"
          + (f"; the sweep's Ray fleet was up (cluster start + load) after {fleet[0]} s"
             if fleet else ""))
    print(f"  ratio (four runs / one sweep): {sep / sweep['wall']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
