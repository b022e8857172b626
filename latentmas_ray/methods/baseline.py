"""Baseline: one chat per sample (role "single"), decoded with the max_new_tokens budget.
K completions: the prompt is prefilled once and decoded K ways (engine.generate's fork).
With --agents the single chat runs on the answering (last) agent's model, if it has one."""

from __future__ import annotations

import time

from ..prompts import agent_name, build_messages, team_for
from .result import (AgentTrace, Finished, OnResults, SampleResult, completions, engine_for,
                     engine_label, finish, generators_for, sampling_for)


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None,
              engines: dict | None = None, on_results: OnResults | None = None
              ) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts.
    engines: per-agent checkpoints' engines (model -> engine). on_results: hears each sample's
    K results as soon as its rows finish decoding (result.Finished); all are returned too."""
    assert samples, "empty batch"
    engine = engine_for(team_for(method_cfg).answerer, engine, engines)
    b, k = len(samples), completions(method_cfg)
    name = agent_name(method_cfg.prompt, "single")

    def build(row: int, o: list[int], seconds: float) -> SampleResult:
        s, j, p = samples[row // k], row % k, prompt_ids[row // k]
        text = engine.decode(o).strip()
        trace = AgentTrace("single", name, p, o, len(p), len(o), 0, seconds, text,
                           engine_label(engine))
        return finish(s.id, text, [trace], seconds, j)

    finished = Finished(engine, b * k, k, build, on_results)
    prompt_ids = [engine.tokenize(engine.render(build_messages(
        "baseline", method_cfg.prompt, "single", s.kind, s.question, "", prompts)))
        for s in samples]
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    engine.generate(engine.new_memory(b), ids, mask, method_cfg.max_new_tokens,
                    sampling_for(engine, method_cfg),
                    generators_for(engine, samples, method_cfg, run_seed),
                    **({"num_return_sequences": k} if k > 1 else {}),     # B*K rows
                    on_finished=finished)
    return finished.all()


async def run_sample(engine, sample, method_cfg, run_seed: int,
                     prompts: dict[str, str] | None = None) -> SampleResult:
    """One sample as one request on an engine with `agenerate` (vLLM), awaited: the form the
    streaming runner uses. Same prompt, budget and seed as `run_batch`, so the same tokens;
    `seconds` is this sample's own latency (requests overlap)."""
    from ..engines.vllm import call_seeds

    t0 = time.perf_counter()
    p = engine.tokenize(engine.render(build_messages(
        "baseline", method_cfg.prompt, "single", sample.kind, sample.question, "", prompts)))
    budget = engine.budget(len(p), method_cfg.max_new_tokens,
                           what=f"sample {sample.id}: a prompt")
    (seed,) = call_seeds(generators_for(engine, [sample], method_cfg, run_seed))
    out = await engine.agenerate(p, None, budget, sampling_for(engine, method_cfg), seed)
    seconds = time.perf_counter() - t0
    text = engine.decode(out).strip()
    trace = AgentTrace("single", agent_name(method_cfg.prompt, "single"), p, out, len(p),
                       len(out), 0, seconds, text)
    result = finish(sample.id, text, [trace], seconds)
    result.max_new_tokens = budget if budget != method_cfg.max_new_tokens else None
    return result
