"""vLLM replicas as Ray actors: text methods on vLLM, and the pipelined hybrid LatentMAS.

Two plain classes (usable without Ray; `remote_form(cls)` is the actor):

- `VLLMReplica`: a vLLM engine in an async actor. `generate`/`run` evaluate baseline or TextMAS
  on vLLM, one request chain per sample (latentmas_ray/run/streaming.py); `judge`/`judge_rows` run
  phase 2 of the hybrid LatentMAS (decode the judgers from the shipped `LatentBatch`). Rows
  come from the core's one row builder (latentmas_ray/run/rows.py). `run_stream` and
  `judge_stream` are Ray streaming generators: each sample's rows as it finishes.
- `LatentReplica`: an HF engine running phase 1 of the hybrid (`latent`: the three latent
  agents, returning the judgers' input embeddings on the CPU).

One hybrid replica = one LatentReplica + one VLLMReplica on the same node (both actors in one
placement-group bundle): `start_hybrid_replica` returns its driver-side ActorGroup. `run(samples)`
submits `vllm.judge_rows.remote(hf.latent.remote(samples))`: the LatentBatch goes from the HF
actor to the vLLM actor through the object store, never through the driver. The HF actor runs
one latent batch at a time, in submission order; the vLLM actor is async and submits each
sample's judger the moment its batch arrives, so with several batches in flight the HF actor
runs batch k+1 while vLLM decodes the judgers of batches k, k-1, ... together.

GPUs: `hf_gpus` and `vllm_gpus` per replica; fractions of one GPU (0.5 + 0.5: both on one
device, vLLM's gpu_memory_utilization capped at 0.9 * vllm_gpus) or whole GPUs (1 + 1: two
devices); vLLM starts after the HF actor has loaded and takes 90% of the memory then free.
On CPU: `hf_cpus`/`vllm_cpus` CPU slots; `hf_threads` torch threads and
`hf_cpu_affinity` cores for the HF actor, `vllm_cpu_bind` (VLLM_CPU_OMP_THREADS_BIND, e.g. "1")
for vLLM's OpenMP threads, so the two processes do not fight over the same cores while they
overlap. (vLLM's default "auto" binds its one OpenMP thread to core 0 and leaves the last core
free on a 2-core machine.)
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, AsyncIterator, Sequence

from actors.common import (ActorGroup, actor_options, local_model_path, quiet_progress_bars,
                           receive, remote_form, ship, where)
from latentmas_ray.engines.vllm_fit import check_tensor_parallel
from latentmas_ray.spec.config import RunConfig

# calls one vLLM actor runs at once: the batches in flight (their samples share the engine)
VLLM_ACTOR_CONCURRENCY = 1000


class VLLMReplica:
    """A vLLM engine in an ASYNC actor (every method that waits on vLLM is `async def`, so Ray
    runs up to VLLM_ACTOR_CONCURRENCY calls at once): every batch the driver sends is streamed
    into vLLM's async engine as it arrives (latentmas_ray/run/streaming.py), so the several batches
    a replica has in flight share the engine with no barrier between them."""

    def __init__(self, cfg: RunConfig, model_path: str | None,
                 prompts: dict[str, str] | None, after: Any = None, gpu_fraction: float = 1.0,
                 engine=None):
        """after: the HF partner's ready() result (a hybrid replica): Ray resolves it before
        this constructor runs, so vLLM starts only once the HF engine has loaded, and its GPU
        share is then derived from what is free (capped at 0.9 x gpu_fraction). The engine's
        options are the run's (cfg.execution.vllm). `engine` (tests): a loaded VLLMEngine."""
        from latentmas_ray.engines.vllm import VLLMEngine
        from latentmas_ray.engines.vllm_fit import typical_seq_tokens
        from latentmas_ray.engines.vllm_start import shared_gpu_utilization
        from latentmas_ray.run.streaming import StreamEvaluator

        quiet_progress_bars()
        self.cfg = cfg
        self.model_path = str(model_path)
        if engine is None:
            self.model_path = str(local_model_path(cfg, model_path))
            options = cfg.execution.vllm
            hybrid = cfg.engine_kind == "hybrid"
            if hybrid and gpu_fraction < 1:      # an HF engine shares this GPU and has loaded
                options = shared_gpu_utilization(options, gpu_fraction)
            engine = VLLMEngine.load(cfg.model, self.model_path, options, prompt_embeds=hybrid,
                                     seq_tokens=typical_seq_tokens(cfg))
        self.engine = engine
        self.stream = StreamEvaluator(cfg, engine, prompts)
        self.batches = 0
        self.judge_seconds = 0.0

    def ready(self, partner: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where this replica runs; `partner` (the HF actor's ready() result, resolved by Ray)
        is merged in so one call answers for a whole hybrid replica."""
        import torch

        info = {**where(), "device": "cuda" if torch.cuda.is_available() else "cpu",
                "engine": "vllm", "model_path": self.model_path, "batches": self.batches,
                "max_model_len": self.engine.max_model_len,
                "max_num_seqs": self.engine.max_num_seqs,
                "tensor_parallel_size": self.engine.options.tensor_parallel_size,
                "torch_threads": torch.get_num_threads()}
        if partner is not None:
            info = {**partner, "vllm": info}
        return info

    def occupancy(self, since: float = 0.0) -> dict[str, float]:
        """vLLM's running / max_num_seqs over its steps since `since` (perf_counter seconds)."""
        return self.engine.occupancy.summary(self.engine.max_num_seqs, since)

    # text methods on vLLM
    async def generate(self, samples: Sequence) -> list:
        assert self.stream.sample_fn is not None, "this replica serves the hybrid judger"
        self.batches += 1
        return await self.stream.generate_batch(list(samples))

    async def run(self, samples: Sequence) -> list[dict[str, Any]]:
        assert self.stream.sample_fn is not None, "this replica serves the hybrid judger"
        self.batches += 1
        return await self.stream.run(list(samples))

    async def run_stream(self, samples: Sequence) -> AsyncIterator[list[dict[str, Any]]]:
        """`run`, yielding each sample's rows as it finishes (a Ray streaming generator)."""
        assert self.stream.sample_fn is not None, "this replica serves the hybrid judger"
        self.batches += 1
        async for rows in self.stream.run_stream(list(samples)):
            yield rows

    # the hybrid judger
    async def judge(self, box, with_stats: bool = False):
        """Phase 2 on a LatentBatch (or the box `LatentReplica.latent` shipped it in): every
        sample's judger submitted at once, each coming back on its own."""
        # the object-store get runs in a worker thread, never blocking this actor's event loop
        batch, transfer_ms = await asyncio.to_thread(receive, box)
        self.batches += 1
        t0 = time.perf_counter()
        pairs = await self.stream.judge(batch, transfer_ms)
        self.judge_seconds += time.perf_counter() - t0
        results = [r for r, _ in pairs]
        stats = {r.id: st for r, st in pairs}
        return (results, stats, batch.samples) if with_stats else results

    async def judge_rows(self, box) -> list[dict[str, Any]]:
        """Judge and score (cheap scorers: math, multiple choice): store rows, each with its
        hf -> vllm hop (bytes, ms)."""
        from latentmas_ray.run.rows import rows_for

        results, _, samples = await self.judge(box, with_stats=True)
        return rows_for(self.cfg, samples, results)

    async def judge_stream(self, box) -> AsyncIterator[list[dict[str, Any]]]:
        """`judge_rows`, yielding each sample's rows as its judger ends (a Ray streaming
        generator: the driver writes them while the batch's slower judgers still decode)."""
        batch, transfer_ms = await asyncio.to_thread(receive, box)
        self.batches += 1
        async for rows in self.stream.judge_stream(batch, transfer_ms):
            yield rows

    def close(self) -> None:
        """Stop the EngineCore process (ActorGroup.kill calls this before killing the actor)."""
        self.engine.close()


class LatentReplica:
    """An HF engine running the hybrid's latent agents (phase 1)."""

    def __init__(self, cfg: RunConfig, model_path: str | None,
                 prompts: dict[str, str] | None, torch_threads: int | None = None,
                 cpu_affinity: list[int] | None = None, engine=None):
        """`engine` (tests): an already loaded HFEngine."""
        import torch

        from latentmas_ray.engines.hf import HFEngine

        if cpu_affinity:    # keep the HF threads off the cores vLLM's OpenMP threads are bound to
            os.sched_setaffinity(0, set(int(c) for c in cpu_affinity))
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = cfg
        assert cfg.engine_kind == "hybrid", "a hybrid replica runs latent_mas with --use_vllm"
        self.prompts = prompts or {}
        self.model_path = str(model_path if engine is not None else local_model_path(cfg, model_path))
        self.engine = engine if engine is not None else HFEngine.load(cfg.model, self.model_path)
        self.batches = 0

    def ready(self) -> dict[str, Any]:
        import torch

        return {**where(), "device": str(self.engine.device), "engine": "hf",
                "torch_threads": torch.get_num_threads(), "model_path": self.model_path,
                "batches": self.batches, "cpu_affinity": sorted(os.sched_getaffinity(0))}

    def latent(self, samples: Sequence, boxed: bool = True):
        """Phase 1. Inside Ray (boxed) the LatentBatch is put into the object store here and a
        box with its reference is returned, so the vLLM actor can time the transfer."""
        import ray

        from latentmas_ray.methods.hybrid import latent_phase

        self.batches += 1
        batch = latent_phase(self.engine, list(samples), self.cfg.method, self.cfg.seed, self.prompts)
        return ship(batch) if boxed and ray.is_initialized() else batch


# ----- starting replicas ----------------------------------------------------------------

def vllm_env(vllm_cpu_bind: str | None = None, cpu_kv_cache_gib: float | None = None
             ) -> dict[str, str]:
    """Environment of a vLLM actor: offline, and on CPU the KV size and OpenMP core binding.
    Ray's warning about a blocking get in an async actor is off: the actor's one get
    (`receive`) runs in a worker thread (asyncio.to_thread), not on its event loop."""
    env: dict[str, str] = {"RAY_WARN_BLOCKING_GET_INSIDE_ASYNC": "0"}
    if cpu_kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(cpu_kv_cache_gib))))
    if vllm_cpu_bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = vllm_cpu_bind
    return env


def start_hybrid_replica(cfg: RunConfig, model_path: str | None,
                         prompts: dict[str, str] | None, *, hf_gpus: float = 0.0,
                         vllm_gpus: float = 0.0, hf_cpus: float = 1.0, vllm_cpus: float = 1.0,
                         hf_threads: int | None = None, hf_cpu_affinity: list[int] | None = None,
                         vllm_cpu_bind: str | None = None, placement_group=None,
                         bundle_index: int = -1, max_restarts: int = 3) -> ActorGroup:
    """Start the two actors of one hybrid replica. Give them one placement-group bundle
    holding both (jobs/replicas.py HybridFactory: so they share a node); without a placement
    group Ray places them wherever the resources are (fine on one machine).

    The vLLM actor's constructor takes the HF actor's ready() as an argument, so Ray starts
    vLLM only once the HF engine has loaded (no two engines profiling GPU memory at once); on a
    shared GPU vLLM then takes 90% of what is free (capped at 0.9 x its GPU fraction).
    The handle's `run(samples)` submits `vllm.judge_rows.remote(hf.latent.remote(samples))`:
    the LatentBatch goes actor to actor through the object store, never through the driver."""
    options = cfg.execution.vllm
    check_tensor_parallel(options.tensor_parallel_size, vllm_gpus, "a replica's vLLM actor")
    kv_gib = None if vllm_gpus > 0 else options.cpu_kv_cache_gib
    hf = remote_form(LatentReplica).options(**actor_options(
        gpus=hf_gpus, cpus=hf_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index,
    )).remote(cfg, model_path, prompts or {}, hf_threads, hf_cpu_affinity)
    vllm = remote_form(VLLMReplica).options(**actor_options(
        gpus=vllm_gpus, cpus=vllm_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
        max_concurrency=VLLM_ACTOR_CONCURRENCY,
    )).remote(cfg, model_path, prompts or {}, hf.ready.remote(),
              vllm_gpus if vllm_gpus > 0 else 1.0)
    return ActorGroup({"hf": hf, "vllm": vllm},
                      ready=lambda: vllm.ready.remote(hf.ready.remote()),
                      run=lambda samples: vllm.judge_rows.remote(hf.latent.remote(samples)),
                      generate=lambda samples: vllm.judge.remote(hf.latent.remote(samples)),
                      close=lambda: [vllm.close.remote()],
                      run_stream=lambda samples: vllm.judge_stream.options(
                          num_returns="streaming").remote(hf.latent.remote(samples)))


def start_vllm_replica(cfg: RunConfig, model_path: str | None, prompts: dict[str, str] | None,
                       *, gpus: float = 0.0, cpus: float = 1.0, vllm_cpu_bind: str | None = None,
                       placement_group=None, bundle_index: int = -1, max_restarts: int = 3
                       ) -> ActorGroup:
    """A vLLM actor for baseline / TextMAS (`run`, `generate`, `ready` like the HF actor); the
    engine's options are the run's (cfg.execution.vllm)."""
    options = cfg.execution.vllm
    check_tensor_parallel(options.tensor_parallel_size, gpus, "a replica's vLLM actor")
    kv_gib = None if gpus > 0 else options.cpu_kv_cache_gib
    actor = remote_form(VLLMReplica).options(**actor_options(
        gpus=gpus, cpus=cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
        max_concurrency=VLLM_ACTOR_CONCURRENCY,
    )).remote(cfg, model_path, prompts or {})
    return ActorGroup({"vllm": actor}, actor.ready.remote, actor.run.remote,
                      actor.generate.remote, close=lambda: [actor.close.remote()],
                      run_stream=actor.run_stream.options(num_returns="streaming").remote)
