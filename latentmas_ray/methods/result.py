"""Per-sample results and per-agent traces, plus the small helpers every method shares.

Accounting (the definitions the reports use):
- prompt_tokens: real (unpadded) prompt tokens of a call, summed over the sample's agents.
- generated_tokens: new tokens decoded, summed over agents; a stop token that ends a call IS
  counted (it is the last id of output_ids), as in HF generate's output sequences.
- latent_steps: latent vectors fed, summed over agents (LatentMAS: 3 * m; others: 0).
- seconds: a batch runs as one unit, so its wall time is split over its samples (per agent:
  that agent's phase time / B). The answering agent's decode is shared by the rows still
  running: a row that stops early is charged its share of the time until it stopped, the
  others share the rest (`Finished`). Sums over samples equal the real wall time.
- hops: what crossed between processes for this sample (the hybrid's judger input, a
  disaggregated run's working memory between role actors): bytes and milliseconds per hop.

K completions (method_cfg.num_return_sequences): a method returns B x K results, sample-major
(sample 0's completions 0..K-1, then sample 1's, ...), `sample_index` j = 0..K-1. Work shared by
the K completions of a sample (LatentMAS's latent agents and judger prefill, a baseline
prompt's prefill) is counted in each completion's trace, and its seconds split over the K.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from latentmas_ray.spec.seeding import completion_generator


@dataclass
class AgentTrace:
    role: str                 # planner | critic | refiner | judger | single
    name: str                 # display name ("Planner", "Math Agent", ...)
    input_ids: list[int]      # the agent's prompt, unpadded
    output_ids: list[int]     # decoded ids (stop token included); [] for latent agents
    prompt_tokens: int
    generated_tokens: int
    latent_steps: int
    seconds: float
    output: str = ""          # decoded text of output_ids ("" for latent agents)
    model: str = ""           # the checkpoint the agent ran on (engine_label)
    memory_bytes: int = 0     # LatentMAS thinkers: KV bytes of the memory passed on (its share)


@dataclass
class Hop:
    """One transfer of a sample's working memory between two actors."""

    src: str                  # sending role / engine ("refiner", "hf")
    dst: str                  # receiving one ("judger", "vllm")
    payload: str              # "kv" (cache tensors) | "embeds" (input embeddings to re-prefill)
    bytes: int                # this sample's share of the payload
    ms: float                 # this sample's share of put + get (serialise, move, deserialise)


@dataclass
class SampleResult:
    id: str
    prediction: str           # the final text (judger / last agent / single answer)
    agents: list[AgentTrace] = field(default_factory=list)
    generated_tokens: int = 0
    prompt_tokens: int = 0
    latent_steps: int = 0
    seconds: float = 0.0
    hops: list[Hop] = field(default_factory=list)
    sample_index: int = 0     # which of the sample's K completions (0..K-1)
    latents: dict | None = None   # --save_latents: {role: {"hidden", "fed"}} (completion 0 only)
    # the new-token budget when it was cut to fit vLLM's max_model_len (--vllm_clip_max_new_tokens;
    # TextMAS: the smallest of its agents'), else None (the run's max_new_tokens)
    max_new_tokens: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def finish(sample_id: str, prediction: str, agents: list[AgentTrace], seconds: float,
           sample_index: int = 0) -> SampleResult:
    return SampleResult(
        sample_index=sample_index,
        id=sample_id,
        prediction=prediction,
        agents=agents,
        generated_tokens=sum(a.generated_tokens for a in agents),
        prompt_tokens=sum(a.prompt_tokens for a in agents),
        latent_steps=sum(a.latent_steps for a in agents),
        seconds=seconds,
    )


def engine_label(engine) -> str:
    """The model folder an engine was loaded from ("" when unknown), for traces."""
    return str(getattr(engine, "source", "") or "")


def engine_for(agent, engine, engines: dict | None):
    """The engine an agent runs on: its own checkpoint's (engines: model -> engine, loaded once
    per replica) or the run's `engine`."""
    if agent.model is None:
        return engine
    assert engines and agent.model in engines, f"no engine loaded for {agent.model}"
    return engines[agent.model]


def completions(method_cfg) -> int:
    """K, the completions per sample (1 for configs made before the field existed)."""
    return int(getattr(method_cfg, "num_return_sequences", 1))


def generators_for(engine, samples, method_cfg, run_seed: int, k: int | None = None
                   ) -> list[torch.Generator | None]:
    """One generator per completion, sample-major (B x k; None when greedy): completion j of a
    sample is seeded from (run seed, sample id, j), so j = 0 is the sample's own stream.
    k: completions per sample (default: the method config's K)."""
    k = completions(method_cfg) if k is None else k
    if method_cfg.temperature == 0:
        return [None] * (len(samples) * k)
    return [completion_generator(run_seed, s.id, j, engine.device) for s in samples for j in range(k)]


def sampling_for(engine, method_cfg):
    return engine.sampling(method_cfg.temperature, method_cfg.top_p, method_cfg.top_k)


class Stopwatch:
    """Wall time of a phase, with the GPU synchronised so queued kernels are counted."""

    def __init__(self, engine):
        self.engine = engine
        engine.sync()
        self.t0 = time.perf_counter()

    def lap(self) -> float:
        self.engine.sync()
        t = time.perf_counter()
        dt, self.t0 = t - self.t0, t
        return dt


# a method's `on_results`: the K results of each sample that finished, as soon as it has
OnResults = Callable[[list[SampleResult]], None]


class Finished:
    """The answering decode's B x K results, built as its rows finish: the engine's
    `on_finished(rows, tokens)` (engines/hf.py generate; vLLM's batch form tells every row at
    its end). `build(row, tokens, seconds)` makes a row's SampleResult; `on_results` hears the
    K results of each sample once its K rows are built (each sample exactly once). seconds:
    the decode's wall time shared by the rows still running (the module's accounting), from
    this object's creation."""

    def __init__(self, engine, rows: int, k: int,
                 build: Callable[[int, list[int], float], SampleResult],
                 on_results: OnResults | None = None):
        self.engine, self.k, self.build, self.on_results = engine, k, build, on_results
        self.results: list[SampleResult | None] = [None] * rows
        self.running = rows
        self.share = 0.0            # seconds each row still running has been charged so far
        engine.sync()
        self.t = time.perf_counter()

    def __call__(self, rows: list[int], tokens: list[list[int]]) -> None:
        self.engine.sync()
        t = time.perf_counter()
        self.share += (t - self.t) / max(self.running, 1)
        self.t, self.running = t, self.running - len(rows)
        for row, out in zip(rows, tokens):
            assert self.results[row] is None, f"row {row} finished twice"
            self.results[row] = self.build(row, out, self.share)
        if self.on_results is not None:
            k = self.k
            done = sorted({r // k for r in rows
                           if all(x is not None for x in self.results[r // k * k:(r // k + 1) * k])})
            if done:
                self.on_results([self.results[i * k + j] for i in done for j in range(k)])

    def all(self) -> list[SampleResult]:
        assert all(r is not None for r in self.results), "a row was never finished"
        return list(self.results)
