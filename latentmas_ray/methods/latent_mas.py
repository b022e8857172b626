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
"""

from __future__ import annotations

from ..latent.rollout import run_latent_agent
from ..prompts import AGENT_ROLES, agent_name, build_messages
from .result import AgentTrace, SampleResult, Stopwatch, finish, generators_for, sampling_for

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
    agents' traces per sample. Consumes kv."""
    b = len(samples)
    clock = Stopwatch(engine)
    if not judger_uses_memory(method_cfg):
        kv = engine.new_memory(b)
    prompt_ids = role_prompt_ids(engine, samples, "judger", method_cfg, prompts)
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    outs = engine.generate(kv, ids, mask, method_cfg.max_new_tokens,
                           sampling_for(engine, method_cfg),
                           generators_for(engine, samples, method_cfg, run_seed))
    per_sample = clock.lap() / b
    results = []
    for i, s in enumerate(samples):
        text = engine.decode(outs[i]).strip()
        agents = list(traces[i]) + [AgentTrace(
            "judger", agent_name(method_cfg.prompt, "judger"), prompt_ids[i], outs[i],
            len(prompt_ids[i]), len(outs[i]), 0, per_sample, text)]
        results.append(finish(s.id, text, agents, sum(a.seconds for a in agents)))
    return results


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts."""
    assert samples, "empty batch"
    realign = engine.realigner(method_cfg.latent_space_realign)
    traces: list[list[AgentTrace]] = [[] for _ in samples]
    kv = engine.new_memory(len(samples))
    for role in LATENT_ROLES:
        for trace, step in zip(traces, latent_agent_step(engine, kv, samples, role, method_cfg,
                                                         realign, prompts)):
            trace.append(step)
    return judger_step(engine, kv, samples, method_cfg, run_seed, traces, prompts)
