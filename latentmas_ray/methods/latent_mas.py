"""LatentMAS (REFERENCE.md 3): planner, critic and refiner think in latent space into one
shared KV memory; the judger reads it and decodes the answer.

The agents are data (prompts.team_for: the built-in topology or --agents): every agent but the
last thinks, the last answers ("judger" below means that last agent). An agent with its own
checkpoint (same KV layout and tokenizer: models.check_agent_models) runs on its own engine
(`engines`: model -> engine), its latent steps with that model's realignment; the memory passes
between engines as between roles.

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

from ..latent.memory import AttentionMass, apply_memory
from ..latent.rollout import run_latent_agent
from ..prompts import AGENT_ROLES, agent_messages, team_for
from .latent_inputs import LatentRecorder
from .result import (AgentTrace, Finished, OnResults, SampleResult, Stopwatch, completions,
                     engine_for, engine_label, finish, generators_for, sampling_for)

LATENT_ROLES = AGENT_ROLES[:-1]     # the built-in thinking roles: planner, critic, refiner


def judger_uses_memory(method_cfg) -> bool:
    return not (method_cfg.latent_steps == 0 and method_cfg.judger_drops_cache_at_zero_steps)


def thinking_roles(method_cfg) -> tuple[str, ...]:
    return tuple(a.role for a in team_for(method_cfg).thinkers)


def answering_role(method_cfg) -> str:
    return team_for(method_cfg).answerer.role


def role_prompt_ids(engine, samples, role: str, method_cfg,
                    prompts: dict[str, str] | None = None) -> list[list[int]]:
    """Each sample's prompt for `role`, tokenized (unpadded)."""
    team = team_for(method_cfg)
    agent = team.agent(role)
    return [engine.tokenize(engine.render(agent_messages(
        "latent_mas", team, agent, s.kind, s.question, "", prompts),
        think=method_cfg.think)) for s in samples]


def latent_agent_step(engine, kv, samples, role: str, method_cfg, realign,
                      prompts: dict[str, str] | None = None) -> list[AgentTrace]:
    """One latent agent on the batch's memory `kv` (grown in place, then cut to the memory
    mode): its prompt, then m latent thoughts. Returns each sample's trace of this agent."""
    b, m = len(samples), method_cfg.latent_steps
    clock = Stopwatch(engine)
    prompt_ids = role_prompt_ids(engine, samples, role, method_cfg, prompts)
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    mass = AttentionMass() if method_cfg.memory == "top_attention" else None
    run_latent_agent(engine, kv, ids, mask, m, realign, mass)
    apply_memory(kv, method_cfg, mass)                  # what this agent passes on
    passed = kv.sample_nbytes()
    per_sample = clock.lap() / b
    name, model = team_for(method_cfg).agent(role).name, engine_label(engine)
    return [AgentTrace(role, name, prompt_ids[i], [], len(prompt_ids[i]), 0, m, per_sample,
                       model=model, memory_bytes=int(passed[i])) for i in range(b)]


def judger_step(engine, kv, samples, method_cfg, run_seed: int, traces: list[list[AgentTrace]],
                prompts: dict[str, str] | None = None, on_results: OnResults | None = None
                ) -> list[SampleResult]:
    """The judger reads `kv` (the latent agents' memory) and decodes; `traces` are the earlier
    agents' traces per sample. Consumes kv. Returns B x K results, sample-major (K =
    method_cfg.num_return_sequences: one prefill per sample, the memory forked K ways).
    on_results: hears each sample's K results as soon as its rows finish (result.Finished)."""
    b, k = len(samples), completions(method_cfg)
    answerer = team_for(method_cfg).answerer

    def build(row: int, out: list[int], seconds: float) -> SampleResult:
        return judger_result(engine, samples[row // k].id, answerer, prompt_ids[row // k], out,
                             traces[row // k], seconds, k=k, j=row % k)

    finished = Finished(engine, b * k, k, build, on_results)
    if not judger_uses_memory(method_cfg):
        kv = engine.new_memory(b)
    prompt_ids = role_prompt_ids(engine, samples, answerer.role, method_cfg, prompts)
    ids, mask = engine.pad_left(prompt_ids)                               # [B, L]
    engine.generate(kv, ids, mask, method_cfg.max_new_tokens, sampling_for(engine, method_cfg),
                    generators_for(engine, samples, method_cfg, run_seed),
                    **({"num_return_sequences": k} if k > 1 else {}),     # B*K rows
                    on_finished=finished)
    return finished.all()


def judger_result(engine, sample_id: str, answerer, prompt_ids: list[int], out: list[int],
                  traces: list[AgentTrace], seconds: float, *, k: int = 1, j: int = 0
                  ) -> SampleResult:
    """Completion j (of K) of a sample's judger, decoded by `engine` from `out`: the earlier
    agents' traces (their seconds split over the K completions that share them), the judger's
    own trace, and the sums. The one place a judger's result is assembled: the HF judger here,
    the hybrid's vLLM judger (methods/hybrid.py, batched and streamed), every placement."""
    text = engine.decode(out).strip()
    shared = list(traces) if k == 1 else [dataclasses.replace(a, seconds=a.seconds / k)
                                          for a in traces]
    agents = shared + [AgentTrace(answerer.role, answerer.name, prompt_ids, out, len(prompt_ids),
                                  len(out), 0, seconds, text, engine_label(engine))]
    return finish(sample_id, text, agents, sum(a.seconds for a in agents), j)


def run_batch(engine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None,
              save_latents: bool = False, engines: dict | None = None,
              on_results: OnResults | None = None) -> list[SampleResult]:
    """prompts: user prompt templates (prompts.load_prompt_file); None = the built-in texts.
    save_latents: attach every latent step's hidden state and fed vector to each sample's
    completion-0 result (`SampleResult.latents`, on the CPU, fp32) for `latentmas-ray inspect`.
    engines: the per-agent checkpoints' engines (model -> engine); `engine` runs the others.
    on_results: hears each sample's K results as its judger rows finish (see judger_step),
    latents attached."""
    assert samples, "empty batch"
    team = team_for(method_cfg)
    latents: list[dict] = [{} for _ in samples]
    traces: list[list[AgentTrace]] = [[] for _ in samples]
    kv = engine.new_memory(len(samples))
    for agent in team.thinkers:
        e = engine_for(agent, engine, engines)
        realign = e.realigner(method_cfg.latent_space_realign)      # this agent's model's map
        recorder = LatentRecorder(realign, keep_hidden=True) if save_latents else None
        for trace, step in zip(traces, latent_agent_step(e, kv, samples, agent.role, method_cfg,
                                                         recorder or realign, prompts)):
            trace.append(step)
        if recorder is not None:
            for i, saved in enumerate(recorder.take()):
                latents[i][agent.role] = saved
    index = {s.id: i for i, s in enumerate(samples)}

    def with_latents(results: list[SampleResult]) -> list[SampleResult]:
        if save_latents:                # completion 0 of each sample carries its latents
            for r in results:
                if r.sample_index == 0:
                    r.latents = latents[index[r.id]]
        return results

    heard = None if on_results is None else (lambda rs: on_results(with_latents(rs)))
    return with_latents(judger_step(engine_for(team.answerer, engine, engines), kv, samples,
                                    method_cfg, run_seed, traces, prompts, heard))
