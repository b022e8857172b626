"""Replica factories: what one replica of a run is, for every placement, behind one interface.

The driver (jobs/driver.py) knows nothing about engines or placements. It asks the factory
for the resources of one replica (`bundles()`: one placement-group bundle per actor group), has
it start a replica in its bundles (`start`), pings it (`handle.ready.remote()`), sends it
batches (`handle.run` / `handle.generate`) and stops it (`handle.kill()`); every handle is an
`actors.common.ActorGroup`. Placements:

    HFFactory              one HF actor (colocated LatentMAS, baseline, TextMAS)
    VLLMFactory            one vLLM actor (--use_vllm baseline / TextMAS)
    HybridFactory          an HF latent actor + a vLLM judger actor in one bundle (--use_vllm LatentMAS)
    DisaggregatedFactory   four role actors, a bundle each (--placement disaggregated; jobs/disaggregated.py)

`jobs.driver.factory_for(cfg, ...)` picks one from the run's spec.
"""

from __future__ import annotations

import os
from typing import Any

from latentmas_ray.spec.config import RunConfig


class ReplicaFactory:
    """Colocated defaults: one actor per replica, one bundle. Subclasses set `engine` and
    override `start` (and `bundles`, `describe`, the hooks) where they differ."""

    unit = "replicas"                   # how replicas are called in messages
    label = "replica(s)"                # ... and in the start-up log line
    actors_per_replica = 1              # model copies per replica (sizes the CPU threads)

    def __init__(self, cfg: RunConfig, model_path, prompts: dict[str, str] | None):
        self.cfg = cfg                  # actors receive it typed (it pickles)
        self.model_path = str(model_path) if model_path else None
        self.prompts = prompts or {}
        ex = cfg.execution
        self.max_restarts = ex.max_restarts
        self.gpus: float = 0.0          # per model copy; set by `resolve`
        self.threads: int = 1           # torch threads per model copy on CPU; set by `resolve`

    def resolve(self, cluster_has_gpus: bool, owned: bool) -> None:
        """Per-copy GPUs and threads from the flags and the cluster: --num_gpus_per_replica
        defaults to 1 where the cluster has GPUs; CPU threads default to this machine's cores
        shared out over the model copies (a local Ray), else 1."""
        ex = self.cfg.execution
        self.gpus = ex.num_gpus_per_replica
        if self.gpus is None:
            self.gpus = 1.0 if cluster_has_gpus else 0.0
        copies = ex.replicas * self.actors_per_replica
        self.threads = ex.torch_threads or (max(1, (os.cpu_count() or 1) // copies) if owned else 1)

    @property
    def cpus(self) -> float:
        """CPU slots of one model copy: its torch threads on CPU, one on a GPU node."""
        return 1.0 if self.gpus > 0 else float(self.threads)

    @property
    def actor_threads(self) -> int | None:
        """Torch threads an actor sets: ours on CPU; on GPU only when given (else Ray's default)."""
        return self.threads if self.gpus == 0 else self.cfg.execution.torch_threads

    def bundles(self) -> list[dict[str, float]]:
        """The placement-group bundles of one replica."""
        return [{"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus > 0 else {})}]

    def local_cpus(self) -> int:
        """CPU slots of a local Ray started for this run: the replicas' plus one for scoring."""
        need = self.cfg.execution.replicas * sum(b["CPU"] for b in self.bundles())
        return int(max(os.cpu_count() or 1, need)) + 1

    def start(self, pg, replica: int):
        """Start replica number `replica` (unique over the run: a replacement gets a new one)
        in `pg`, the placement group holding this replica's bundles only (index 0 onwards)."""
        raise NotImplementedError

    def actor_options(self, pg, bundle_index: int, **kw) -> dict[str, Any]:
        from actors.common import actor_options
        return actor_options(gpus=kw.pop("gpus", self.gpus), cpus=kw.pop("cpus", self.cpus),
                             max_restarts=self.max_restarts, placement_group=pg,
                             bundle_index=bundle_index, **kw)

    def kind(self) -> str:
        if self.gpus > 0:
            return f"{self.gpus:g} GPU"
        return f"{self.threads} CPU thread{'s' * (self.threads > 1)}"

    def describe(self, rid: int, info: dict[str, Any]) -> list[str]:
        """The log lines of a replica that is ready."""
        line = (f"  replica {rid}: {info.get('host')} node {(info.get('node_id') or '?')[:8]} "
                f"pid {info.get('pid')} {info.get('device')} gpus {info.get('gpu_ids')} "
                f"{info.get('engine', 'hf')}")
        if "vllm" in info:
            line += f" + vllm pid {info['vllm'].get('pid')} gpus {info['vllm'].get('gpu_ids')}"
        return [line]

    def in_flight(self, max_in_flight: int) -> int:
        """Batches queued or running per replica."""
        return max_in_flight

    def ready_info(self, handle, info: dict[str, Any]) -> dict[str, Any]:
        """A replica's `ready()` answer as the driver keeps and reports it."""
        return info

    def after_ready(self, handles: list, console) -> dict[str, Any]:
        """Run once every replica is ready; what it returns joins the "ready" event."""
        return {}

    def adopt(self, handle) -> None:
        """A replica that became ready after `after_ready` (placed late, or a replacement)."""

    def after_run(self, handles: list, console, emit) -> None:
        """Run when the samples are done, before the replicas are stopped."""


class HFFactory(ReplicaFactory):
    def start(self, pg, replica: int):
        from actors.common import ActorGroup, remote_form
        from actors.hf_actor import HFReplica

        actor = remote_form(HFReplica).options(**self.actor_options(pg, 0)).remote(
            self.cfg, self.model_path, self.prompts, self.actor_threads)
        return ActorGroup.single("hf", actor, stream=True)    # rows as samples finish


class VLLMStreaming(ReplicaFactory):
    """What the vLLM placements share. Their actor streams every batch it holds into vLLM's
    async engine, so the driver keeps enough batches in flight per replica to fill the
    engine's max_num_seqs twice over (learnt from the replicas' ready(): vLLM derives it from
    the KV budget); with --tensor_parallel_size N a replica's vLLM actor gets N GPUs."""

    engine_seqs = 0                     # the replicas' max_num_seqs (0 until they are ready)

    def vllm_gpus_default(self) -> float:
        return float(self.cfg.execution.vllm.tensor_parallel_size)

    def resolve(self, cluster_has_gpus: bool, owned: bool) -> None:
        super().resolve(cluster_has_gpus, owned)
        if self.cfg.execution.num_gpus_per_replica is None and cluster_has_gpus:
            self.gpus = self.vllm_gpus_default()

    def ready_info(self, handle, info: dict[str, Any]) -> dict[str, Any]:
        seqs = info.get("vllm", info).get("max_num_seqs") or 0
        self.engine_seqs = max(self.engine_seqs, int(seqs))
        return info

    def in_flight(self, max_in_flight: int) -> int:
        from latentmas_ray.run.streaming import WINDOW_PER_SLOT

        need = -(-WINDOW_PER_SLOT * self.engine_seqs // self.cfg.batch_size)   # ceil
        return max(max_in_flight, need + 1)    # +1: the next batch is ready as one finishes

    def describe(self, rid: int, info: dict[str, Any]) -> list[str]:
        v = info.get("vllm", info)
        return [super().describe(rid, info)[0] + f" (max_num_seqs {v.get('max_num_seqs')}, "
                f"tensor_parallel_size {v.get('tensor_parallel_size')})"]


class VLLMFactory(VLLMStreaming):
    def start(self, pg, replica: int):
        from actors.vllm_actor import start_vllm_replica

        return start_vllm_replica(self.cfg, self.model_path, self.prompts, gpus=self.gpus,
                                  cpus=self.cpus, placement_group=pg, bundle_index=0,
                                  max_restarts=self.max_restarts)


class HybridFactory(VLLMStreaming):
    """An HF actor (`cpus` slots) and a vLLM actor (one CPU slot) in ONE bundle, so they share a
    node and the object-store hop; their GPUs split by `hybrid_gpu_split`."""

    def vllm_gpus_default(self) -> float:
        tp = self.cfg.execution.vllm.tensor_parallel_size
        # one GPU shared by default; with tensor parallelism N whole GPUs for vLLM + one for HF
        return 1.0 if tp == 1 else tp + 1.0

    def resolve(self, cluster_has_gpus: bool, owned: bool) -> None:
        super().resolve(cluster_has_gpus, owned)
        self.gpu_split()                 # a split that cannot work fails here, before placing

    def gpu_split(self) -> tuple[float, float]:
        v = self.cfg.execution.vllm
        from latentmas_ray.engines.vllm_fit import hybrid_gpu_split

        return hybrid_gpu_split(self.gpus, v.tensor_parallel_size, v.gpu_share)

    def bundles(self) -> list[dict[str, float]]:
        (b,) = super().bundles()
        return [{**b, "CPU": b["CPU"] + 1.0}]

    def start(self, pg, replica: int):
        from actors.vllm_actor import start_hybrid_replica

        hf_gpus, vllm_gpus = self.gpu_split()
        return start_hybrid_replica(
            self.cfg, self.model_path, self.prompts, hf_gpus=hf_gpus,
            vllm_gpus=vllm_gpus, hf_cpus=self.cpus, vllm_cpus=1.0,
            hf_threads=self.actor_threads, placement_group=pg, bundle_index=0,
            max_restarts=self.max_restarts)
