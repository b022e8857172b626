"""Will this vLLM run fit? The one module that answers it, checked before any engine starts.

    check_gpus(cfg)                      --tensor_parallel_size N needs N whole GPUs where the
                                         vLLM engine runs (this machine, or a replica's share)
    check_tensor_parallel(tp, gpus, where)    the same rule for one engine or actor
    check_prompt_lengths(cfg, lengths)   every input + max_new_tokens within --vllm_max_model_len
                                         (lengths measured by latentmas_ray/run/lengths.py)
    typical_seq_tokens(cfg)              positions a typical sequence of the run takes
    max_num_seqs_for(folder, dtype, options, seq_tokens)
                                         CPU: how many such sequences the KV budget holds at once
                                         (derive_max_num_seqs over cpu_kv_bytes and the model's
                                         KV bytes per position, spec/models.py)

Plain functions over the run's RunConfig / VLLMConfig and the model folder's config; nothing
here starts vLLM (engines/vllm_start.py builds the engine arguments from these answers).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.config import RunConfig, VLLMConfig
from latentmas_ray.spec.models import kv_bytes_per_position, kv_layout

# vLLM's own ceiling on a GPU (its default max_num_seqs); a derived value never exceeds it
MAX_NUM_SEQS_CAP = 256


# ----- GPUs ----------------------------------------------------------------------------------

def check_tensor_parallel(tp: int, gpus: float, where: str) -> None:
    """--tensor_parallel_size N needs N whole GPUs for the vLLM engine (one line otherwise)."""
    if tp <= 1:
        return
    if gpus < tp:
        raise ConfigError(f"--tensor_parallel_size {tp} needs {tp} GPUs for the vLLM engine, but "
                          f"{where} has {gpus:g}; lower --tensor_parallel_size or give it more "
                          "GPUs (--num_gpus_per_replica)")


def check_gpus(cfg: RunConfig) -> None:
    """Before anything starts: in process, this machine's GPUs; on Ray with
    --num_gpus_per_replica, the vLLM actor's share of a replica (x --vllm_gpu_share for the
    hybrid). Without it the replica factory checks its bundle when it sizes it."""
    if not cfg.use_vllm:
        return
    tp = cfg.execution.vllm.tensor_parallel_size
    if not cfg.execution.ray:
        check_tensor_parallel(tp, torch.cuda.device_count() if torch.cuda.is_available() else 0,
                              "this machine")
    elif cfg.execution.num_gpus_per_replica is not None:
        gpus, hybrid = cfg.execution.num_gpus_per_replica, cfg.engine_kind == "hybrid"
        vllm_gpus = hybrid_gpu_split(gpus, tp, cfg.execution.vllm.gpu_share)[1] if hybrid else gpus
        check_tensor_parallel(tp, vllm_gpus, "a replica's vLLM actor (--num_gpus_per_replica"
                              + (" x --vllm_gpu_share)" if hybrid else ")"))


def hybrid_gpu_split(gpus: float, tp: int, share: float) -> tuple[float, float]:
    """A hybrid replica's GPUs -> (HF actor's, vLLM actor's). One device (tp 1): `share` of it
    to vLLM, the rest to HF. Tensor parallelism N: vLLM holds N whole GPUs (its workers, one a
    device) and the HF actor, which computes on one device, at most one GPU of its own."""
    if gpus <= 0:
        return 0.0, 0.0
    if tp == 1:
        return gpus * (1 - share), gpus * share
    hf = gpus - tp
    if not 0 < hf <= 1:
        raise ConfigError(
            f"--tensor_parallel_size {tp} in a hybrid replica: vLLM holds {tp} whole GPUs and the "
            f"HF latent actor one device (or a fraction of one) beside them, so "
            f"--num_gpus_per_replica must be in ({tp}, {tp + 1}] (default {tp + 1}), got {gpus:g}")
    return hf, float(tp)


# ----- lengths -------------------------------------------------------------------------------

def check_prompt_lengths(cfg: RunConfig, lengths: Mapping[str, int]) -> int:
    """Raise ONE line naming the worst sample and its numbers when a vLLM input (sample id ->
    positions) cannot fit --vllm_max_model_len with max_new_tokens; returns the longest input.
    With --vllm_clip_max_new_tokens an input only needs room for one new token (its budget is
    cut per request and recorded in its row)."""
    limit = cfg.execution.vllm.max_model_len
    if cfg.engine_kind == "hf" or limit is None or not lengths:
        return 0
    clip = cfg.execution.vllm.clip_max_new_tokens
    new = 1 if clip else cfg.method.max_new_tokens
    bad = {i: n for i, n in lengths.items() if n + new > limit}
    if bad:
        worst = max(bad, key=bad.get)
        n = bad[worst]
        more = f" (and {len(bad) - 1} more of {len(lengths)} samples)" if len(bad) > 1 else ""
        what = "the judger's input" if cfg.engine_kind == "hybrid" else "prompt"
        hint = ("raise --vllm_max_model_len" if clip else
                "raise --vllm_max_model_len, lower --max_new_tokens, or pass "
                "--vllm_clip_max_new_tokens to cut max_new_tokens per sample to what fits")
        raise ConfigError(f"sample {worst}: {what} of {n} tokens + max_new_tokens {new} = "
                          f"{n + new} > --vllm_max_model_len {limit}{more}; {hint}")
    return max(lengths.values())


def typical_seq_tokens(cfg: RunConfig) -> int:
    """Positions a typical vLLM sequence of this run takes (prompt + new tokens), which sizes
    max_num_seqs from the KV budget. A rough mean, not a bound: vLLM admits a sequence only
    when its KV fits, so a high estimate only queues requests longer. The 512 is a generous
    chat prompt (GSM8K prompts are ~150-300 tokens); TextMAS agents read up to three earlier
    answers (1.5 x max_new_tokens on average); the hybrid judger's input holds four prompts
    and 3 x latent_steps vectors."""
    m = cfg.method
    extra = {"baseline": 0, "text_mas": int(1.5 * m.max_new_tokens),
             "latent_mas": 3 * 512 + 3 * m.latent_steps}[m.method]
    return 512 + extra + m.max_new_tokens


# ----- the KV budget -------------------------------------------------------------------------

def derive_max_num_seqs(kv_bytes: int, bytes_per_token: int, seq_tokens: int,
                        cap: int = MAX_NUM_SEQS_CAP) -> int:
    """How many sequences of `seq_tokens` positions the KV budget holds at once (1..cap)."""
    assert kv_bytes > 0 and bytes_per_token > 0 and seq_tokens > 0
    return max(1, min(cap, kv_bytes // (bytes_per_token * seq_tokens)))


def cpu_kv_bytes(options: VLLMConfig) -> int:
    """The CPU KV budget: VLLM_CPU_KVCACHE_SPACE (GiB) when set, as vLLM reads it, else ours."""
    env = os.environ.get("VLLM_CPU_KVCACHE_SPACE")
    gib = float(env) if env else options.cpu_kv_cache_gib
    return int(gib * (1 << 30))


def max_num_seqs_for(folder: str | Path, dtype: torch.dtype, options: VLLMConfig,
                     seq_tokens: int | None) -> int:
    """CPU: the sequences of `seq_tokens` positions (default: max_model_len, else 4096; never
    more than max_model_len) the CPU KV budget holds at once."""
    seq = min(seq_tokens or options.max_model_len or 4096, options.max_model_len or 1 << 30)
    per_position = kv_bytes_per_position(kv_layout(Path(folder)),
                                         torch.empty((), dtype=dtype).element_size())
    return derive_max_num_seqs(cpu_kv_bytes(options), per_position, seq)
