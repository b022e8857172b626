"""vLLM kept full (issue 14): occupancy and throughput, old design vs new, for the three methods.

    python bench/bench_vllm.py --streaming [--samples 64] [--max_new_tokens 96]
                               [--hybrid_samples 16] [--old_src DIR] [--sections AB]

A. Whole processes, one after the other, engine start included (the acceptance figures):
   plain vLLM given all prompt ids in one `LLM.generate` call; `run --use_vllm` baseline (new);
   the same with the old design (--old_src: a checkout of the code before this change, e.g.
   `git archive e254ac3 | tar -x -C /tmp/old`); TextMAS on vLLM with --generate_bs 4 vs 64.
   Every process gets the same engine settings (KV budget 2 GiB, max_num_seqs M: the value the
   new design derives for the baseline, printed).
B. One process per method, old design vs new on the same engine settings (max_num_seqs 16,
   so the work exceeds the engine): old = the batch forms, batch by batch (`LLM.generate` per
   batch, TextMAS four barriers per batch), new = `latentmas_ray.run.streaming` (requests per
   sample, 2 x max_num_seqs outstanding). Occupancy = mean running sequences / max_num_seqs
   from vLLM's own scheduler statistics per engine step, (a) while samples were still being
   started (steady state) and (b) over the whole run; plus samples/s and generated tokens/s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DATASETS, REPO

PLAIN = r'''
import json, sys, time
t_start = time.perf_counter()
def main():
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt
    from latentmas_ray.run.lengths import Tokenizer
    from latentmas_ray.prompts import build_messages
    from latentmas_ray.tasks.registry import load_task
    a = json.loads(sys.argv[1])
    tok = Tokenizer(a["model"])
    samples = load_task("gsm8k", a["data"], max_samples=a["n"]).samples
    ids = [tok.tokenize(tok.render(build_messages("baseline", "sequential", "single", s.kind,
                                                  s.question, "", None))) for s in samples]
    llm = LLM(model=a["model"], dtype="float32", max_model_len=4096, max_num_seqs=a["seqs"],
              enforce_eager=True, kv_cache_memory_bytes=2 << 30, enable_prefix_caching=True)
    t0 = time.perf_counter()
    outs = llm.generate([TokensPrompt(prompt_token_ids=p) for p in ids],
                        SamplingParams(max_tokens=a["new"], temperature=0.0, detokenize=False),
                        use_tqdm=False)
    print(json.dumps({"generate_s": time.perf_counter() - t0,
                      "tokens": sum(len(o.outputs[0].token_ids) for o in outs)}))
if __name__ == "__main__":
    main()
'''


def whole_process(cmd: list[str], src: Path, env_extra: dict | None = None) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           **(env_extra or {})}
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(src), timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}... failed:\n{p.stderr[-3000:]}")
    return wall, p.stdout + p.stderr


def run_cmd(method: str, n: int, new: int, out: Path, *flags: str) -> list[str]:
    return [sys.executable, "-m", "latentmas_ray.cli", "run", "--use_vllm", "--method", method,
            "--task", "gsm8k", "--data", str(DATASETS / "gsm8k.jsonl"), "--max_samples", str(n),
            "--max_new_tokens", str(new), "--temperature", "0", "--dtype", "float32",
            "--vllm_kv_cache_gib", "2", "--output", str(out), *flags]


def section_a(args, model: str, seqs: int) -> list[dict]:
    rows, tmp = [], Path(tempfile.mkdtemp(prefix="bench_vllm_"))
    n, new = args.samples, args.max_new_tokens
    script = tmp / "plain.py"
    script.write_text(PLAIN)
    spec = json.dumps({"model": model, "data": str(DATASETS / "gsm8k.jsonl"), "n": n,
                       "new": new, "seqs": seqs})
    print(f"\nA. whole processes (engine start included), GSM8K x {n}, {new} new tokens, "
          f"greedy, KV 2 GiB, max_num_seqs {seqs}:", flush=True)
    runs = [("plain vLLM, all prompt ids in one LLM.generate", [sys.executable, str(script), spec], REPO),
            ("run --use_vllm baseline (new: streamed)",
             run_cmd("baseline", n, new, tmp / "b_new", "--vllm_max_num_seqs", str(seqs)), REPO)]
    if args.old_src:
        runs.append(("run --use_vllm baseline (old: LLM.generate per batch)",
                     run_cmd("baseline", n, new, tmp / "b_old", "--vllm_max_num_seqs", str(seqs)),
                     Path(args.old_src)))
    for bs in (4, 64):
        runs.append((f"run --use_vllm text_mas --generate_bs {bs} (new)",
                     run_cmd("text_mas", n, new, tmp / f"t{bs}", "--generate_bs", str(bs),
                             "--vllm_max_num_seqs", str(seqs)), REPO))
        if args.old_src:
            runs.append((f"run --use_vllm text_mas --generate_bs {bs} (old)",
                         run_cmd("text_mas", n, new, tmp / f"to{bs}", "--generate_bs", str(bs),
                                 "--vllm_max_num_seqs", str(seqs)), Path(args.old_src)))
    runs = [r for r in runs if not args.only or any(k in r[0] for k in args.only.split(","))]
    for name, cmd, src in runs:
        wall, _ = whole_process(cmd, src)
        rows.append({"name": name, "wall_s": wall})
        print(f"  {name:58s} {wall:7.1f} s", flush=True)
    base = {r["name"]: r["wall_s"] for r in rows}
    plain = base.get("plain vLLM, all prompt ids in one LLM.generate")
    ours = base.get("run --use_vllm baseline (new: streamed)")
    t4, t64 = (base.get("run --use_vllm text_mas --generate_bs 4 (new)"),
               base.get("run --use_vllm text_mas --generate_bs 64 (new)"))
    if plain and ours:
        print(f"  baseline new / plain vLLM = {ours / plain:.3f} (target <= 1.10)", flush=True)
    if t4 and t64:
        print(f"  TextMAS bs 4 / bs 64 = {t4 / t64:.3f} (target <= 1.15)", flush=True)
    return rows


def section_b(args, model_cfg, path: str) -> list[dict]:
    import asyncio

    from latentmas_ray.spec.config import MethodConfig, RunConfig, VLLMConfig
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.engines.hf_vllm_pair import HybridEngine
    from latentmas_ray.engines.vllm import VLLMEngine
    from latentmas_ray.methods import get_method, hybrid
    from latentmas_ray.run.streaming import StreamEvaluator, stream
    from latentmas_ray.tasks.registry import load_task

    seqs, bs = args.b_max_num_seqs, args.generate_bs
    options = VLLMConfig(max_model_len=4096, max_num_seqs=seqs, cpu_kv_cache_gib=2,
                         enforce_eager=True)
    loaded = load_task("gsm8k", str(DATASETS / "gsm8k.jsonl"), max_samples=args.samples).samples
    print(f"\nB. one process, max_num_seqs {seqs}, --generate_bs {bs}, {args.max_new_tokens} "
          f"new tokens: old (batch forms) vs new (streamed)", flush=True)
    vllm = VLLMEngine.load(model_cfg, path, options)
    hf = None
    rows = []
    for method in args.methods.split(","):
        n = args.hybrid_samples if method == "latent_mas" else args.samples
        samples = loaded[:n]
        method_cfg = MethodConfig(method=method, max_new_tokens=args.max_new_tokens,
                                  temperature=0.0, latent_steps=4)
        cfg = RunConfig(task="gsm8k", generate_bs=bs, use_vllm=True, model=model_cfg,
                        method=method_cfg)
        engine = vllm
        if method == "latent_mas":
            hf = hf or HFEngine.load(model_cfg, path)
            engine = HybridEngine(hf, vllm)
        for design in ("old", "new"):
            vllm.reset_prefix_cache()
            vllm.occupancy.clear()
            started: list[float] = []
            t0 = time.perf_counter()
            if design == "old":
                run = hybrid.run_batch if method == "latent_mas" else get_method(method)
                results = []
                for i in range(0, n, bs):
                    started.append(time.perf_counter())
                    results += run(engine, samples[i:i + bs], method_cfg, 42)
            else:
                ev = StreamEvaluator(cfg, engine, {})
                if ev.sample_fn is not None:
                    inner = ev.sample_fn

                    async def timed(*a, _inner=inner, **k):
                        started.append(time.perf_counter())
                        return await _inner(*a, **k)
                    ev.sample_fn = timed
                got: list = []
                asyncio.run(stream(ev, samples, got.extend))
                results = got
            wall = time.perf_counter() - t0
            tokens = sum((r.generated_tokens if hasattr(r, "generated_tokens")
                          else r["generated_tokens"]) for r in results)
            steady = vllm.occupancy.summary(seqs, since=t0,
                                            until=max(started) if started else None)
            whole = vllm.occupancy.summary(seqs, since=t0)
            row = {"method": method, "design": design, "samples": n, "wall_s": wall,
                   "samples_per_s": n / wall, "tokens_per_s": tokens / wall,
                   "occupancy_steady": steady["occupancy"], "steady_steps": steady["steps"],
                   "occupancy_all": whole["occupancy"], "occupancy_queued": whole["occupancy_queued"]}
            rows.append(row)
            print(f"  {method:10s} {design}: {n / wall:6.3f} samples/s {tokens / wall:7.1f} tok/s  "
                  f"occupancy steady {steady['occupancy']:6.1%} ({steady['steps']} steps), "
                  f"whole run {whole['occupancy']:6.1%}  wall {wall:6.1f} s", flush=True)
    vllm.close()
    return rows


def main(args) -> None:
    from latentmas_ray.engines.vllm_fit import derive_max_num_seqs, typical_seq_tokens
    from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
    from latentmas_ray.spec.models import kv_bytes_per_position, kv_layout, resolve_model

    path = str(resolve_model(args.model_name))
    model_cfg = ModelConfig(name_or_path=path, dtype="float32", device="cpu")
    cfg = RunConfig(method=MethodConfig(method="baseline", max_new_tokens=args.max_new_tokens))
    seqs = derive_max_num_seqs(2 << 30, kv_bytes_per_position(kv_layout(path), 4),   # fp32
                               typical_seq_tokens(cfg))
    out: dict = {"max_num_seqs_derived": seqs}
    if "A" in args.sections:
        out["A"] = section_a(args, path, seqs)
    if "B" in args.sections:
        out["B"] = section_b(args, model_cfg, path)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


def add_arguments(ap) -> None:
    ap.add_argument("--streaming", action="store_true", help="issue 14: old vs new design")
    ap.add_argument("--hybrid_samples", type=int, default=16)
    ap.add_argument("--old_src", default=None, help="checkout of the old design (section A)")
    ap.add_argument("--sections", default="AB")
    ap.add_argument("--only", default=None, help="section A: runs whose name holds one of these "
                    "comma-separated strings (e.g. 'generate_bs 64 (new)')")
    ap.add_argument("--methods", default="baseline,text_mas,latent_mas")
    ap.add_argument("--b_max_num_seqs", type=int, default=16)
    ap.add_argument("--json", default=None)

