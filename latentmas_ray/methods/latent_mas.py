"""LatentMAS (REFERENCE.md 3): planner, critic and refiner think in latent space into one
shared KV memory; the judger reads it and decodes the answer.

Per non-judger agent: its own prompt (context "", so no text flows between agents), rendered
with the chat template (+ "<think>" when cfg.think), prefilled after the shared memory, then
m = latent_steps latent thoughts. The memory mode then decides what is passed on ("full" = the
reference). The judger's prompt is prefilled after the memory and decoded.

Reference quirk kept by default (cfg.judger_drops_cache_at_zero_steps): with m == 0 the judger
decodes from its own prompt with an empty memory (the three prefills are still run, as in
the reference, so timings compare). Batching is exact: see latent/cache.py.

The two steps, `latent_agent_step` and `judger_step`, are also what the hybrid (HF agents +
vLLM judger) and the disaggregated placement (one actor per role) run, so every placement
computes exactly this.

K completions (method_cfg.num_return_sequences): the latent agents run ONCE per question (they
draw no random numbers: the same prompt gives the same memory), the judger's prompt is
prefilled once after that memory, and only then is each row forked K ways for decoding
(HFEngine.generate), so K answers cost one latent rollout + one prefill + K decodes. Each
completion row carries the shared agents' traces with their seconds split over its K rows.
"""

from __future__ import annotations

import dataclasses

from ..latent.rollout import run_latent_agent
from ..prompts import AGENT_ROLES, agent_name, build_messages
from .latent_inputs import LatentRecorder
from .result import (AgentTrace, SampleResult, Stopwatch, completions, finish, generators_for,
                     sampling_for)

LATENT_ROLES = AGENT_ROLES[:-1]     # planner, critic, refiner (sequential order)


def judger_uses_memory(method_cfg) -> bool:
    return not (method_cfg.latent_steps == 0 and method_cfg.judger_drops_cache_at_zero_steps)


def role_prompt_ids(engine, samples, role: str, method_cfg,
                    prompts: dict[str, str] | None = None) -> list[list[int]]:
    """Each sample's prompt for `role`, tokenized (unpadded)."""
    return [engine.tokenize(engine.render(build_messages(
        "latent_mas", method_cfg.prompt, role, s.kind, s.question, "", prompts),
        think=method_cfg.think)) for s in samples]


def latent_agent_step(engine, kv, samples, role: str, method_cfg, realign,
                      prompts: dict[str, str] | None = None) -> list[AgentTrace]:
    """One latent agent on the batch's memory `kv` (grown in place, then cut to the memory
    mode): its prompt, then m latent thoughts. Returns each sample's trace of this agent."""
    b, m = len(samples), method_cfg.latent_steps
    clock = Stopwatch(engine)
    prompt_ids = role_prompt_ids(engine, samples, role, method_cfg, prompts)
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    run_latent_agent(engine, kv, ids, mask, m, realign)
    kv.apply_memory_mode(method_cfg.memory)
    per_sample = clock.lap() / b
    return [AgentTrace(role, agent_name(method_cfg.prompt, role), prompt_ids[i], [],
                       len(prompt_ids[i]), 0, m, per_sample) for i in range(b)]


def judger_step(engine, kv, samples, method_cfg, run_seed: int, traces: list[list[AgentTrace]],
                prompts: dict[str, str] | None = None) -> list[SampleResult]:
    """The judger reads `kv` (the latent agents' memory) and decodes; `traces` are the earlier
    agents' traces per sample. Consumes kv. Returns B x K results, sample-major (K =
    method_cfg.num_return_sequences: one prefill per sample, the memory forked K ways)."""
    b, k = len(samples), completions(method_cfg)
    clock = Stopwatch(engine)
    if not judger_uses_memory(method_cfg):
        kv = engine.new_memory(b)
    prompt_ids = role_prompt_ids(engine, samples, "judger", method_cfg, prompts)
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    outs = engine.generate(kv, ids, mask, method_cfg.max_new_tokens,
                           sampling_for(engine, method_cfg),
                           generators_for(engine, samples, method_cfg, run_seed),
                           **({"num_return_sequences": k} if k > 1 else {}))   # B*K rows
    per_row = clock.lap() / (b * k)
    results = []
    for row, out in enumerate(outs):
        i, j = row // k, row % k
        text = engine.decode(out).strip()
        shared = traces[i] if k == 1 else [dataclasses.replace(a, seconds=a.seconds / k)
                                           for a in traces[i]]
        agents = list(shared) + [AgentTrace(
            "judger", agent_name(method_cfg.prompt, "judger"), prompt_ids[i], out,
            len(prompt_ids[i]), len(out), 0, per_row, text)]
        results.append(finish(samples[i].id, text, agents, sum(a.seconds for a in agents), j))
    return results


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None,
              save_latents: bool = False) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts.
    save_latents: attach every latent step's hidden state and fed vector to each sample's
    completion-0 result (`SampleResult.latents`, on the CPU, fp32) for `latentmas-ray inspect`."""
    assert samples, "empty batch"
    realign = engine.realigner(method_cfg.latent_space_realign)
    recorder = LatentRecorder(realign, keep_hidden=True) if save_latents else None
    latents: list[dict] = [{} for _ in samples]
    traces: list[list[AgentTrace]] = [[] for _ in samples]
    kv = engine.new_memory(len(samples))
    for role in LATENT_ROLES:
        for trace, step in zip(traces, latent_agent_step(engine, kv, samples, role, method_cfg,
                                                         recorder or realign, prompts)):
            trace.append(step)
        if recorder is not None:
            for i, saved in enumerate(recorder.take()):
                latents[i][role] = saved
    results = judger_step(engine, kv, samples, method_cfg, run_seed, traces, prompts)
    if save_latents:
        k = completions(method_cfg)
        for row, r in enumerate(results):
            if r.sample_index == 0:
                r.latents = latents[row // k]
    return results
