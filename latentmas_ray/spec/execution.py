"""Where and how a run executes (RunConfig.execution): in process or on Ray, placement,
replicas, resources, threads, in flight, restarts, timeouts, progress, W&B, and the vLLM
engine's options. None of it changes a result, so none of it is part of the run's identity."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from latentmas_ray.spec.fields import check as _check
from latentmas_ray.spec.fields import flag, from_dict

PLACEMENTS = ("colocated", "disaggregated")
HOP_PAYLOADS = ("kv", "embeds", "auto")
# The code sandbox's isolation levels (latentmas_ray.sandbox.capabilities.LEVELS, the same)
SANDBOX_LEVELS = ("strict", "standard", "rlimits-only")


@dataclass
class VLLMConfig:
    """How the vLLM engine is built (the `LLM(...)` arguments we choose). None of it changes
    a result; fields without a flag are set from a config file."""

    # prompt + max_new_tokens must fit; None = the model's own limit
    max_model_len: int | None = field(default=4096, metadata=flag(
        "vLLM context: longest prompt + max_new_tokens (default 4096)", name="vllm_max_model_len"))
    # None = derived: on CPU from the KV budget (--vllm_kv_cache_gib over a typical sequence's
    # KV bytes, engines/vllm_start.py), on a GPU vLLM's own default (its scheduler admits a
    # sequence only when the profiled KV cache has room)
    max_num_seqs: int | None = field(default=None, metadata=flag(
        "most sequences vLLM decodes together (default: derived from the KV budget)",
        name="vllm_max_num_seqs"))
    # GPU share for vLLM's weights + KV cache. None = 0.85 alone, 0.45 when an HF engine shares
    # the GPU (in-process hybrid; a hybrid Ray replica caps it at 0.9 x its GPU fraction).
    gpu_memory_utilization: float | None = field(default=None, metadata=flag(
        "GPU share for vLLM's weights and KV cache (default 0.85 alone, less when an HF engine "
        "shares its GPU)", name="vllm_gpu_memory_utilization"))
    # CPU only: KV cache size (VLLM_CPU_KVCACHE_SPACE in the environment wins, as in vLLM)
    cpu_kv_cache_gib: float = field(default=1.0, metadata=flag(
        "CPU machines: vLLM's KV cache size in GiB (default 1)", name="vllm_kv_cache_gib"))
    # --ray LatentMAS: the vLLM actor's share of a replica's GPUs (the HF actor gets the rest)
    gpu_share: float = field(default=0.5, metadata=flag(
        "--ray LatentMAS: the vLLM actor's share of a replica's GPUs, the HF actor gets the rest "
        "(default 0.5: one GPU shared; with --num_gpus_per_replica 2, one each)",
        name="vllm_gpu_share"))
    enforce_eager: bool | None = None       # None = True on CPU (no compile time), False on GPU
    enable_prefix_caching: bool = True      # the reference forces it on in vLLM mode
    tensor_parallel_size: int = field(default=1, metadata=flag(
        "GPUs one vLLM engine splits the model over (default 1); on --ray a replica's vLLM "
        "actor gets that many GPUs"))
    # A prompt that cannot fit max_model_len with max_new_tokens stops the run before any engine
    # starts; with this, that sample's budget is cut to what fits (recorded in its row as
    # max_new_tokens). No result a run without it could give changes, so it is not identity.
    clip_max_new_tokens: bool = field(default=False, metadata=flag(
        "cut max_new_tokens per sample to what fits --vllm_max_model_len instead of stopping "
        "(the row records the budget used)", name="vllm_clip_max_new_tokens"))
    seed: int = 0                           # engine seed (per-request seeds are set per call)
    extra: dict[str, Any] = field(default_factory=dict)   # more LLM(...) keyword arguments

    def __post_init__(self):
        _check(self.max_model_len is None or self.max_model_len >= 16,
               f"--vllm_max_model_len must be >= 16, got {self.max_model_len}")
        _check(self.max_num_seqs is None or self.max_num_seqs >= 1,
               f"--vllm_max_num_seqs must be >= 1, got {self.max_num_seqs}")
        util = self.gpu_memory_utilization
        _check(util is None or 0 < util <= 1,
               f"--vllm_gpu_memory_utilization must be in (0, 1], got {util}")
        _check(self.cpu_kv_cache_gib > 0, f"--vllm_kv_cache_gib must be > 0, got {self.cpu_kv_cache_gib}")
        _check(0 < self.gpu_share < 1, f"--vllm_gpu_share must be in (0, 1), got {self.gpu_share}")
        _check(self.tensor_parallel_size >= 1,
               f"--tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "VLLMConfig":
        return from_dict(cls, d or {})


@dataclass
class ExecutionConfig:
    """Where and how a run executes. Not part of the run's identity: a run started in process
    can be finished on a cluster, and the other way round."""

    ray: bool = field(default=False, metadata=flag(
        "run on Ray: model replicas as actors (a local Ray unless --address/$RAY_ADDRESS)"))
    address: str | None = field(default=None, metadata=flag(
        "Ray cluster (GCS) address host:port, ray://host:10001 or auto; default $RAY_ADDRESS, "
        "else a local Ray started in this process"))
    replicas: int = field(default=1, metadata=flag(
        "model replicas (one per GPU, or per CPU slot)"))
    # None = 1 when the cluster has GPUs, else 0 (CPU replicas)
    num_gpus_per_replica: float | None = field(default=None, metadata=flag(
        "GPUs per replica (default: 1 when the cluster has GPUs, else 0 = CPU replicas)"))
    torch_threads: int | None = field(default=None, metadata=flag(
        "torch threads per replica (in process: of this process); CPU replicas reserve as many "
        "CPU slots (default: the local machine's cores shared out over the replicas, 1 on a "
        "cluster; in process: torch's default). On a busy small machine, 1 avoids OpenMP "
        "oversubscription, which can slow decoding tenfold"))
    # 2: one batch runs while the next waits, so a replica never idles between batches
    max_in_flight: int = field(default=2, metadata=flag(
        "batches queued or running per replica (default 2: one runs, one waits)"))
    # 900 s: a cloud GPU node takes minutes to boot, pull the image and join
    placement_timeout: float = field(default=900.0, metadata=flag(
        "seconds to wait until at least one replica is placed (the cluster frees, or an "
        "autoscaler adds, what a replica needs); the rest keep being placed during the run "
        "(default 900)"))
    autoscale: bool = field(default=False, metadata=flag(
        "the cluster has an autoscaler: ask it for the replicas' resources "
        "(ray.autoscaler.sdk.request_resources) and wait for nodes instead of failing when the "
        "nodes alive now cannot hold the replicas (cluster/cluster.yaml, cluster/rayjob.yaml)"))
    # a custom resource declared on the head / CPU workers only, so untrusted code never runs
    # beside a GPU replica
    scoring_resource: str = field(default="scoring", metadata=flag(
        "custom Ray resource that code-scoring tasks need, one unit each (default scoring: "
        "declare it on the head or CPU workers, e.g. ray start --resources '{\"scoring\": 4}'); "
        "'any' scores on any node's CPUs, GPU nodes included"))
    # standard: what any Linux with util-linux and mount namespaces gives (sandbox/capabilities.py)
    sandbox_level: Literal["strict", "standard", "rlimits-only"] = field(default="standard", metadata=flag(
        "code tasks: the isolation the sandbox must give, or scoring refuses to start: strict "
        "(+ Landlock or a uid switch, cgroup memory and pids limits), standard (default: PID and "
        "network namespaces, private tmpfs on scratch, /tmp, /var/tmp, /dev/shm) or rlimits-only "
        "(whatever works: trusted code only)"))
    progress_every: float = field(default=10.0, metadata=flag(
        "seconds between plain progress lines when the output is not a terminal (ray job "
        "logs) and between updates of summary.json during the run (default 10)"))
    # a 14B model from a network disk can take many minutes to load
    ready_timeout: float = field(default=1800.0, metadata=flag(
        "seconds a replica may take to load its model, or to come back after a crash "
        "(default 1800)"))
    # 120 s: a long-context batch on a slow GPU can take a minute; a hang is minutes of nothing
    batch_timeout: float = field(default=120.0, metadata=flag(
        "least seconds a batch may run on a replica before the replica counts as hung (killed, "
        "replaced, its batches sent elsewhere); the deadline is the larger of this and 5x the "
        "slowest recent batch of its size (default 120)"))
    max_restarts: int = field(default=3, metadata=flag("restarts of a crashed replica (default 3)"))
    placement: Literal["colocated", "disaggregated"] = field(default="colocated", metadata=flag(
        "--ray LatentMAS: colocated (default: one actor runs all agents of a batch) or "
        "disaggregated (one actor per role, batches pipelined through them, the working memory "
        "moving role to role through the object store)"))
    hop_payload: Literal["kv", "embeds", "auto"] = field(default="kv", metadata=flag(
        "disaggregated: what moves between role actors: the KV cache (default), input "
        "embeddings to re-prefill (--memory full only) or auto (a measured cost model)"))
    # Diagnostics only (results are the same with or without), hence here and not in the run's
    # identity: a side file per part that `latentmas-ray inspect` reads.
    save_latents: bool = field(default=False, metadata=flag(
        "LatentMAS: also save every latent step's hidden state and fed vector, a side file per "
        "part (parts/latents-*.pt) for `latentmas-ray inspect RUN_DIR`"))
    # Weights & Biases (latentmas_ray/run/observe.py): the process that runs the loop logs, in
    # process or the Ray driver, never an actor. How a run is watched, not what it computes.
    wandb: str | None = field(default=None, metadata=flag(
        "log the run to this Weights & Biases project: config, running accuracy, samples/s and "
        "tokens, the summary and a per-sample table (optional extra: pip install "
        "latentmas-ray[wandb]; WANDB_MODE=offline writes it locally; default: no logging)"))
    wandb_run_name: str | None = field(default=None, metadata=flag(
        "W&B run name (default: the run folder's name)"))
    wandb_group: str | None = field(default=None, metadata=flag(
        "W&B group, e.g. one per comparison of methods"))
    vllm: VLLMConfig = field(default_factory=VLLMConfig)

    def __post_init__(self):
        _check(self.wandb is None or bool(self.wandb.strip()), "--wandb needs a project name")
        _check(self.wandb is not None or (self.wandb_run_name is None and self.wandb_group is None),
               "--wandb_run_name and --wandb_group need --wandb PROJECT")
        _check(self.replicas >= 1, f"--replicas must be >= 1, got {self.replicas}")
        _check(self.max_in_flight >= 1, f"--max_in_flight must be >= 1, got {self.max_in_flight}")
        _check(self.torch_threads is None or self.torch_threads >= 1,
               f"--torch_threads must be >= 1, got {self.torch_threads}")
        _check(self.num_gpus_per_replica is None or self.num_gpus_per_replica >= 0,
               f"--num_gpus_per_replica must be >= 0, got {self.num_gpus_per_replica}")
        _check(self.placement_timeout > 0,
               f"--placement_timeout must be > 0, got {self.placement_timeout}")
        _check(self.progress_every > 0,
               f"--progress_every must be > 0, got {self.progress_every}")
        _check(bool(self.scoring_resource.strip()), "--scoring_resource must not be empty")
        _check(self.sandbox_level in SANDBOX_LEVELS,
               f"unknown --sandbox_level {self.sandbox_level!r}; use strict, standard or rlimits-only")
        _check(self.ready_timeout > 0, f"--ready_timeout must be > 0, got {self.ready_timeout}")
        _check(self.batch_timeout > 0, f"--batch_timeout must be > 0, got {self.batch_timeout}")
        _check(self.max_restarts >= 0, f"--max_restarts must be >= 0, got {self.max_restarts}")
        _check(self.placement in PLACEMENTS,
               f"unknown --placement {self.placement!r}; use colocated or disaggregated")
        _check(self.hop_payload in HOP_PAYLOADS,
               f"unknown --hop_payload {self.hop_payload!r}; use kv, embeds or auto")
        _check(self.placement != "disaggregated" or self.ray,
               "--placement disaggregated runs role actors on Ray: add --ray")

    @property
    def disaggregated(self) -> bool:
        return self.placement == "disaggregated"
