"""vLLM replicas as Ray actors: text methods on vLLM, and the pipelined hybrid LatentMAS.

Two plain classes (usable without Ray; `remote_form(cls)` is the actor):

- `VLLMReplica`: a vLLM engine. `generate`/`run` evaluate baseline or TextMAS on vLLM (the
  same `Evaluator` as the HF replica, with a VLLMEngine); `judge`/`judge_rows` run phase 2 of
  the hybrid LatentMAS (decode the judger from the shipped `LatentBatch`).
- `LatentReplica`: an HF engine running phase 1 of the hybrid (`latent`: the three latent
  agents, returning the judgers' input embeddings on the CPU).

One hybrid replica = one LatentReplica + one VLLMReplica on the same node (both actors in one
placement-group bundle): `start_hybrid_replica` returns its driver-side ActorGroup. `run(samples)` submits
`vllm.judge_rows.remote(hf.latent.remote(samples))`: the LatentBatch goes from the HF actor to
the vLLM actor through the object store, never through the driver. With two batches in flight
per replica the HF actor runs batch k+1's latent agents while vLLM decodes batch k (each actor
runs one call at a time, in submission order).

GPUs: `hf_gpus` and `vllm_gpus` per replica; fractions of one GPU (0.5 + 0.5: both on one
device, vLLM's gpu_memory_utilization capped at 0.9 * vllm_gpus) or whole GPUs (1 + 1: two
devices). On CPU: `hf_cpus`/`vllm_cpus` CPU slots; `hf_threads` torch threads and
`hf_cpu_affinity` cores for the HF actor, `vllm_cpu_bind` (VLLM_CPU_OMP_THREADS_BIND, e.g. "1")
for vLLM's OpenMP threads, so the two processes do not fight over the same cores while they
overlap. (vLLM's default "auto" binds its one OpenMP thread to core 0 and leaves the last core
free on a 2-core machine.)
"""

from __future__ import annotations

import os
from typing import Any, Sequence

from actors.common import (ActorGroup, actor_options, local_model_path, quiet_progress_bars,
                           receive, remote_form, ship, where)


class VLLMReplica:
    """A vLLM engine: text methods, and the hybrid judger (phase 2)."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None,
                 prompts: dict[str, str] | None, options: dict[str, Any] | None = None):
        from latentmas_ray.config import RunConfig, VLLMConfig
        from latentmas_ray.engines.vllm import VLLMEngine
        from latentmas_ray.evaluate import Evaluator

        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        self.model_path = str(local_model_path(self.cfg, model_path))
        self.engine = VLLMEngine.load(self.cfg.model, self.model_path, VLLMConfig.from_dict(options))
        self.evaluator = None
        if self.cfg.engine_kind == "vllm":
            self.evaluator = Evaluator.for_config(self.cfg, self.model_path, prompts, engine=self.engine)
        self.batches = 0
        self.judge_seconds = 0.0

    def ready(self, partner: dict[str, Any] | None = None) -> dict[str, Any]:
        """Where this replica runs; `partner` (the HF actor's ready() result, resolved by Ray)
        is merged in so one call answers for a whole hybrid replica."""
        import torch

        info = {**where(), "device": "cuda" if torch.cuda.is_available() else "cpu",
                "engine": "vllm", "model_path": self.model_path, "batches": self.batches,
                "max_model_len": self.engine.max_model_len, "torch_threads": torch.get_num_threads()}
        if partner is not None:
            info = {**partner, "vllm": info}
        return info

    # text methods on vLLM
    def generate(self, samples: Sequence) -> list:
        assert self.evaluator is not None, "this replica serves the hybrid judger (latent_mas)"
        self.batches += 1
        return self.evaluator.generate(list(samples))

    def run(self, samples: Sequence) -> list[dict[str, Any]]:
        assert self.evaluator is not None, "this replica serves the hybrid judger (latent_mas)"
        self.batches += 1
        return self.evaluator.run(list(samples))

    # the hybrid judger
    def judge(self, box, with_stats: bool = False):
        """Phase 2 on a LatentBatch (or the box `LatentReplica.latent` shipped it in)."""
        import time

        from latentmas_ray.methods.hybrid import judge_phase

        batch, transfer_ms = receive(box)
        self.batches += 1
        t0 = time.perf_counter()
        stats: dict = {}
        results = judge_phase(self.engine, batch, self.cfg.method, self.cfg.seed, stats,
                              transfer_ms)
        self.judge_seconds += time.perf_counter() - t0
        return (results, stats, batch.samples) if with_stats else results

    def judge_rows(self, box) -> list[dict[str, Any]]:
        """Judge and score (cheap scorers: math, multiple choice): store rows, each with its
        hf -> vllm hop (bytes, ms)."""
        from latentmas_ray.evaluate import score_rows

        results, _, samples = self.judge(box, with_stats=True)
        return score_rows(samples, results, self.cfg.scoring, self.cfg.method.method)

    def close(self) -> None:
        self.engine.close()


class LatentReplica:
    """An HF engine running the hybrid's latent agents (phase 1)."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None,
                 prompts: dict[str, str] | None, torch_threads: int | None = None,
                 cpu_affinity: list[int] | None = None):
        import torch

        from latentmas_ray.config import RunConfig
        from latentmas_ray.engines.hf import HFEngine

        if cpu_affinity:    # keep the HF threads off the cores vLLM's OpenMP threads are bound to
            os.sched_setaffinity(0, set(int(c) for c in cpu_affinity))
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        assert self.cfg.engine_kind == "hybrid", "a hybrid replica runs latent_mas with --use_vllm"
        self.prompts = prompts or {}
        self.model_path = str(local_model_path(self.cfg, model_path))
        self.engine = HFEngine.load(self.cfg.model, self.model_path)
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
    """Environment of a vLLM actor: offline, and on CPU the KV size and OpenMP core binding."""
    env: dict[str, str] = {}
    if cpu_kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(cpu_kv_cache_gib))))
    if vllm_cpu_bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = vllm_cpu_bind
    return env


def start_hybrid_replica(cfg: dict[str, Any], model_path: str | None,
                         prompts: dict[str, str] | None, *, hf_gpus: float = 0.0,
                         vllm_gpus: float = 0.0, hf_cpus: float = 1.0, vllm_cpus: float = 1.0,
                         hf_threads: int | None = None, hf_cpu_affinity: list[int] | None = None,
                         vllm_options: dict[str, Any] | None = None,
                         vllm_cpu_bind: str | None = None, placement_group=None,
                         bundle_index: int = -1, max_restarts: int = 3) -> ActorGroup:
    """Start the two actors of one hybrid replica. Give them one placement-group bundle
    holding both (jobs/replicas.py HybridFactory: so they share a node); without a placement group Ray places them
    wherever the resources are (fine on one machine).

    The handle's `run(samples)` submits `vllm.judge_rows.remote(hf.latent.remote(samples))`:
    the LatentBatch goes actor to actor through the object store, never through the driver."""
    options = dict(vllm_options or {})
    if 0 < vllm_gpus < 1:   # sharing a GPU with the HF actor: vLLM must leave it room
        options["gpu_memory_utilization"] = min(options.get("gpu_memory_utilization") or 0.85,
                                                0.9 * vllm_gpus)
    kv_gib = None if vllm_gpus > 0 else options.get("cpu_kv_cache_gib", 1.0)
    hf = remote_form(LatentReplica).options(**actor_options(
        gpus=hf_gpus, cpus=hf_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index,
    )).remote(cfg, model_path, prompts or {}, hf_threads, hf_cpu_affinity)
    vllm = remote_form(VLLMReplica).options(**actor_options(
        gpus=vllm_gpus, cpus=vllm_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
    )).remote(cfg, model_path, prompts or {}, options)
    return ActorGroup({"hf": hf, "vllm": vllm},
                      ready=lambda: vllm.ready.remote(hf.ready.remote()),
                      run=lambda samples: vllm.judge_rows.remote(hf.latent.remote(samples)),
                      generate=lambda samples: vllm.judge.remote(hf.latent.remote(samples)))


def start_vllm_replica(cfg: dict[str, Any], model_path: str | None, prompts: dict[str, str] | None,
                       *, gpus: float = 0.0, cpus: float = 1.0,
                       vllm_options: dict[str, Any] | None = None, vllm_cpu_bind: str | None = None,
                       placement_group=None, bundle_index: int = -1, max_restarts: int = 3
                       ) -> ActorGroup:
    """A vLLM actor for baseline / TextMAS (`run`, `generate`, `ready` like the HF actor)."""
    options = dict(vllm_options or {})
    kv_gib = None if gpus > 0 else options.get("cpu_kv_cache_gib", 1.0)
    actor = remote_form(VLLMReplica).options(**actor_options(
        gpus=gpus, cpus=cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
    )).remote(cfg, model_path, prompts or {}, options)
    return ActorGroup.single("vllm", actor)
