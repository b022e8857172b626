"""Disaggregated LatentMAS: every role (planner, critic, refiner, judger) on its own engine, the
batch's working memory handed role to role. What one role actor runs (actors/role_actor.py is
its Ray shell; `--placement disaggregated`, driver in jobs/disaggregated.py), driven here by
tests without Ray.

The roles are the run's agents (prompts.team_for: the built-in topology or --agents), in order;
the last one answers ("the judger" below). A batch flows through them as a chain,

    judger.judge(refiner.step(critic.step(planner.step(samples))))

and each hop carries the batch's working memory as one of two payloads (`--hop_payload`):

- "kv": the BatchKV itself (`to_state("cpu")`: keys/values of every layer, mask, positions,
  segments); the receiver loads it on its device and goes on. Works with every memory mode
  (the cache was already cut to the mode by `latent_agent_step`). Exact: the same tensors.
- "embeds": per sample, the input sequence that rebuilds the memory: each earlier agent's
  prompt token embeddings then its m latent vectors, in cache order (built by
  methods/latent_inputs.py, as the hybrid judger's input is). The receiver re-prefills it
  (positions 0..N-1, as the BatchKV gives each row) before running its own role. Much smaller
  (hidden size instead of 2 * layers * kv_heads * head_dim values per position) but it costs a
  prefill at every hop and equals "kv" only up to kernel rounding. Only with memory "full": a
  pruned memory keeps entries that attended to dropped ones, which no re-prefill can rebuild.

`choose_payload` is the small cost model behind `--hop_payload auto`.

Each hop is recorded per sample as a `Hop(src, dst, payload, bytes, ms)`: bytes = that
sample's share of the shipped tensors (kv: in proportion to its real cache entries; embeds: its
own sequence); ms = the batch's hop time / B, where the hop time is the sender's move to the
CPU (`send_ms`), what moving the payload cost (`get_ms`: the actor's put + get, 0 in one
process) and the receiver's load on its device, for "embeds" its re-prefill (what the hop costs
the pipeline, so the two payloads compare).

A hop's payload is a plain dict {samples, traces, hops, src, payload, state | embeds, bytes,
sample_bytes, send_ms}. Every call of a role is timed for `stats()` (busy seconds and call
intervals: the pipeline's busy fractions).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Sequence

import torch

from latentmas_ray.spec.config import RunConfig
from latentmas_ray.spec.models import kv_bytes_per_position, kv_layout_of

from ..latent.cache import BatchKV
from ..prompts import team_for
from .latent_inputs import LatentRecorder, agent_input_embeds
from .latent_mas import judger_step, latent_agent_step
from .result import Hop, SampleResult


# ----- the cost model ------------------------------------------------------------------------

def bytes_per_position(model_config, dtype_bytes: int) -> dict[str, int]:
    """Bytes one cache position costs as KV (spec/models.kv_bytes_per_position) and as an
    input embedding (hidden * dtype)."""
    return {"kv": kv_bytes_per_position(kv_layout_of(model_config), dtype_bytes),
            "embeds": model_config.hidden_size * dtype_bytes}


def choose_payload(kv_bytes_per_pos: float, embeds_bytes_per_pos: float,
                   prefill_ms_per_pos: float, bytes_per_ms: float, memory: str = "full") -> str:
    """`--hop_payload auto`. Per position of memory a hop moves, KV costs kv_bytes / bandwidth;
    embeddings cost embeds_bytes / bandwidth + one re-prefill of that position. Both grow
    linearly with the memory, so the choice does not depend on its length:

        embeds  iff  (kv_bytes_per_pos - embeds_bytes_per_pos) / bytes_per_ms > prefill_ms_per_pos

    i.e. re-prefill wins only where the link is slow relative to the accelerator. Pruned
    memories (memory != "full") can only travel as KV."""
    if memory != "full":
        return "kv"
    saved_ms = (kv_bytes_per_pos - embeds_bytes_per_pos) / max(bytes_per_ms, 1e-9)
    return "embeds" if saved_ms > prefill_ms_per_pos else "kv"


# ----- one role ------------------------------------------------------------------------------

def _as_is(data):
    return data, 0.0


class LatentRole:
    """One role of the chain on its engine (an HFEngine). `fetch(incoming) -> (payload dict,
    ms)` and `send(payload dict)` move a payload between processes (the role actor's object
    store transfers, timed as part of the call); by default it is handed on as is."""

    def __init__(self, engine, cfg: RunConfig, role: str, prompts: dict[str, str] | None = None,
                 payload: str = "kv", fetch: Callable = _as_is, send: Callable = lambda d: d):
        team = team_for(cfg.method)
        assert role in team.roles, (role, team.roles)
        self.engine, self.cfg, self.role = engine, cfg, role
        self.roles, self.answering = team.roles, role == team.answerer.role
        self.prompts, self.payload = prompts or {}, payload
        self.fetch, self.send = fetch, send
        self.batches, self.busy_s = 0, 0.0
        self.calls: list[tuple[float, float]] = []      # (start, end) wall clock per call

    def stats(self) -> dict[str, Any]:
        return {"role": self.role, "batches": self.batches, "busy_s": self.busy_s,
                "calls": list(self.calls)}

    @contextmanager
    def timed(self):
        """One call of this role, counted in `stats()`."""
        start, t0 = time.time(), time.perf_counter()
        try:
            yield
        finally:
            self.batches += 1
            self.busy_s += time.perf_counter() - t0
            self.calls.append((start, time.time()))

    def step(self, incoming, payload: str | None = None):
        """A thinking role. The first gets the batch's samples; the others what the previous
        role returned. Returns this role's payload, sent."""
        assert not self.answering, "the answering agent runs judge()"
        with self.timed():
            return self.send(self._step(incoming, payload or self.payload))

    def judge(self, incoming, with_samples: bool = False):
        """The answering role: SampleResults, each with its hops (and the batch's samples)."""
        assert self.answering, f"{self.role} is not the answering agent"
        with self.timed():
            data, get_ms = self.fetch(incoming)
            kv, hops = self._receive(data, get_ms)
            results = judger_step(self.engine, kv, data["samples"], self.cfg.method,
                                  self.cfg.seed, data["traces"], self.prompts)
        for r, h in zip(results, hops):
            r.hops = h
        return (results, data["samples"]) if with_samples else results

    def rebuild(self, data: dict[str, Any]) -> tuple[BatchKV, float, list | None]:
        """The received memory on this engine: (BatchKV, ms spent loading / re-prefilling,
        the received embeddings or None)."""
        e = self.engine
        e.sync()
        t0 = time.perf_counter()
        if data["payload"] == "kv":
            kv, embeds = BatchKV.from_state(data["state"], e.device), None
        else:
            embeds = data["embeds"]
            kv = self._prefill(embeds)
        e.sync()
        return kv, (time.perf_counter() - t0) * 1e3, embeds

    def measure_hop(self, incoming) -> dict[str, Any]:
        """Receive and rebuild a memory without running the role (the benchmark's hop cost):
        bytes, transfer ms (to the CPU + moving it) and rebuild ms (kv: loading it on this
        device; embeds: the re-prefill)."""
        data, get_ms = self.fetch(incoming)
        kv, rebuild_ms, _ = self.rebuild(data)
        return {"payload": data["payload"], "bytes": data["bytes"], "positions": int(kv.length),
                "transfer_ms": data["send_ms"] + get_ms, "rebuild_ms": rebuild_ms}

    def cost_profile(self, positions: int = 128, repeats: int = 2) -> dict[str, float]:
        """What `choose_payload` needs from this engine: bytes per position both ways and the
        measured prefill time per position (best of `repeats` prefills of `positions`)."""
        e = self.engine
        dtype_bytes = torch.empty((), dtype=e.dtype).element_size()
        out: dict[str, float] = dict(bytes_per_position(e.model.config, dtype_bytes))
        ids = (torch.arange(positions, device=e.device) % max(2, len(e.tokenizer) - 1))[None]
        mask = torch.ones_like(ids)                                                # [1, P]
        best = float("inf")
        for _ in range(repeats):
            kv = e.new_memory(1)
            e.sync()
            t0 = time.perf_counter()
            e.forward(kv, mask, input_ids=ids)
            e.sync()
            best = min(best, time.perf_counter() - t0)
        out["prefill_ms_per_pos"] = best * 1e3 / positions
        return out

    # ----- internals -------------------------------------------------------------------------
    def _prefill(self, embeds: list[torch.Tensor]) -> BatchKV:
        """A fresh memory holding each sample's received sequence [N_i, D], left-padded."""
        e = self.engine
        b, n = len(embeds), max(x.shape[0] for x in embeds)
        x = torch.zeros(b, n, e.hidden_size, dtype=e.dtype, device=e.device)   # [B, N, D]
        mask = torch.zeros(b, n, dtype=torch.long, device=e.device)             # [B, N]
        for i, emb in enumerate(embeds):
            x[i, n - emb.shape[0]:] = emb.to(device=e.device, dtype=e.dtype)
            mask[i, n - emb.shape[0]:] = 1
        kv = e.new_memory(b)
        start = kv.begin_segment()
        e.forward(kv, mask, inputs_embeds=x)
        kv.end_segment(start, latent=0)
        return kv

    def _receive(self, data: dict[str, Any], get_ms: float) -> tuple[BatchKV, list[list[Hop]]]:
        """The memory rebuilt here, and each sample's hops with this one added."""
        kv, load_ms, _ = self.rebuild(data)
        per_sample_ms = (data["send_ms"] + get_ms + load_ms) / len(data["samples"])
        hops = [list(h) + [Hop(data["src"], self.role, data["payload"], int(nb), per_sample_ms)]
                for h, nb in zip(data["hops"], data["sample_bytes"])]
        return kv, hops

    def _step(self, incoming, payload: str) -> dict[str, Any]:
        e, mcfg = self.engine, self.cfg.method
        embeds = None
        if isinstance(incoming, Sequence):                      # the first role: a fresh memory
            samples = list(incoming)
            kv = e.new_memory(len(samples))
            traces: list[list] = [[] for _ in samples]
            hops: list[list] = [[] for _ in samples]
        else:
            data, get_ms = self.fetch(incoming)
            samples, traces = data["samples"], [list(t) for t in data["traces"]]
            kv, hops = self._receive(data, get_ms)
            embeds = data.get("embeds")
            payload = data["payload"]       # a chain keeps the payload its first role chose
        assert payload == "kv" or mcfg.memory == "full", "embeds hops need --memory full"
        realign = e.realigner(mcfg.latent_space_realign)
        recorder = LatentRecorder(realign) if payload == "embeds" else None
        steps = latent_agent_step(e, kv, samples, self.role, mcfg, recorder or realign,
                                  self.prompts)
        for t, s in zip(traces, steps):
            t.append(s)
        out: dict[str, Any] = {"samples": samples, "traces": traces, "hops": hops,
                               "src": self.role, "payload": payload}
        e.sync()
        t0 = time.perf_counter()
        out.update(_kv_payload(kv) if payload == "kv" else
                   _embeds_payload(e, embeds, agent_input_embeds(e, steps, recorder)))
        del kv
        out["send_ms"] = (time.perf_counter() - t0) * 1e3   # + the put, timed by `send`
        return out


def _kv_payload(kv: BatchKV) -> dict[str, Any]:
    """The memory as KV on the CPU; each sample's share of the bytes by its real entries."""
    real, total = kv.real_lengths().tolist(), kv.nbytes()
    return {"state": kv.to_state("cpu"), "bytes": total,
            "sample_bytes": [total * r / max(sum(real), 1) for r in real]}


def _embeds_payload(engine, received: list | None, own: list[torch.Tensor]) -> dict[str, Any]:
    """The memory as input embeddings: what this role received, then its own prompt and
    latents (own[i]: [L_i + m, D]), per sample, on the CPU."""
    seqs = [torch.cat(([received[i].to(engine.device)] if received is not None else []) + [x], 0)
            .to("cpu").contiguous() for i, x in enumerate(own)]                    # [N_i, D]
    sample_bytes = [x.numel() * x.element_size() for x in seqs]
    return {"embeds": seqs, "sample_bytes": sample_bytes, "bytes": sum(sample_bytes)}


def run_chain(roles: dict[str, Any], samples: Sequence, payload: str | None = None
              ) -> list[SampleResult]:
    """The whole chain in one process: SampleResults, hops included. `roles` (LatentRoles, or
    role actors' plain classes) in agent order; the last one answers."""
    *thinkers, last = list(roles)
    data: Any = list(samples)
    for role in thinkers:
        data = roles[role].step(data, payload)
    return roles[last].judge(data)
