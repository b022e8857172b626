"""One LatentMAS role (planner, critic, refiner or judger) as its own actor: the disaggregated
placement (`--placement disaggregated`, driver in jobs/disaggregated.py). The roles are the
run's agents (prompts.team_for: the built-in topology or --agents), one actor each, in order;
the last one answers ("the judger" below). Each actor loads its agent's own checkpoint, if
the agent names one, else the run's model.

A batch flows through four actors as a pipeline,

    judger.judge_rows(refiner.step(critic.step(planner.step(samples))))

and each hop carries the batch's working memory through the object store as one of two
payloads (`--hop_payload`):

- "kv": the BatchKV itself (`to_state("cpu")`: keys/values of every layer, mask, positions,
  segments); the receiver loads it on its device and goes on. Works with every memory mode
  (the cache was already cut to the mode by `latent_agent_step`). Exact: the same tensors.
- "embeds": per sample, the input sequence that rebuilds the memory: each earlier agent's
  prompt token embeddings then its m latent vectors, in cache order (built by
  methods/latent_inputs.py, as the hybrid judger's input is). The receiver re-prefills it (positions
  0..N-1, as the BatchKV gives each row) before running its own role. Much smaller (hidden
  size instead of 2 * layers * kv_heads * head_dim values per position) but it costs a prefill
  at every hop and equals "kv" only up to kernel rounding. Only with memory "full": a pruned
  memory keeps entries that attended to dropped ones, which no re-prefill can rebuild.

`choose_payload` is the small cost model behind `--hop_payload auto`.

Each hop is recorded per sample as a `Hop(src, dst, payload, bytes, ms)`: bytes = that
sample's share of the shipped tensors (kv: in proportion to its real cache entries; embeds: its
own sequence); ms = the batch's hop time / B, where the hop time is the sender's move to the
CPU and `ray.put`, the receiver's `ray.get` and move to its device, and for "embeds" the
receiver's re-prefill (what the hop costs the pipeline, so the two payloads compare).

`RoleWorker` is a plain class (tests run a whole chain in one process without Ray, passing
the payload dicts directly); `remote_form(RoleWorker)` is its Ray form. Every call is timed for
`stats()` (busy seconds and call intervals: the pipeline's busy fractions).
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

from actors.common import ActorGroup, local_model_path, quiet_progress_bars, receive, ship, where
from latentmas_ray.prompts import AGENT_ROLES as ROLES


# ----- the cost model ------------------------------------------------------------------------

def bytes_per_position(model_config, dtype_bytes: int) -> dict[str, int]:
    """Bytes one cache position costs as KV (2 * layers * kv_heads * head_dim * dtype) and as
    an input embedding (hidden * dtype)."""
    c = model_config
    layers = c.num_hidden_layers
    heads = c.num_attention_heads
    kv_heads = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    return {"kv": 2 * layers * kv_heads * head_dim * dtype_bytes,
            "embeds": c.hidden_size * dtype_bytes}


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


# ----- the worker ----------------------------------------------------------------------------

class RoleWorker:
    """One role's HF engine. `engine` (tests): an already loaded HFEngine to share."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None, prompts: dict[str, str] | None,
                 role: str, torch_threads: int | None = None, payload: str = "kv", engine=None):
        import torch

        from latentmas_ray.spec.config import RunConfig

        from latentmas_ray.prompts import team_for

        team = team_for(RunConfig.from_dict(cfg).method)
        assert role in team.roles, (role, team.roles)
        self.roles, self.answering = team.roles, role == team.answerer.role
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        self.role = role
        self.prompts = prompts or {}
        self.payload = payload
        if engine is None:
            from latentmas_ray.engines.hf import HFEngine
            from latentmas_ray.spec.models import resolve_model
            own = team.agent(role).model
            path = resolve_model(own) if own else local_model_path(self.cfg, model_path)
            self.model_path = str(path)
            engine = HFEngine.load(self.cfg.model, self.model_path)
        else:
            self.model_path = str(model_path)
        self.engine = engine
        self.batches = 0
        self.busy_s = 0.0
        self.calls: list[tuple[float, float]] = []      # (start, end) wall clock per call

    # ----- info ------------------------------------------------------------------------------
    def ready(self, partner: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where this role runs. `partner` (the previous role's ready(), resolved by Ray) is
        merged in, so one chained call answers for a whole pipeline: {"roles": {role: info}}."""
        import torch

        info = {**where(), "device": str(self.engine.device), "engine": "hf", "role": self.role,
                "torch_threads": torch.get_num_threads(), "model_path": self.model_path,
                "batches": self.batches}
        roles = dict((partner or {}).get("roles", {}))
        roles[self.role] = info
        first = roles[next(r for r in self.roles if r in roles)]
        return {**first, "roles": roles}

    def stats(self) -> dict[str, Any]:
        return {"role": self.role, "pid": os.getpid(), "batches": self.batches,
                "busy_s": self.busy_s, "calls": list(self.calls)}

    def cost_profile(self, positions: int = 128, repeats: int = 2) -> dict[str, float]:
        """What `choose_payload` needs from this engine: bytes per position both ways and the
        measured prefill time per position (best of `repeats` prefills of `positions`)."""
        import torch

        e = self.engine
        dtype_bytes = torch.empty((), dtype=e.dtype).element_size()
        out: dict[str, float] = dict(bytes_per_position(e.model.config, dtype_bytes))
        ids = (torch.arange(positions, device=e.device) % max(2, len(e.tokenizer) - 1))[None]
        mask = torch.ones_like(ids)
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

    def probe_send(self, nbytes: int):
        """A payload of `nbytes` shipped like a memory (to time this link with probe_receive)."""
        import torch
        return self._ship({"probe": torch.zeros(max(1, nbytes // 4), dtype=torch.float32)})

    def probe_receive(self, box) -> dict[str, float]:
        payload, ms = receive(box)
        t = payload["probe"]
        return {"bytes": t.numel() * t.element_size(), "ms": ms}

    # ----- the roles -------------------------------------------------------------------------
    def step(self, samples_or_box, payload: str | None = None):
        """A latent role. The planner gets the batch's samples; the critic and refiner the box
        the previous role returned. Returns a box (in Ray) or the plain dict (without Ray):
        {samples, traces, hops, src, payload, state | embeds, ...}."""
        assert not self.answering, "the answering agent runs judge() / judge_rows()"
        start, t0 = time.time(), time.perf_counter()
        try:
            return self._step(samples_or_box, payload or self.payload)
        finally:
            self._account(start, t0)

    def judge(self, box, with_samples: bool = False):
        """The judger: SampleResults (each with its hops), optionally with the samples."""
        assert self.answering, f"{self.role} is not the answering agent"
        start, t0 = time.time(), time.perf_counter()
        try:
            results, samples = self._judge(box)
        finally:
            self._account(start, t0)
        return (results, samples) if with_samples else results

    def judge_rows(self, box) -> list[dict[str, Any]]:
        """Judge and score (cheap scorers: math, multiple choice): store rows."""
        from latentmas_ray.run.batch import score_rows

        results, samples = self.judge(box, with_samples=True)
        return score_rows(samples, results, self.cfg.scoring, self.cfg.method.method,
                          sandbox_level=self.cfg.execution.sandbox_level)

    def measure_hop(self, box) -> dict[str, Any]:
        """Receive and rebuild a memory without running the role (the benchmark's hop cost):
        bytes, transfer ms (to the CPU + put + get) and rebuild ms (kv: loading it on this
        device; embeds: the re-prefill)."""
        data, get_ms = receive(box)
        kv, rebuild_ms, _ = self._rebuild(data)
        return {"payload": data["payload"], "bytes": data["bytes"], "positions": int(kv.length),
                "transfer_ms": data["send_ms"] + get_ms, "rebuild_ms": rebuild_ms}

    # ----- internals -------------------------------------------------------------------------
    def _account(self, start: float, t0: float) -> None:
        self.batches += 1
        self.busy_s += time.perf_counter() - t0
        self.calls.append((start, time.time()))

    def _ship(self, data: dict[str, Any]):
        import ray
        return ship(data) if ray.is_initialized() else data

    def _rebuild(self, data: dict[str, Any]):
        """The received memory on this engine: (BatchKV, ms spent loading / re-prefilling,
        the received embeddings or None)."""
        import torch

        from latentmas_ray.latent.cache import BatchKV

        e = self.engine
        e.sync()
        t0 = time.perf_counter()
        if data["payload"] == "kv":
            kv = BatchKV.from_state(data["state"], e.device)
            embeds = None
        else:
            embeds = data["embeds"]
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
        e.sync()
        return kv, (time.perf_counter() - t0) * 1e3, embeds

    def _receive(self, box):
        """(data, BatchKV, hop ms for the whole batch, received embeddings or None)."""
        data, get_ms = receive(box)
        kv, load_ms, embeds = self._rebuild(data)
        return data, kv, data["send_ms"] + get_ms + load_ms, embeds

    def _add_hop(self, data, hop_ms: float) -> list[list]:
        from latentmas_ray.methods.result import Hop

        b = len(data["samples"])
        return [list(h) + [Hop(data["src"], self.role, data["payload"], int(nb), hop_ms / b)]
                for h, nb in zip(data["hops"], data["sample_bytes"])]

    def _step(self, samples_or_box, payload: str):
        from latentmas_ray.methods.latent_inputs import LatentRecorder, agent_input_embeds
        from latentmas_ray.methods.latent_mas import latent_agent_step

        e, mcfg = self.engine, self.cfg.method
        if isinstance(samples_or_box, (list, tuple)):           # the planner: a fresh memory
            samples = list(samples_or_box)
            kv, embeds = e.new_memory(len(samples)), None
            traces: list[list] = [[] for _ in samples]
            hops: list[list] = [[] for _ in samples]
        else:
            data, kv, hop_ms, embeds = self._receive(samples_or_box)
            samples, traces = data["samples"], [list(t) for t in data["traces"]]
            hops = self._add_hop(data, hop_ms)
            payload = data["payload"]       # a chain keeps the payload its planner chose
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
        if payload == "kv":
            state = kv.to_state("cpu")
            real = kv.real_lengths().tolist()
            total = kv.nbytes()
            out["state"] = state
            out["bytes"] = total
            out["sample_bytes"] = [total * r / max(sum(real), 1) for r in real]
        else:
            import torch

            own = agent_input_embeds(e, steps, recorder)                          # [L_i + m, D]
            seqs = [torch.cat(([embeds[i].to(e.device)] if embeds is not None else []) + [x], 0)
                    .to("cpu").contiguous() for i, x in enumerate(own)]          # [N_i, D]
            out["embeds"] = seqs
            out["sample_bytes"] = [x.numel() * x.element_size() for x in seqs]
            out["bytes"] = sum(out["sample_bytes"])
        del kv
        out["send_ms"] = (time.perf_counter() - t0) * 1e3   # + the put, timed by `ship`
        return self._ship(out)

    def _judge(self, box):
        from latentmas_ray.methods.latent_mas import judger_step

        data, kv, hop_ms, _ = self._receive(box)
        hops = self._add_hop(data, hop_ms)
        samples = data["samples"]
        results = judger_step(self.engine, kv, samples, self.cfg.method, self.cfg.seed,
                              data["traces"], self.prompts)
        for r, h in zip(results, hops):
            r.hops = h
        return results, samples


# ----- the driver-side handle ----------------------------------------------------------------

class RolePipeline(ActorGroup):
    """One disaggregated replica: one role actor per agent in a chain (`actors` in agent
    order, the last one answers), an ActorGroup whose `run` / `generate` submit
    judger(refiner(critic(planner(samples)))). `payload` ("kv" | "embeds") travels with every
    call, so a role actor that Ray restarts needs no state."""

    def __init__(self, actors: dict[str, Any], payload: str = "kv",
                 names: dict[str, str] | None = None):
        a = dict(actors)
        *thinkers, last = list(a)
        self.thinkers, self.last = thinkers, last

        def ready():
            box = None
            for role in a:
                box = a[role].ready.remote(box) if box is not None else a[role].ready.remote()
            return box

        super().__init__(
            a, ready=ready,
            run=lambda samples: a[last].judge_rows.remote(self._latent(samples)),
            generate=lambda samples: a[last].judge.remote(self._latent(samples)))
        self.payload, self.names = payload, dict(names or {})

    def _latent(self, samples):
        a, p = self.actors, self.payload
        box = list(samples)
        for role in self.thinkers:
            box = a[role].step.remote(box, p)
        return box


def run_chain(workers: dict[str, RoleWorker], samples: Sequence, payload: str | None = None):
    """The whole pipeline in one process (no Ray): SampleResults, hops included. `workers`
    in agent order; the last one answers."""
    *thinkers, last = list(workers)
    box = list(samples)
    for role in thinkers:
        box = workers[role].step(box, payload)
    return workers[last].judge(box)
