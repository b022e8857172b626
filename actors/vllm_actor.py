"""vLLM replicas as Ray actors: text methods on vLLM, and the pipelined hybrid LatentMAS.

Two plain classes (usable without Ray) and their Ray forms:

- `VLLMReplica`: a vLLM engine. `generate`/`run` evaluate baseline or TextMAS on vLLM (the
  same `Evaluator` as the HF replica, with a VLLMEngine); `judge`/`judge_rows` run phase 2 of
  the hybrid LatentMAS (decode the judger from the shipped `LatentBatch`).
- `LatentReplica`: an HF engine running phase 1 of the hybrid (`latent`: the three latent
  agents, returning the judgers' input embeddings on the CPU).

One hybrid replica = one LatentReplica + one VLLMReplica on the same node (both actors in one
placement-group bundle): `HybridReplica` is its driver-side handle. `run(samples)` submits
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

from actors.common import actor_options, local_model_path, quiet_progress_bars, receive, ship, where


class VLLMReplica:
    """A vLLM engine: text methods, and the hybrid judger (phase 2)."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None,
                 prompts: dict[str, str] | None, options: dict[str, Any] | None = None):
        from latentmas_ray.config import RunConfig
        from latentmas_ray.engines.vllm import VLLMEngine, VLLMOptions, vllm_evaluator

        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        self.model_path = str(local_model_path(self.cfg, model_path))
        self.engine = VLLMEngine.load(self.cfg.model, self.model_path, VLLMOptions.from_dict(options))
        self.evaluator = None
        if self.cfg.method.method != "latent_mas":
            self.evaluator = vllm_evaluator(self.cfg, self.model_path, prompts, engine=self.engine)
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
        from actors.hf_actor import score_rows

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
        from latentmas_ray.methods.hybrid import check_hybrid_config

        if cpu_affinity:    # keep the HF threads off the cores vLLM's OpenMP threads are bound to
            os.sched_setaffinity(0, set(int(c) for c in cpu_affinity))
        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        check_hybrid_config(self.cfg.method)
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


# ----- Ray forms ---------------------------------------------------------------------------

_REMOTE: dict[str, Any] = {}


def vllm_actor_class():
    """`ray.remote(VLLMReplica)`, made on first use so importing this module needs no Ray."""
    if "vllm" not in _REMOTE:
        import ray
        _REMOTE["vllm"] = ray.remote(VLLMReplica)
    return _REMOTE["vllm"]


def latent_actor_class():
    if "latent" not in _REMOTE:
        import ray
        _REMOTE["latent"] = ray.remote(LatentReplica)
    return _REMOTE["latent"]


def vllm_env(vllm_cpu_bind: str | None = None, cpu_kv_cache_gib: float | None = None
             ) -> dict[str, str]:
    """Environment of a vLLM actor: offline, and on CPU the KV size and OpenMP core binding."""
    env: dict[str, str] = {}
    if cpu_kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(cpu_kv_cache_gib))))
    if vllm_cpu_bind:
        env["VLLM_CPU_OMP_THREADS_BIND"] = vllm_cpu_bind
    return env


def hybrid_bundle(hf_gpus: float, vllm_gpus: float, hf_cpus: float, vllm_cpus: float) -> dict[str, float]:
    """One placement-group bundle holding both actors of a hybrid replica (same node)."""
    bundle = {"CPU": float(hf_cpus + vllm_cpus)}
    if hf_gpus + vllm_gpus > 0:
        bundle["GPU"] = float(hf_gpus + vllm_gpus)
    return bundle


class _Call:
    """`replica.run.remote(samples)`, the shape of an actor method, for a pair of actors."""

    def __init__(self, fn):
        self.remote = fn


class HybridReplica:
    """Driver-side handle of one hybrid replica (an HF actor + a vLLM actor, same node).

    Quacks like an actor handle for the driver: `ready.remote()`, `run.remote(samples)` (store
    rows) and `generate.remote(samples)` (SampleResults) each return ONE ObjectRef. Kill both
    actors with `kill()` (ray.kill on this object does not work)."""

    def __init__(self, hf, vllm):
        self.hf, self.vllm = hf, vllm
        self.ready = _Call(lambda: vllm.ready.remote(hf.ready.remote()))
        self.run = _Call(lambda samples: vllm.judge_rows.remote(hf.latent.remote(samples)))
        self.generate = _Call(lambda samples: vllm.judge.remote(hf.latent.remote(samples)))

    def kill(self, no_restart: bool = True) -> None:
        import ray
        for h in (self.hf, self.vllm):
            try:
                ray.kill(h, no_restart=no_restart)
            except Exception:  # noqa: BLE001 - already gone
                pass


def start_hybrid_replica(cfg: dict[str, Any], model_path: str | None,
                         prompts: dict[str, str] | None, *, hf_gpus: float = 0.0,
                         vllm_gpus: float = 0.0, hf_cpus: float = 1.0, vllm_cpus: float = 1.0,
                         hf_threads: int | None = None, hf_cpu_affinity: list[int] | None = None,
                         vllm_options: dict[str, Any] | None = None,
                         vllm_cpu_bind: str | None = None, placement_group=None,
                         bundle_index: int = -1, max_restarts: int = 3) -> HybridReplica:
    """Start the two actors of one hybrid replica. Give them one placement-group bundle of
    `hybrid_bundle(...)` (so they share a node); without a placement group Ray places them
    wherever the resources are (fine on one machine)."""
    options = dict(vllm_options or {})
    if 0 < vllm_gpus < 1:   # sharing a GPU with the HF actor: vLLM must leave it room
        options["gpu_memory_utilization"] = min(options.get("gpu_memory_utilization") or 0.85,
                                                0.9 * vllm_gpus)
    kv_gib = None if vllm_gpus > 0 else options.get("cpu_kv_cache_gib", 1.0)
    hf = latent_actor_class().options(**actor_options(
        gpus=hf_gpus, cpus=hf_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index,
    )).remote(cfg, model_path, prompts or {}, hf_threads, hf_cpu_affinity)
    vllm = vllm_actor_class().options(**actor_options(
        gpus=vllm_gpus, cpus=vllm_cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
    )).remote(cfg, model_path, prompts or {}, options)
    return HybridReplica(hf, vllm)


def start_vllm_replica(cfg: dict[str, Any], model_path: str | None, prompts: dict[str, str] | None,
                       *, gpus: float = 0.0, cpus: float = 1.0,
                       vllm_options: dict[str, Any] | None = None, vllm_cpu_bind: str | None = None,
                       placement_group=None, bundle_index: int = -1, max_restarts: int = 3):
    """A vLLM actor for baseline / TextMAS (`run`, `generate`, `ready` like the HF actor)."""
    options = dict(vllm_options or {})
    kv_gib = None if gpus > 0 else options.get("cpu_kv_cache_gib", 1.0)
    return vllm_actor_class().options(**actor_options(
        gpus=gpus, cpus=cpus, max_restarts=max_restarts, placement_group=placement_group,
        bundle_index=bundle_index, env=vllm_env(vllm_cpu_bind, kv_gib),
    )).remote(cfg, model_path, prompts or {}, options)


def run_pipelined(replicas: Sequence[HybridReplica], samples: Sequence, batch_size: int,
                  max_in_flight: int = 2, on_batch=None) -> list[dict[str, Any]]:
    """A minimal driver (bench and tests): batches over the replicas, at most `max_in_flight`
    per replica, rows in sample order. The project's fault-tolerant driver is jobs/evaluate.py."""
    import ray

    batches = [list(samples[i:i + batch_size]) for i in range(0, len(samples), batch_size)]
    queue = list(enumerate(batches))
    inflight: dict[Any, tuple[int, int]] = {}
    load = [0] * len(replicas)
    out: dict[int, list[dict[str, Any]]] = {}
    while queue or inflight:
        for r, rep in enumerate(replicas):
            while queue and load[r] < max_in_flight:
                k, batch = queue.pop(0)
                inflight[rep.run.remote(batch)] = (k, r)
                load[r] += 1
        ready, _ = ray.wait(list(inflight), num_returns=1)
        for ref in ready:
            k, r = inflight.pop(ref)
            load[r] -= 1
            out[k] = ray.get(ref)
            if on_batch:
                on_batch(k, out[k])
    return [row for k in sorted(out) for row in out[k]]
