"""LatentMAS (REFERENCE.md 3): planner, critic and refiner think in latent space into one
shared KV memory; the judger reads it and decodes the answer.

Per non-judger agent: its own prompt (context "", so no text flows between agents), rendered
with the chat template (+ "<think>" when cfg.think), prefilled after the shared memory, then
m = latent_steps latent thoughts. The memory mode then decides what is passed on ("full" = the
reference). The judger's prompt is prefilled after the memory and decoded.

Reference quirk kept by default (cfg.judger_drops_cache_at_zero_steps): with m == 0 the judger
decodes from its own prompt with an empty memory (the three prefills are still run, as in
the reference, so timings compare). Batching is exact: see latent/cache.py.
"""

from __future__ import annotations

from ..latent.rollout import run_latent_agent
from ..prompts import AGENT_ROLES, agent_name, build_messages
from .result import AgentTrace, SampleResult, Stopwatch, finish, generators_for, sampling_for


def judger_uses_memory(method_cfg) -> bool:
    return not (method_cfg.latent_steps == 0 and method_cfg.judger_drops_cache_at_zero_steps)


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts."""
    assert samples, "empty batch"
    b, topo, m = len(samples), method_cfg.prompt, method_cfg.latent_steps
    realign = engine.realigner(method_cfg.latent_space_realign)
    traces: list[list[AgentTrace]] = [[] for _ in range(b)]
    clock = Stopwatch(engine)

    def prompt_ids_for(role: str) -> list[list[int]]:
        return [engine.tokenize(engine.render(build_messages(
            "latent_mas", topo, role, s.kind, s.question, "", prompts),
            think=method_cfg.think)) for s in samples]

    kv = engine.new_memory(b)
    for role in AGENT_ROLES[:-1]:
        prompt_ids = prompt_ids_for(role)
        ids, mask = engine.pad_left(prompt_ids)                           # [B, L]
        run_latent_agent(engine, kv, ids, mask, m, realign)
        kv.apply_memory_mode(method_cfg.memory)
        per_sample = clock.lap() / b
        for i in range(b):
            traces[i].append(AgentTrace(role, agent_name(topo, role), prompt_ids[i], [],
                                        len(prompt_ids[i]), 0, m, per_sample))

    if not judger_uses_memory(method_cfg):
        kv = engine.new_memory(b)
    prompt_ids = prompt_ids_for("judger")
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    outs = engine.generate(kv, ids, mask, method_cfg.max_new_tokens,
                           sampling_for(engine, method_cfg),
                           generators_for(engine, samples, method_cfg, run_seed))
    per_sample = clock.lap() / b
    results = []
    for i, s in enumerate(samples):
        text = engine.decode(outs[i]).strip()
        traces[i].append(AgentTrace("judger", agent_name(topo, "judger"), prompt_ids[i], outs[i],
                                    len(prompt_ids[i]), len(outs[i]), 0, per_sample, text))
        results.append(finish(s.id, text, traces[i], sum(a.seconds for a in traces[i])))
    return results
