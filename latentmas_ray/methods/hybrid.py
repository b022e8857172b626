"""Hybrid LatentMAS: the latent agents run on the HF engine, the judger decodes on stock vLLM.

Phase 1, HF (`latent_phase`): planner, critic and refiner run exactly as in
`methods/latent_mas.py` (its own `latent_agent_step` on one shared BatchKV),
while we record what each agent fed the model: its prompt tokens and its m realigned latent
vectors. Per sample we then build the judger's input as ONE embedding sequence, in cache order:

    [planner prompt | m latents | critic prompt | m latents | refiner prompt | m latents | judger prompt]

token embeddings (the HF input embedding of the real, unpadded prompt tokens) and the latent
vectors exactly as they were fed. Our BatchKV gives each row contiguous positions 0..N-1 over
its real entries, so prefilling this sequence at positions 0..N-1 rebuilds the HF cache the
judger reads (up to kernel rounding): greedy tokens agree with `latent_mas` (tests/test_vllm.py).
Unlike the reference's vLLM path (REFERENCE.md 8) nothing is spliced into the judger's user turn
and no row carries pad or zero vectors.

Phase 2, vLLM (`judge_phase`): `{"prompt_embeds": tensor[N, D]}` per sample, decoded with the
method's sampling settings. Only phase 2's input crosses between actors: N x D values in the
model dtype (SmolLM2 fp32, GSM8K, m=4: ~570 x 576 x 4 B = 1.3 MB per sample, measured).

Supported: memory "full" only (the reference; RunConfig refuses the others with --use_vllm).
"last_agent"/"latent_only" keep cache columns at their original positions with a gap before the
judger, which a prompt_embeds sequence (always positions 0..N-1) cannot express. The reference quirk at latent_steps=0 is kept: by default the
judger then drops the memory and its input is its own prompt only.

`run_batch` is the in-process form (both engines in one process, phases back to back);
actors/vllm_actor.py runs phase 1 and phase 2 in two actors, pipelined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from latentmas_ray.engines.hf_vllm_pair import HybridEngine
from ..engines.vllm import call_seeds
from ..prompts import team_for
from .latent_inputs import LatentRecorder, agent_input_embeds, prompt_embeds
from .latent_mas import (answering_role, judger_result, judger_step, judger_uses_memory,
                         latent_agent_step, role_prompt_ids, thinking_roles)
from .result import AgentTrace, Hop, SampleResult, completions, generators_for, sampling_for


@dataclass
class LatentBatch:
    """Phase 1's output: everything phase 2 needs, on the CPU (picklable, object-store ready)."""

    samples: list                       # the batch's Samples
    embeds: list[torch.Tensor]          # per sample: the judger's input [N_i, D], model dtype
    judger_ids: list[list[int]]         # per sample: the judger's own prompt (unpadded)
    traces: list[list[AgentTrace]]      # per sample: the three latent agents
    hf_seconds: float                   # wall time of phase 1 (latent agents + embeddings)
    embed_seconds: float                # of which: assembling the judger inputs after the
    #                                     agents (counted in the judger's trace seconds)
    memory_used: bool                   # False at latent_steps=0 with the reference quirk
    memory: Any = None                  # the HF BatchKV the judger would read (keep_memory=True
    #                                     only; never shipped: it is what the embeddings replace)

    @property
    def shipped_bytes(self) -> list[int]:
        return [int(e.numel() * e.element_size()) for e in self.embeds]


@dataclass
class HybridStats:
    """Per-sample transport and timing of the hybrid path (the side channel of run_batch)."""

    shipped_bytes: int                  # bytes of the judger's input embeddings
    shipped_positions: int              # N, positions of that input
    hf_seconds: float                   # phase 1 wall time / B
    vllm_seconds: float                 # phase 2 wall time / B
    extra: dict[str, Any] = field(default_factory=dict)


def latent_phase(hf, samples, method_cfg, run_seed: int,
                 prompts: dict[str, str] | None = None, keep_memory: bool = False) -> LatentBatch:
    """Run planner, critic and refiner on the HF engine; return the judgers' inputs.
    keep_memory: also keep the HF memory in the result, for `judge_on_hf` (tests, checks)."""
    assert samples, "empty batch"
    b = len(samples)
    recorder = LatentRecorder(hf.realigner(method_cfg.latent_space_realign))
    traces: list[list[AgentTrace]] = [[] for _ in range(b)]
    pieces: list[list[torch.Tensor]] = [[] for _ in range(b)]
    t_start = time.perf_counter()

    kv = hf.new_memory(b)
    for role in thinking_roles(method_cfg):
        steps = latent_agent_step(hf, kv, samples, role, method_cfg, recorder, prompts)
        for i, (step, emb) in enumerate(zip(steps, agent_input_embeds(hf, steps, recorder))):
            traces[i].append(step)
            pieces[i].append(emb)                                        # [L_i + m, D]
    memory = kv if keep_memory else None
    del kv                       # phase 2 does not need it: free it before building the inputs

    t0 = time.perf_counter()
    memory_used = judger_uses_memory(method_cfg)
    if not memory_used:          # the reference quirk: the judger answers from its prompt only
        pieces = [[] for _ in range(b)]
    judger_ids = role_prompt_ids(hf, samples, answering_role(method_cfg), method_cfg, prompts)
    embeds = []
    for i in range(b):
        pieces[i].append(prompt_embeds(hf, judger_ids[i]))
        embeds.append(torch.cat(pieces[i], dim=0).to("cpu").contiguous())   # [N_i, D]
    hf.sync()
    embed_seconds = time.perf_counter() - t0
    return LatentBatch(list(samples), embeds, judger_ids, traces,
                       time.perf_counter() - t_start, embed_seconds, memory_used, memory)


def judge_on_hf(hf, batch: LatentBatch, method_cfg, run_seed: int,
                prompts: dict[str, str] | None = None) -> list[SampleResult]:
    """The HF judger on a `latent_phase(..., keep_memory=True)` batch: `latent_mas.judger_step`
    on the kept memory, so latent_phase + judge_on_hf == latent_mas.run_batch (tests/test_vllm.py
    checks it). Lets a check compare both judgers on ONE latent phase. Consumes batch.memory."""
    assert batch.memory is not None, "latent_phase(..., keep_memory=True) keeps the memory"
    kv, batch.memory = batch.memory, None
    return judger_step(hf, kv, batch.samples, method_cfg, run_seed, batch.traces, prompts)


def judge_phase(vllm, batch: LatentBatch, method_cfg, run_seed: int,
                stats: dict[str, HybridStats] | None = None,
                transfer_ms: float = 0.0) -> list[SampleResult]:
    """Decode every sample's judger on vLLM from its input embeddings. transfer_ms: what
    moving `batch` between the actors cost (0 in one process), recorded on each sample's Hop."""
    b, k, answerer = len(batch.samples), completions(method_cfg), team_for(method_cfg).answerer
    t0 = time.perf_counter()
    # K completions: one request per sample with SamplingParams.n = K (one prefill, K decodes)
    outs = vllm.generate_embeds(batch.embeds, method_cfg.max_new_tokens,
                                sampling_for(vllm, method_cfg),
                                _seeds(vllm, batch.samples, method_cfg, run_seed),
                                **({"n": k} if k > 1 else {}))                     # B*K rows
    vllm_seconds = time.perf_counter() - t0
    # The judger's share: building its input (phase 1) + decoding (phase 2), split evenly.
    judger_seconds = (batch.embed_seconds + vllm_seconds) / (b * k)
    results = []
    for row, out in enumerate(outs):
        i, j = row // k, row % k
        result = judger_result(vllm, batch.samples[i].id, answerer, batch.judger_ids[i], out,
                               batch.traces[i], judger_seconds, k=k, j=j)
        # shipped once per sample: each of its K rows carries a K-th of the bytes and time
        result.hops.append(_hop(batch.embeds[i], transfer_ms / (b * k), k))
        if stats is not None and j == 0:
            stats[batch.samples[i].id] = _stats(batch, i, vllm_seconds / b)
        results.append(result)
    return results


def _hop(emb: torch.Tensor, ms: float, k: int = 1) -> Hop:
    """The hf -> vllm hop of one judger input [N, D], as one of its sample's K rows records it."""
    return Hop("hf", "vllm", "embeds", int(emb.numel() * emb.element_size()) // k, ms)


def _stats(batch: LatentBatch, i: int, vllm_seconds: float) -> HybridStats:
    emb, b = batch.embeds[i], len(batch.samples)
    return HybridStats(int(emb.numel() * emb.element_size()), int(emb.shape[0]),
                       batch.hf_seconds / b, vllm_seconds, {"memory_used": batch.memory_used})


def _seeds(vllm, samples, method_cfg, run_seed: int) -> list[int | None]:
    """One vLLM seed per sample, from its completion-0 stream (vLLM seeds child j with +j)."""
    return call_seeds(generators_for(vllm, samples, method_cfg, run_seed, k=1))


def run_batch(engine: HybridEngine, samples, method_cfg, run_seed: int,
              prompts: dict[str, str] | None = None,
              stats: dict[str, HybridStats] | None = None) -> list[SampleResult]:
    """The `methods` contract on a HybridEngine: phase 1 on HF, then phase 2 on vLLM.
    `stats` (optional) receives a HybridStats per sample id (bytes shipped, time split)."""
    batch = latent_phase(engine.hf, samples, method_cfg, run_seed, prompts)
    return judge_phase(engine.vllm, batch, method_cfg, run_seed, stats)


async def judge_sample(vllm, batch: LatentBatch, i: int, method_cfg, run_seed: int,
                       transfer_ms: float = 0.0) -> tuple[SampleResult, HybridStats]:
    """Sample i of a LatentBatch: its judger as one vLLM request, awaited (the streaming form
    of `judge_phase`: every sample of a batch is submitted the moment the batch exists and
    comes back on its own). Same input, budget and seed as `judge_phase`: the same tokens."""
    b, s, answerer = len(batch.samples), batch.samples[i], team_for(method_cfg).answerer
    t0 = time.perf_counter()
    emb = batch.embeds[i]                                                # [N_i, D]
    budget = vllm.budget(int(emb.shape[0]), method_cfg.max_new_tokens,
                         what=f"sample {s.id}: the judger's input")
    (seed,) = _seeds(vllm, [s], method_cfg, run_seed)
    out = await vllm.agenerate(None, emb, budget, sampling_for(vllm, method_cfg), seed)
    vllm_seconds = time.perf_counter() - t0
    result = judger_result(vllm, s.id, answerer, batch.judger_ids[i], out, batch.traces[i],
                           batch.embed_seconds / b + vllm_seconds)
    result.max_new_tokens = budget if budget != method_cfg.max_new_tokens else None
    result.hops.append(_hop(emb, transfer_ms / b))
    return result, _stats(batch, i, vllm_seconds)
