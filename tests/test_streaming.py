"""vLLM kept full (issue 14): requests streamed per sample into vLLM's async engine give the
batch forms' tokens; max_num_seqs from the KV budget; lengths and tensor parallelism checked
before any engine starts, one line each; a sample's budget clipped and recorded on request.

One small vLLM engine for this file (max_num_seqs 4, so 12 samples overflow the streaming
window and exercise its refill). Tests that need vLLM are skipped when it cannot be imported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest
import torch

from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, ModelConfig, RunConfig, VLLMConfig
from latentmas_ray.errors import ConfigError

FP32_CPU = ModelConfig(dtype="float32", device="cpu")


def _vllm_missing() -> str | None:
    from latentmas_ray.engines.vllm import vllm_import_error
    return vllm_import_error()


needs_vllm = pytest.mark.skipif(bool(_vllm_missing()), reason="vLLM is not importable")


def _run_cfg(method: str, max_new: int = 24, **vllm) -> RunConfig:
    return RunConfig(task="gsm8k", seed=42, generate_bs=3, use_vllm=True, model=FP32_CPU,
                     method=MethodConfig(method=method, max_new_tokens=max_new, temperature=0.0,
                                         latent_steps=2),
                     execution=ExecutionConfig(vllm=VLLMConfig(**vllm)))


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    from latentmas_ray.spec.models import embedded_model_dir
    return str(embedded_model_dir())


@pytest.fixture(scope="session")
def gsm8k(datasets_dir):
    from latentmas_ray.tasks.registry import load_task
    return load_task("gsm8k", str(datasets_dir / "gsm8k.jsonl"), max_samples=12).samples


# ----------------------------------------------------------------- no engine needed
def test_max_num_seqs_from_the_kv_budget(smollm2_dir):
    from latentmas_ray.engines.vllm_fit import derive_max_num_seqs
    from latentmas_ray.spec.models import kv_bytes_per_position, kv_layout

    per_token = kv_bytes_per_position(kv_layout(smollm2_dir), 4)      # fp32
    assert per_token == 2 * 30 * 3 * 64 * 4                      # K+V x layers x kv heads x dim x fp32
    assert derive_max_num_seqs(1 << 30, per_token, 704) == (1 << 30) // (per_token * 704) == 33
    assert derive_max_num_seqs(1 << 40, per_token, 704) == 256   # vLLM's own ceiling
    assert derive_max_num_seqs(1 << 20, per_token, 4096) == 1
    assert VLLMConfig().max_num_seqs is None                     # derived unless given


def test_prompt_that_cannot_fit_is_one_line_naming_the_sample(smollm2_dir, gsm8k):
    from latentmas_ray.run.lengths import check_lengths

    cfg = _run_cfg("baseline", max_new=4096, max_model_len=4096)
    with pytest.raises(ConfigError) as err:
        check_lengths(cfg, gsm8k, smollm2_dir, {})
    msg = str(err.value)
    assert "\n" not in msg
    assert re.match(r"sample \S+: prompt of \d+ tokens \+ max_new_tokens 4096 = \d+ > ", msg), msg
    assert "> --vllm_max_model_len 4096" in msg and "(and 11 more of 12 samples)" in msg
    assert "--vllm_clip_max_new_tokens" in msg
    clipped = _run_cfg("baseline", max_new=4096, max_model_len=4096, clip_max_new_tokens=True)
    longest = check_lengths(clipped, gsm8k, smollm2_dir, {})
    assert 50 < longest < 1024                                   # the longest prompt, in tokens
    ok = _run_cfg("text_mas", max_new=64, max_model_len=4096)
    assert check_lengths(ok, gsm8k, smollm2_dir, {}) > longest   # TextMAS agents' own prompts
    hybrid = _run_cfg("latent_mas", max_new=64, max_model_len=512)
    with pytest.raises(ConfigError, match="the judger's input of"):
        check_lengths(hybrid, gsm8k, smollm2_dir, {})


def test_tensor_parallel_larger_than_the_replica_is_refused_before_anything_starts():
    from actors.vllm_actor import start_hybrid_replica, start_vllm_replica

    with pytest.raises(ConfigError, match="--tensor_parallel_size 2 needs 2 GPUs .* has 0"):
        start_vllm_replica(_run_cfg("baseline", tensor_parallel_size=2), None, {}, gpus=0)
    with pytest.raises(ConfigError, match="--tensor_parallel_size 4 needs 4 GPUs .* has 1"):
        start_hybrid_replica(_run_cfg("baseline", tensor_parallel_size=4), None, {}, hf_gpus=1,
                             vllm_gpus=1)


@needs_vllm
@pytest.mark.parametrize("extra", [[], ["--ray", "--num_gpus_per_replica", "0"]])
def test_run_refuses_bad_input_in_one_line(extra, datasets_dir, tmp_path, capsys):
    """`run --use_vllm` in process and with --ray: a prompt that cannot fit and a tensor
    parallel size above the GPUs each stop with one line before any engine (or Ray) starts."""
    from latentmas_ray.cli import main

    base = ["run", "--use_vllm", "--method", "baseline", "--task", "gsm8k", "--data",
            str(datasets_dir / "gsm8k.jsonl"), "--max_samples", "3", *extra]
    out = tmp_path / "a"
    assert main([*base, "--max_new_tokens", "4096", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert re.search(r"sample \S+: prompt of", err) and "max_new_tokens 4096" in err and "Traceback" not in err
    assert not out.exists()
    out = tmp_path / "b"
    assert main([*base, "--tensor_parallel_size", "2", "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--tensor_parallel_size 2 needs 2 GPUs" in err and "Traceback" not in err
    assert not out.exists()


@needs_vllm
def test_vocab_mask_keeps_the_tokenizers_rows():
    from latentmas_ray.engines.vllm_vocab import VocabMask

    mask = object.__new__(VocabMask)
    mask.keep = 5
    logits = mask.apply(torch.zeros(2, 8))                       # [B, V]
    assert torch.isinf(logits[:, 5:]).all() and (logits[:, :5] == 0).all()
    assert not mask.is_argmax_invariant()


# ----------------------------------------------------------------- one small engine
@pytest.fixture(scope="module")
def engine(smollm2_dir):
    if _vllm_missing():
        pytest.skip("vLLM is not importable")
    from latentmas_ray.engines.vllm import VLLMEngine

    e = VLLMEngine.load(FP32_CPU, smollm2_dir, VLLMConfig(
        max_model_len=1024, max_num_seqs=4, cpu_kv_cache_gib=1, enforce_eager=True))
    yield e
    e.close()


@pytest.mark.vllm
def test_streamed_baseline_and_text_mas_equal_the_batch_forms(engine, gsm8k):
    from latentmas_ray.methods import get_method
    from latentmas_ray.run.streaming import StreamEvaluator

    for method, few in (("baseline", gsm8k), ("text_mas", gsm8k[:3])):
        cfg = _run_cfg(method, max_new=24)
        batch = get_method(method)(engine, few, cfg.method, 42)
        ev = StreamEvaluator(cfg, engine, {})
        assert ev.window == 8 < len(gsm8k)

        async def stream():
            return await asyncio.gather(*(ev.generate(s) for s in few))
        streamed = asyncio.run(stream())
        for a, b in zip(batch, streamed):
            assert a.id == b.id and a.prediction == b.prediction
            assert [t.output_ids for t in a.agents] == [t.output_ids for t in b.agents]
            assert [t.input_ids for t in a.agents] == [t.input_ids for t in b.agents]
            assert b.max_new_tokens is None and all(t.seconds > 0 for t in b.agents)
    occ = engine.occupancy.summary(engine.max_num_seqs)
    assert occ["steps"] > 0 and 1 <= occ["max_running"] <= engine.max_num_seqs == 4


@pytest.mark.vllm
def test_stream_in_process_writes_every_sample_once(engine, gsm8k):
    from latentmas_ray.run.batch import Evaluator
    from latentmas_ray.run.streaming import stream_in_process

    cfg = _run_cfg("baseline", max_new=16)
    written: list[list[dict]] = []
    stream_in_process(cfg, engine, gsm8k, {}, written.append)
    assert [len(w) for w in written] == [3, 3, 3, 3]             # generate_bs rows per write
    rows = {r["id"]: r for w in written for r in w}
    ref = Evaluator(cfg, "", engine=engine).run(gsm8k)
    assert set(rows) == {r["id"] for r in ref}
    for r in ref:
        assert rows[r["id"]]["agents"][0]["output_ids"] == r["agents"][0]["output_ids"]
        assert rows[r["id"]]["max_new_tokens"] is None


@pytest.mark.vllm
def test_budget_is_clipped_only_when_asked(engine):
    """What does not fit is that sample's error (its row), not the run's: SampleError."""
    from latentmas_ray.errors import SampleError

    assert engine.budget(100, 24) == 24
    with pytest.raises(SampleError, match=r"of 1000 positions \+ max_new_tokens 100 = 1100 "
                                          r"exceeds the vLLM engine's max_model_len 1024"):
        engine.budget(1000, 100, what="sample x: a prompt")
    assert engine.budget(1000, 100, clip=True) == 24
    with pytest.raises(SampleError):
        engine.budget(1024, 100, clip=True)                      # no room for one token


@pytest.mark.vllm
def test_text_mas_chain_past_max_model_len_is_that_samples_error_row(engine, gsm8k):
    """A TextMAS chain whose later agent outgrows vLLM's length: that sample's row records the
    error, the other samples' rows are the normal ones, and the run goes on (issue 24)."""
    from latentmas_ray.engines.vllm import VLLMEngine
    from latentmas_ray.run.streaming import StreamEvaluator, stream_in_process

    cfg = _run_cfg("text_mas", max_new=24)
    few = gsm8k[:3]
    ev = StreamEvaluator(cfg, engine, {})

    async def reference():
        return await asyncio.gather(*(ev.generate(s) for s in few))
    ref = {r.id: r for r in asyncio.run(reference())}
    last = {i: r.agents[-1].prompt_tokens for i, r in ref.items()}
    # the first sample's last agent overflows by one position; every earlier agent fits with
    # its whole budget (shorter prompts), so their outputs are those of the reference
    limit = last[few[0].id] + 24 - 1
    short = object.__new__(VLLMEngine)
    short.__dict__.update(engine.__dict__)
    short.max_model_len = limit
    written: list[list[dict]] = []
    stream_in_process(cfg, short, few, {}, written.append)
    rows = {r["id"]: r for w in written for r in w}
    assert sorted(rows) == sorted(ref)
    for sid, r in rows.items():
        if last[sid] + 24 > limit:
            assert r["error"].startswith("not evaluated: sample ") and not r["correct"], r
            assert "exceeds the vLLM engine's max_model_len" in r["error"]
        else:
            assert r["error"] is None or "not evaluated" not in r["error"]
            assert [a["output_ids"] for a in r["agents"]] == [
                list(a.output_ids) for a in ref[sid].agents]
    assert rows[few[0].id]["error"]


@pytest.mark.vllm
def test_clipped_budget_is_recorded_in_the_row(engine, gsm8k):
    """A prompt that fits but not with max_new_tokens: with --vllm_clip_max_new_tokens the
    request's budget is cut to what fits and the row says so."""
    from latentmas_ray.engines.vllm import VLLMEngine
    from latentmas_ray.run.rows import result_row
    from latentmas_ray.methods import baseline

    cfg = _run_cfg("baseline", max_new=1000, clip_max_new_tokens=True)
    clipping = object.__new__(VLLMEngine)
    clipping.__dict__.update(engine.__dict__)
    clipping.options = cfg.execution.vllm                       # the same engine, clipping on
    res = asyncio.run(baseline.run_sample(clipping, gsm8k[0], cfg.method, 42))
    prompt = res.agents[0].prompt_tokens
    assert res.max_new_tokens == 1024 - prompt
    assert res.agents[0].generated_tokens <= 1024 - prompt
    from latentmas_ray.tasks.scoring import score_samples
    (score,) = score_samples([gsm8k[0]], [res.prediction], "standard")
    assert result_row(gsm8k[0], res, score, "baseline")["max_new_tokens"] == 1024 - prompt


@pytest.mark.vllm
def test_streamed_hybrid_judger_equals_judge_phase(engine, smollm2_dir, gsm8k):
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.methods import hybrid
    from latentmas_ray.run.streaming import StreamEvaluator

    cfg = _run_cfg("latent_mas", max_new=16)
    hf = HFEngine.load(FP32_CPU, smollm2_dir)
    batch = hybrid.latent_phase(hf, gsm8k[:3], cfg.method, 42)
    ref = hybrid.judge_phase(engine, batch, cfg.method, 42)
    pairs = asyncio.run(StreamEvaluator(cfg, engine, {}).judge(batch, transfer_ms=3.0))
    for a, (b, stats) in zip(ref, pairs):
        assert a.id == b.id and a.agents[-1].output_ids == b.agents[-1].output_ids
        assert b.hops[0].bytes == a.hops[0].bytes == stats.shipped_bytes
        assert b.hops[0].ms == pytest.approx(1.0)
    # in process: HF latent batches in a worker thread, each judger streamed as it exists
    from latentmas_ray.engines.hf_vllm_pair import HybridEngine
    from latentmas_ray.run.streaming import stream_in_process

    cfg = dataclasses.replace(cfg, generate_bs=2)
    written: list[list[dict]] = []
    stream_in_process(cfg, HybridEngine(hf, engine), gsm8k[:3], {}, written.append)
    assert [len(w) for w in written] == [2, 1]
    rows = {r["id"]: r for w in written for r in w}
    for a in ref:
        assert rows[a.id]["agents"][-1]["output_ids"] == a.agents[-1].output_ids
        assert rows[a.id]["latent_steps"] == 3 * cfg.method.latent_steps


@pytest.mark.vllm
def test_the_vllm_replica_streams_each_samples_rows_once(engine, smollm2_dir, gsm8k):
    """`run_stream` / `judge_stream` (the actor's Ray streaming generators, here without Ray):
    one list per sample as it finishes, the rows `run` / `judge_rows` return for the batch."""
    from actors.common import typed_actor
    from actors.vllm_actor import VLLMReplica
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.methods import hybrid

    async def collect(stream):
        return [rows async for rows in stream]

    def untimed(r: dict) -> dict:       # wall-clock figures differ between two runs
        return {**r, "seconds": 0.0, "agents": [{**a, "seconds": 0.0} for a in r["agents"]],
                "hops": [{**h, "ms": 0.0} for h in r["hops"]]}

    def same(parts, whole):
        assert [len(p) for p in parts] == [1] * len(whole)
        got = {p[0]["id"]: p[0] for p in parts}
        assert sorted(got) == sorted(r["id"] for r in whole)           # each exactly once
        for r in whole:
            assert untimed(got[r["id"]]) == untimed(r)

    cfg = _run_cfg("baseline", max_new=16)
    rep = typed_actor(VLLMReplica)(cfg, smollm2_dir, {}, engine=engine)
    same(asyncio.run(collect(rep.run_stream(gsm8k[:6]))), asyncio.run(rep.run(gsm8k[:6])))

    cfg = _run_cfg("latent_mas", max_new=16)
    batch = hybrid.latent_phase(HFEngine.load(FP32_CPU, smollm2_dir), gsm8k[:3], cfg.method, 42)
    rep = typed_actor(VLLMReplica)(cfg, smollm2_dir, {}, engine=engine)
    whole = asyncio.run(rep.judge_rows(batch))
    same(asyncio.run(collect(rep.judge_stream(batch))), whole)
