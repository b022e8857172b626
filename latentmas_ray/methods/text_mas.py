"""TextMAS (REFERENCE.md 5): planner -> critic -> refiner -> judger, each a fresh chat that
reads the earlier agents' text.

Each non-judger output is appended to the sample's context as "[{Name}]:\n{text}\n\n"; every
agent is given context[:text_mas_context_length] (the reference's slice, so the default -1
drops the last character) and the full max_new_tokens budget. The judger's text is the answer.

K completions: K independent chains per sample, each from its own seeded stream from the
planner on. Unlike LatentMAS nothing can be shared: the planner's sampled text already differs
between chains, and every later agent reads it, so a chain's whole cost is paid K times.
"""

from __future__ import annotations

import time

from ..prompts import agent_messages, team_for
from .result import (AgentTrace, Finished, OnResults, SampleResult, Stopwatch, completions,
                     engine_for, engine_label, finish, generators_for, sampling_for)


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None,
              engines: dict | None = None, on_results: OnResults | None = None
              ) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts.
    The agents: prompts.team_for (built-in topology or --agents; the last one answers);
    engines: per-agent checkpoints' engines (model -> engine). on_results: hears each sample's
    K chains as soon as the answering agent's rows finish (result.Finished); all are returned."""
    assert samples, "empty batch"
    k, team = completions(method_cfg), team_for(method_cfg)
    sp = sampling_for(engine, method_cfg)
    gens = generators_for(engine, samples, method_cfg, run_seed)   # one stream per chain, all agents
    samples = [s for s in samples for _ in range(k)]                # B*K chains, sample-major
    b = len(samples)
    contexts = [""] * b
    traces: list[list[AgentTrace]] = [[] for _ in range(b)]
    clock = Stopwatch(engine)
    for agent in team.thinkers:
        role, name, e = agent.role, agent.name, engine_for(agent, engine, engines)
        prompt_ids = agent_prompts(e, team, agent, samples, contexts, method_cfg, prompts)
        ids, mask = e.pad_left(prompt_ids)                                # [B, L]
        outs = e.generate(e.new_memory(b), ids, mask, method_cfg.max_new_tokens, sp, gens)
        per_sample = clock.lap() / b
        for i in range(b):
            text = e.decode(outs[i]).strip()
            traces[i].append(AgentTrace(role, name, prompt_ids[i], outs[i], len(prompt_ids[i]),
                                        len(outs[i]), 0, per_sample, text, engine_label(e)))
            contexts[i] += f"[{name}]:\n{text}\n\n"
    agent = team.answerer
    e = engine_for(agent, engine, engines)

    def build(i: int, out: list[int], seconds: float) -> SampleResult:
        text = e.decode(out).strip()
        chain = traces[i] + [AgentTrace(agent.role, agent.name, prompt_ids[i], out,
                                        len(prompt_ids[i]), len(out), 0, seconds, text,
                                        engine_label(e))]
        return finish(samples[i].id, text, chain, sum(a.seconds for a in chain), i % k)

    finished = Finished(e, b, k, build, on_results)
    prompt_ids = agent_prompts(e, team, agent, samples, contexts, method_cfg, prompts)
    ids, mask = e.pad_left(prompt_ids)                                    # [B, L]
    e.generate(e.new_memory(b), ids, mask, method_cfg.max_new_tokens, sp, gens,
               on_finished=finished)
    return finished.all()


def agent_prompts(engine, team, agent, samples, contexts: list[str], method_cfg,
                  prompts: dict[str, str] | None) -> list[list[int]]:
    """Each chain's prompt for `agent`, tokenized: it reads the earlier agents' text."""
    return [engine.tokenize(engine.render(agent_messages(
        "text_mas", team, agent, s.kind, s.question,
        contexts[i][:method_cfg.text_mas_context_length], prompts)))
        for i, s in enumerate(samples)]


async def run_sample(engine, sample, method_cfg, run_seed: int,
                     prompts: dict[str, str] | None = None) -> SampleResult:
    """One sample's chain on an engine with `agenerate` (vLLM): each agent is one request,
    submitted the moment the previous agent's text is back, so no sample waits for another.
    Same prompts, budgets and seeds (the k-th call draws the k-th seed of the sample's stream)
    as `run_batch`, so the same tokens; each agent's `seconds` is its own request's latency."""
    from ..engines.vllm import call_seeds

    team = team_for(method_cfg)
    sp = sampling_for(engine, method_cfg)
    gens = generators_for(engine, [sample], method_cfg, run_seed)
    context, text, clipped = "", "", None
    traces: list[AgentTrace] = []
    for agent in team.agents:
        t0 = time.perf_counter()
        role, name = agent.role, agent.name
        p = engine.tokenize(engine.render(agent_messages(
            "text_mas", team, agent, sample.kind, sample.question,
            context[:method_cfg.text_mas_context_length], prompts)))
        budget = engine.budget(len(p), method_cfg.max_new_tokens,
                               what=f"sample {sample.id}: the {role}'s prompt")
        if budget != method_cfg.max_new_tokens:
            clipped = budget if clipped is None else min(clipped, budget)
        (seed,) = call_seeds(gens)
        out = await engine.agenerate(p, None, budget, sp, seed)
        text = engine.decode(out).strip()
        traces.append(AgentTrace(role, name, p, out, len(p), len(out), 0,
                                 time.perf_counter() - t0, text, engine_label(engine)))
        if agent is not team.answerer:
            context += f"[{name}]:\n{text}\n\n"
    result = finish(sample.id, text, traces, sum(a.seconds for a in traces))
    result.max_new_tokens = clipped
    return result
