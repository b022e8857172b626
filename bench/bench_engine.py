"""The HF engine against the hardware and against transformers' own loop (issue 13).

    OMP_NUM_THREADS=1 python bench/bench_engine.py                 # SmolLM2, CPU, 1 thread
    python bench/bench_engine.py --random qwen3-8b                 # real-size random weights (GPU)
    python bench/bench_engine.py --skip_e2e --steps 8              # only the step table
    python bench/bench_engine.py --random qwen3-8b --layers 12 --dtype bfloat16 --batches 10 \
        --skip_hf                                                  # real shapes, fewer layers (CPU)
    python bench/bench_engine.py --compile                         # + torch.compile'd steps
    python bench/bench_engine.py --decode_attention matmul         # grouped-matmul decode

1. The machine: memory bandwidth (a copy benchmark, read + write) and peak compute (a large
   matmul), measured here in this process.
2. Steps: a decode step and a latent step after a memory of 0 / 500 / 2000 positions at batch
   1 and 10: ms per step; the bytes a step must read (weights + the memory's keys and values)
   and its FLOPs; the fraction of the measured bandwidth and peak this reaches. The same for
   transformers' path on the same memory: `generate()` for decode (time of N+1 tokens minus 1,
   per token) and the reference's latent loop (model(...) on a DynamicCache). "x mem 0": the
   step's time over the same path's step with no memory at that batch.
3. End to end (SmolLM2 only): 10 GSM8K questions, 128 new tokens, greedy: our baseline vs
   transformers' `generate()` on the same prompt ids, whole call and decode alone (the call
   for 128 tokens minus the call for 1: the prefill cancels); the LatentMAS judger's time per
   generated token with m = 20 vs the baseline's: with every row decoding all 128 tokens
   (stop tokens ignored, so both do the same work and the difference is the memory), and as
   the runs stop (judger rows end early, so its batch is part empty: the per-token cost of
   static batching, not of the memory).
The memory is random keys/values (timing does not depend on their values).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATASETS, hardware  # noqa: E402

import torch  # noqa: E402

RANDOM_SHAPES = {   # real-size configs for random-weight models (no download needed)
    "qwen3-8b": dict(model_type="qwen3", hidden_size=4096, intermediate_size=12288,
                     num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8,
                     head_dim=128, vocab_size=151936, tie_word_embeddings=False),
    "qwen3-14b": dict(model_type="qwen3", hidden_size=5120, intermediate_size=17408,
                      num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=8,
                      head_dim=128, vocab_size=151936, tie_word_embeddings=False),
}


# ------------------------------------------------------------------------ the machine
def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn, device, repeats: int, inner: int = 1) -> float:
    """Min over `repeats` of the mean seconds of `inner` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        best = min(best, (time.perf_counter() - t) / inner)
    return best


def machine(device, dtype) -> tuple[float, float]:
    """(bytes/s of a device copy counting read + write, FLOP/s of a large matmul in `dtype`)."""
    n = (1 << 28) if device.type == "cuda" else (1 << 26)          # 1 GiB / 256 MiB of fp32
    a = torch.ones(n, dtype=torch.float32, device=device)
    b = torch.empty_like(a)
    bw = 2 * a.numel() * 4 / best_of(lambda: b.copy_(a), device, 5)
    del a, b
    k = 8192 if device.type == "cuda" else 1024
    x = torch.randn(k, k, dtype=dtype, device=device)
    flops = 2 * k ** 3 / best_of(lambda: x @ x, device, 3, inner=3)
    return bw, flops


# ------------------------------------------------------------------------ the model
class _StandInTokenizer:
    """What HFEngine needs from a tokenizer, for a random-weight model (vocab = its rows)."""

    def __init__(self, vocab: int):
        self.vocab, self.eos_token_id, self.pad_token_id = vocab, vocab - 1, vocab - 2

    def __len__(self):
        return self.vocab

    def __call__(self, text: str, **_):          # one id per character (the start-up check)
        return {"input_ids": [ord(c) % (self.vocab - 2) for c in text]}


def load_engine(args, device, fast: bool):
    """Our engine (fast: with the opt-in --packed_linear / --compile / --decode_attention of
    `args`), or with fast False the exact one that transformers' rows run on."""
    opts = dict(packed_linear=fast and args.packed_linear, compile_steps=fast and args.compile,
                decode_attention=args.decode_attention if fast else "sdpa")   # exact
    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine, resolve_dtype
    from latentmas_ray.spec.models import resolve_model

    if args.random is None:
        path = resolve_model(args.model)
        return (HFEngine.load(ModelConfig(device=str(device), dtype=args.dtype), str(path),
                              **opts), str(path))
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    shape = dict(RANDOM_SHAPES[args.random])
    if args.layers:             # same per-layer weight : memory ratio, less host memory
        shape["num_hidden_layers"] = args.layers
    cfg = AutoConfig.for_model(shape.pop("model_type"), **shape)
    dtype = resolve_dtype(args.dtype, device)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    model.generation_config = GenerationConfig(eos_token_id=cfg.vocab_size - 1)
    return HFEngine(model, _StandInTokenizer(cfg.vocab_size), **opts), None


def step_cost(engine, batch: int, memory: int, kind: str) -> tuple[float, float]:
    """(bytes read, FLOPs) of one step at `memory` positions: every weight once (the embedding
    table only for the `batch` rows it looks up; lm_head only when decoding), the memory's
    keys and values once, and the matmul + attention FLOPs."""
    cfg = engine.model.config
    el = torch.empty((), dtype=engine.dtype).element_size()
    embed = engine.model.get_input_embeddings().weight
    head = engine.lm_head.weight
    body = sum(p.numel() for n, p in engine.decoder.named_parameters() if "embed_tokens" not in n)
    head_n = head.numel() if kind == "decode" else 0
    tied = head.data_ptr() == embed.data_ptr()
    weights = (body + head_n + (0 if tied and kind == "decode" else batch * embed.shape[1])) * el
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_per_pos = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * el
    flops = 2 * batch * (body + head_n)
    flops += 4 * batch * cfg.num_hidden_layers * cfg.num_attention_heads * memory * head_dim
    return weights + batch * memory * kv_per_pos, flops


def random_memory(engine, batch: int, memory: int):
    """A BatchKV holding `memory` random positions per row (all real)."""
    from latentmas_ray.latent.cache import BatchKV

    cfg = engine.model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    shape = (batch, cfg.num_key_value_heads, memory, head_dim)
    layers = [(torch.randn(shape, dtype=engine.dtype, device=engine.device),
               torch.randn(shape, dtype=engine.dtype, device=engine.device))
              if memory else (None, None) for _ in range(cfg.num_hidden_layers)]
    mask = torch.ones(batch, memory, dtype=torch.long, device=engine.device)
    pos = torch.full((batch,), memory, dtype=torch.long, device=engine.device)
    return BatchKV.from_state({"layers": layers, "mask": mask, "next_pos": pos, "segments": []}), layers


def ours(engine, batch, memory, kind, steps, repeats) -> float:
    """Seconds per step of our engine: what generate / latent_steps do per position."""
    from latentmas_ray.engines.hf import SamplingParams

    sp, realign = SamplingParams(0.0), engine.realigner(True)
    best = float("inf")
    for _ in range(repeats):
        kv, _ = random_memory(engine, batch, memory)
        kv.reserve(memory + steps + 6)
        one = torch.ones(batch, 1, dtype=torch.long, device=engine.device)
        tok = torch.zeros(batch, dtype=torch.long, device=engine.device)
        for _ in range(3):      # warm-up (and, with --compile, the graphs of this shape)
            h = engine.forward(kv, one, input_ids=tok[:, None])[:, -1]
            engine.forward(kv, one, inputs_embeds=realign(h)[:, None])
        engine.sync()
        t = time.perf_counter()
        for _ in range(steps):
            if kind == "decode":
                tok = engine.pick(engine.logits(h), sp, [None] * batch)
                torch.isin(tok, tok[:1]).tolist()                          # the step's stop check
                h = engine.forward(kv, one, input_ids=tok[:, None])[:, -1]
            else:
                h = engine.forward(kv, one, inputs_embeds=realign(h)[:, None])[:, -1]
        engine.sync()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def theirs(engine, batch, memory, kind, steps, repeats) -> float:
    """Seconds per step of transformers' path on the same memory: generate() (decode) or the
    reference's latent loop (model(...) with a DynamicCache and output_hidden_states)."""
    from transformers import DynamicCache

    model, dev = engine.model, engine.device
    realign = engine.realigner(True)
    prompt = torch.full((batch, memory + 1), 1, dtype=torch.long, device=dev)
    best = float("inf")
    for _ in range(repeats):
        _, layers = random_memory(engine, batch, memory)

        def run(n):
            cache = DynamicCache(ddp_cache_data=layers) if memory else DynamicCache()
            engine.sync()
            t = time.perf_counter()
            if kind == "decode":
                model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                               past_key_values=cache, max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, pad_token_id=engine.pad_token_id)
            else:
                out = model(input_ids=prompt[:, -1:], past_key_values=cache, use_cache=True,
                            output_hidden_states=True)
                for _ in range(n - 1):
                    h = out.hidden_states[-1][:, -1]
                    out = model(inputs_embeds=realign(h)[:, None], past_key_values=cache,
                                use_cache=True, output_hidden_states=True,
                                attention_mask=torch.ones(batch, cache.get_seq_length() + 1,
                                                          dtype=torch.long, device=dev))
            engine.sync()
            return time.perf_counter() - t
        with torch.no_grad(), stock_attention(engine):
            best = min(best, (run(steps + 1) - run(1)) / steps)
    return best


class stock_attention:
    """transformers' own attention for the reference rows (our engine switched the model to
    the grouped-head function, which generate() would otherwise use too)."""

    def __init__(self, engine):
        self.model, self.mine = engine.model, engine.model.config._attn_implementation

    def __enter__(self):
        self.model.set_attn_implementation("sdpa")

    def __exit__(self, *exc):
        self.model.set_attn_implementation(self.mine)


def step_table(engine, ref, args, bw, peak) -> None:
    print(f"\n| step | memory | batch | path | ms/step | x mem 0 | MB read | GFLOP | of {bw / 1e9:.0f} GB/s "
          f"| of {peak / 1e9:.0f} GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind in ("decode", "latent"):
        no_memory: dict[tuple[str, int], float] = {}    # (path, batch) -> s at the first memory
        for memory in args.memories:
            for batch in args.batches:
                nbytes, flops = step_cost(engine, batch, memory + args.steps // 2, kind)
                paths = [("ours", ours)] + ([] if args.skip_hf else
                                            [("generate()" if kind == "decode" else "HF loop", theirs)])
                for name, fn in paths:
                    s = fn(engine if fn is ours else ref, batch, memory, kind, args.steps, args.repeats)
                    base = no_memory.setdefault((name, batch), s)
                    print(f"| {kind} | {memory} | {batch} | {name} | {s * 1e3:.1f} | {s / base:.2f} | "
                          f"{nbytes / 1e6:.0f} | {flops / 1e9:.2f} | {nbytes / s / bw:.1%} | "
                          f"{flops / s / peak:.1%} |", flush=True)


# ------------------------------------------------------------------------ end to end
class decode_to_length:
    """Stop tokens ignored: every row decodes exactly max_new_tokens (same work per row)."""

    def __init__(self, engine):
        self.engine, self.stops = engine, engine.stop_token_ids

    def __enter__(self):
        self.engine.stop_token_ids = frozenset({-1})       # no token id is -1

    def __exit__(self, *exc):
        self.engine.stop_token_ids = self.stops


def end_to_end(engine, ref, path, args) -> None:
    from latentmas_ray.spec.config import MethodConfig
    from latentmas_ray.methods import get_method
    from latentmas_ray.tasks.registry import TASKS, load_task

    samples = load_task("gsm8k", str(DATASETS / TASKS["gsm8k"].local_file),
                        max_samples=args.e2e_samples).samples
    n = args.e2e_tokens

    def cfg(method, tokens):
        return MethodConfig(method=method, latent_steps=20, max_new_tokens=tokens, temperature=0.0)

    def judger(method, tokens=n):       # (s per generated token, tokens per row, results)
        results = get_method(method)(engine, samples, cfg(method, tokens), run_seed=0)
        secs = sum(r.agents[-1].seconds for r in results)
        made = sum(r.agents[-1].generated_tokens for r in results)
        return secs / made, made / len(results), results

    def timed(fn):
        engine.sync()
        t = time.perf_counter()
        out = fn()
        engine.sync()
        return time.perf_counter() - t, out

    def hf_generate(tokens):
        with torch.no_grad(), stock_attention(ref):
            return ref.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=tokens,
                                      do_sample=False, pad_token_id=engine.pad_token_id,
                                      eos_token_id=sorted(engine.stop_token_ids))

    base_run = judger("baseline")[2]            # warm-up (with --compile: the graphs of both
    judger("latent_mas")                        # methods, batch sizes included)
    ids, mask = engine.pad_left([r.agents[0].input_ids for r in base_run])
    best = dict.fromkeys(("ours", "ours1", "hf", "hf1", "base", "lat", "base_nat", "lat_nat"),
                         float("inf"))
    for _ in range(args.repeats):
        for key, fn in (("ours", lambda: judger("baseline")), ("ours1", lambda: judger("baseline", 1)),
                        ("hf", lambda: hf_generate(n)), ("hf1", lambda: hf_generate(1))):
            secs, out = timed(fn)
            best[key] = min(best[key], secs)
            if key == "ours":               # the baseline as it stops: also the natural row
                base_nat, base_rows, base_run = out
                best["base_nat"] = min(best["base_nat"], base_nat)
            elif key == "hf":
                hf = out
        with decode_to_length(engine):
            best["base"] = min(best["base"], judger("baseline")[0])
            best["lat"] = min(best["lat"], judger("latent_mas")[0])
        lat_nat, lat_rows, _ = judger("latent_mas")
        best["lat_nat"] = min(best["lat_nat"], lat_nat)

    def cut(row):       # generate() pads finished rows: keep up to the first stop token
        stops = [i for i, t in enumerate(row) if t in engine.stop_token_ids]
        return row[:stops[0] + 1] if stops else row
    same = sum(r.agents[0].output_ids == cut(row[ids.shape[1]:].tolist())
               for r, row in zip(base_run, hf))
    dec_ours, dec_hf = best["ours"] - best["ours1"], best["hf"] - best["hf1"]
    print(f"\nend to end: {len(samples)} GSM8K questions in one batch, {n} new tokens, greedy, "
          f"min of {args.repeats}")
    print("| measure | ours | reference | ratio | goal |\n|---|---|---|---|---|")
    print(f"| baseline decode (tokens 2..{n}) vs transformers generate() (s) | {dec_ours:.2f} | "
          f"{dec_hf:.2f} | {dec_ours / dec_hf:.2f} | <= 0.67 |")
    print(f"| baseline call (prefill + {n} tokens) vs generate() (s) | {best['ours']:.2f} | "
          f"{best['hf']:.2f} | {best['ours'] / best['hf']:.2f} | |")
    print(f"| LatentMAS judger (m=20) vs baseline, s per token, all rows {n} tokens | "
          f"{best['lat'] * 1e3:.1f} ms | {best['base'] * 1e3:.1f} ms | "
          f"{best['lat'] / best['base']:.2f} | <= 1.2 |")
    print(f"| the same as the runs stop ({lat_rows:.0f} vs {base_rows:.0f} tokens per row) | "
          f"{best['lat_nat'] * 1e3:.1f} ms | {best['base_nat'] * 1e3:.1f} ms | "
          f"{best['lat_nat'] / best['base_nat']:.2f} | |")
    print(f"(baseline tokens identical to generate() for {same}/{len(samples)} questions)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="model folder (default: the embedded SmolLM2)")
    ap.add_argument("--random", choices=sorted(RANDOM_SHAPES), default=None,
                    help="a random-weight model of these shapes instead (GPU)")
    ap.add_argument("--layers", type=int, default=None,
                    help="--random with this many layers (same per-layer weight : memory bytes)")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU), bfloat16, ...")
    ap.add_argument("--decode_attention", choices=("auto", "sdpa", "matmul"), default="auto",
                    help="our engine's one-position attention (auto: matmul in bf16/fp16, "
                         "sdpa in fp32; matmul is not bit-identical)")
    ap.add_argument("--compile", action="store_true",
                    help="our engine with torch.compile'd one-position steps (not bit-identical)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--memories", type=int, nargs="+", default=[0, 500, 2000])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 10])
    ap.add_argument("--steps", type=int, default=16, help="timed steps per measurement")
    ap.add_argument("--repeats", type=int, default=3, help="min over this many measurements")
    ap.add_argument("--skip_hf", action="store_true", help="no transformers rows")
    ap.add_argument("--skip_e2e", action="store_true")
    ap.add_argument("--skip_steps", action="store_true", help="only the end-to-end table")
    ap.add_argument("--packed_linear", action="store_true",
                    help="our engine with oneDNN packed matmuls (CPU; not bit-identical)")
    ap.add_argument("--e2e_samples", type=int, default=10)
    ap.add_argument("--e2e_tokens", type=int, default=128)
    args = ap.parse_args()

    from latentmas_ray.engines.hf import resolve_device

    device = resolve_device(args.device)
    print(f"hardware: {hardware()}")
    t = time.perf_counter()
    engine, path = load_engine(args, device, fast=True)
    print(f"loaded in {time.perf_counter() - t:.1f} s", flush=True)
    fast = (args.packed_linear or args.compile
            or engine.model.config._attn_implementation != "gqa_sdpa")
    ref = load_engine(args, device, fast=False)[0] if fast else engine   # transformers' rows
    bw, peak = machine(device, engine.dtype)
    print(f"model: {args.random or path} {str(engine.dtype).replace('torch.', '')} on {device}, "
          f"attention {engine.model.config._attn_implementation}, packed_linear "
          f"{args.packed_linear}, compile {args.compile}, decode_attention {args.decode_attention}"
          f"; machine: copy {bw / 1e9:.1f} GB/s "
          f"(read + write), matmul {peak / 1e9:.0f} GFLOP/s")
    if not args.skip_steps:
        step_table(engine, ref, args, bw, peak)
    if not args.skip_e2e and args.random is None:
        end_to_end(engine, ref, path, args)


if __name__ == "__main__":
    main()
