"""How a vLLM engine is started: the engine arguments we choose (on CPU `max_num_seqs` from
the KV budget; whether the run fits is engines/vllm_fit.py's answer).

Plain functions over a VLLMConfig and the model folder's config.json; nothing here starts vLLM.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from latentmas_ray.spec.config import VLLMConfig
from ..errors import ConfigError
from .vllm_fit import cpu_kv_bytes, max_num_seqs_for

# The engine config is built as `vllm.LLM` builds it (offline batch inference): under this usage
# context vLLM chooses max_num_seqs / max_num_batched_tokens for the device it runs on
# (EngineArgs.get_batch_defaults: 1024 / 16384 on an H100). AsyncLLM.from_engine_args' own
# default, ENGINE_CONTEXT, has no entry there and falls back to SchedulerConfig's serving
# defaults (128 / 2048): a fraction of the sequences plain vLLM runs.
USAGE_CONTEXT = "LLM_CLASS"
# Tensor parallelism inside our actor: vLLM's multiprocessing executor, one worker process per
# device Ray made visible to the actor (its seat holds N GPUs on one node). Left to choose, vLLM
# picks its Ray executor inside a placement group (config/parallel.py), which refuses a bundle
# holding more than one device (v1/executor/ray_utils.py) and does not exist on CPU.
TP_EXECUTOR = "mp"


def usage_context():
    """vLLM's UsageContext the engine config is created under (USAGE_CONTEXT)."""
    from vllm.usage.usage_lib import UsageContext
    return UsageContext[USAGE_CONTEXT]


def engine_args(folder: str, dtype: torch.dtype, options: VLLMConfig, *, cuda: bool,
                prompt_embeds: bool, seq_tokens: int | None, vocab_mask: bool) -> dict[str, Any]:
    """The AsyncEngineArgs keyword arguments for this run (options.extra wins)."""
    max_num_seqs = options.max_num_seqs
    kwargs: dict[str, Any] = dict(
        model=folder, tokenizer=folder, dtype=dtype, max_model_len=options.max_model_len,
        # embeddings in: only where a judger's input is sent (the hybrid); off, vLLM keeps
        # its default text-only input path
        enable_prompt_embeds=prompt_embeds, enable_prefix_caching=options.enable_prefix_caching,
        tensor_parallel_size=options.tensor_parallel_size, seed=options.seed,
        enforce_eager=(not cuda) if options.enforce_eager is None else options.enforce_eager,
        disable_log_stats=True,      # our Occupancy logger still receives the scheduler stats
    )
    if options.tensor_parallel_size > 1:
        kwargs["distributed_executor_backend"] = TP_EXECUTOR
    if cuda:
        util = options.gpu_memory_utilization
        kwargs["gpu_memory_utilization"] = 0.85 if util is None else util
        # GPU: None = vLLM's offline default for this device (USAGE_CONTEXT); its scheduler
        # admits a sequence only when the KV cache (sized by profiling the free memory) has
        # room, so the KV budget bounds it anyway
    else:
        kv = cpu_kv_bytes(options)
        if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kwargs["kv_cache_memory_bytes"] = kv
        if max_num_seqs is None:
            max_num_seqs = max_num_seqs_for(folder, dtype, options, seq_tokens)
    if max_num_seqs is not None:
        kwargs["max_num_seqs"] = int(max_num_seqs)
    if vocab_mask:
        from .vllm_vocab import VocabMask
        kwargs["logits_processors"] = [VocabMask]
    kwargs.update(options.extra)
    return kwargs


def model_vocab_rows(folder: str | Path) -> int:
    c = json.loads((Path(folder) / "config.json").read_text())
    return int(c.get("text_config", c)["vocab_size"])


def shared_gpu_utilization(options: VLLMConfig, fraction: float = 1.0) -> VLLMConfig:
    """vLLM next to an HF engine that has ALREADY loaded on the same GPU: unless
    --vllm_gpu_memory_utilization is given, 90% of what is free now (vLLM counts its share
    of the whole device and refuses to start when that much is not free), capped at 0.9 x
    `fraction` (a Ray actor's share of the GPU). On CPU: options unchanged."""
    import dataclasses

    if options.gpu_memory_utilization is not None or not torch.cuda.is_available():
        return options
    free, total = torch.cuda.mem_get_info()
    util = min(0.9 * free / total, 0.9 * fraction)
    if util < 0.05:
        raise ConfigError(f"only {free / (1 << 30):.1f} GiB of {total / (1 << 30):.1f} GiB GPU "
                          "memory is free for vLLM after the HF engine loaded; give the replica "
                          "more GPU memory or set --vllm_gpu_memory_utilization")
    return dataclasses.replace(options, gpu_memory_utilization=round(util, 3))
