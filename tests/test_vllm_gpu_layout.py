"""vLLM as a GPU cluster would start it, checked on a CPU machine against vLLM's own code:

- the engine config is built as `vllm.LLM` builds it, so on an H100 (vLLM's platform mocked:
  device name and memory) max_num_seqs / max_num_batched_tokens are what `LLM` picks there,
  computed by vLLM's own functions; a user's --vllm_max_num_seqs still wins; the driver's
  in-flight window follows the engine's actual max_num_seqs;
- tensor parallelism: the executor vLLM keeps for our engine arguments, and, on a local Ray
  with fake GPUs, the seat layout (vLLM's actor sees its N devices; the hybrid's HF actor holds
  one device of its own) next to the layout vLLM's Ray executor refuses.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, ModelConfig, RunConfig, VLLMConfig


def _vllm_missing() -> str | None:
    from latentmas_ray.engines.vllm import vllm_import_error
    return vllm_import_error()


needs_vllm = pytest.mark.skipif(bool(_vllm_missing()), reason="vLLM is not importable")
GiB = 1 << 30
H100 = ("NVIDIA H100 80GB HBM3", 80 * GiB)


def _run_cfg(method: str = "baseline", **vllm) -> RunConfig:
    return RunConfig(task="gsm8k", seed=42, generate_bs=4, use_vllm=True,
                     model=ModelConfig(dtype="float32", device="cpu"),
                     method=MethodConfig(method=method, max_new_tokens=24, temperature=0.0),
                     execution=ExecutionConfig(vllm=VLLMConfig(**vllm)))


@pytest.fixture
def h100(monkeypatch):
    """vLLM's current platform answering as one H100 (what get_batch_defaults asks)."""
    from vllm.engine import arg_utils

    plat = arg_utils.current_platform
    monkeypatch.setattr(plat, "get_device_name", lambda device_id=0: H100[0])
    monkeypatch.setattr(plat, "get_device_total_memory", lambda device_id=0: H100[1])
    monkeypatch.setattr(plat, "is_cpu", lambda: False)
    monkeypatch.setattr(plat, "is_tpu", lambda: False)
    return plat


def scheduler_values(args, usage, max_model_len: int = 40960) -> tuple[int, int]:
    """What vLLM's create_engine_config sets on these EngineArgs under `usage` (its own method,
    with a decoder-only model of `max_model_len` positions and chunked prefill, as it decides
    for one)."""
    model = SimpleNamespace(max_model_len=max_model_len, is_multimodal_model=False,
                            is_mm_prefix_lm=False)
    args.enable_chunked_prefill = True
    args._set_default_max_num_seqs_and_batched_tokens_args(
        usage, model, SimpleNamespace(use_batched_dp_moe=False))
    return args.max_num_seqs, args.max_num_batched_tokens


def ours(folder, options: VLLMConfig) -> tuple[int, int]:
    from vllm import AsyncEngineArgs

    from latentmas_ray.engines.vllm_start import engine_args, usage_context

    kwargs = engine_args(str(folder), torch.bfloat16, options, cuda=True,
                         prompt_embeds=False, seq_tokens=None, vocab_mask=False)
    return scheduler_values(AsyncEngineArgs(**kwargs), usage_context())


@needs_vllm
def test_engine_batch_limits_on_an_h100_are_what_LLM_picks_there(h100, tiny_model_dir):
    from vllm import EngineArgs
    from vllm.usage.usage_lib import UsageContext

    tokens, seqs = EngineArgs.get_batch_defaults(world_size=1)
    assert seqs[UsageContext.LLM_CLASS] == 1024, "the platform mock did not take"
    llm = scheduler_values(EngineArgs(model=str(tiny_model_dir)), UsageContext.LLM_CLASS)
    assert llm == (seqs[UsageContext.LLM_CLASS], tokens[UsageContext.LLM_CLASS]) == (1024, 16384)
    assert ours(tiny_model_dir, VLLMConfig()) == llm
    # the serving context AsyncLLM.from_engine_args defaults to: a fraction of that
    serving = scheduler_values(EngineArgs(model=str(tiny_model_dir)), UsageContext.ENGINE_CONTEXT)
    assert serving == (128, 2048) and serving != llm
    # with tensor parallelism vLLM still picks per device (world size 2)
    assert ours(tiny_model_dir, VLLMConfig(tensor_parallel_size=2))[0] == llm[0]


@needs_vllm
def test_user_max_num_seqs_wins_over_vllms_default(h100, tiny_model_dir):
    seqs, batched = ours(tiny_model_dir, VLLMConfig(max_num_seqs=64))
    assert seqs == 64
    assert batched == ours(tiny_model_dir, VLLMConfig())[1]          # the other default is still vLLM's


def test_in_flight_window_follows_the_engines_max_num_seqs():
    from jobs.replicas import VLLMFactory
    from latentmas_ray.run.streaming import WINDOW_PER_SLOT

    cfg = _run_cfg()
    for seqs in (1024, 128):
        factory = VLLMFactory(cfg, None, {})
        factory.ready_info(None, {"max_num_seqs": seqs})
        assert factory.in_flight(2) == math.ceil(WINDOW_PER_SLOT * seqs / cfg.generate_bs) + 1


# ----- tensor parallelism ------------------------------------------------------------------

@needs_vllm
def test_tensor_parallel_engine_keeps_the_multiprocessing_executor():
    from vllm.config import ParallelConfig

    from latentmas_ray.engines.vllm_start import engine_args

    def backend(tp: int):
        kwargs = engine_args("/m", torch.bfloat16, VLLMConfig(tensor_parallel_size=tp), cuda=True,
                             prompt_embeds=False, seq_tokens=None, vocab_mask=False)
        pc = ParallelConfig(tensor_parallel_size=tp,
                            distributed_executor_backend=kwargs.get("distributed_executor_backend"))
        return pc.distributed_executor_backend, pc.use_ray

    assert backend(2) == ("mp", False)
    assert backend(1) == ("uni", False)          # one device: vLLM's own in-process choice


def test_hybrid_gpu_split_gives_the_hf_actor_only_its_device():
    from jobs.replicas import HybridFactory, hybrid_gpu_split

    assert hybrid_gpu_split(1.0, 1, 0.5) == (0.5, 0.5)          # one shared device
    assert hybrid_gpu_split(2.0, 1, 0.5) == (1.0, 1.0)
    assert hybrid_gpu_split(3.0, 2, 0.5) == (1.0, 2.0)          # TP 2: 2 for vLLM, 1 for HF
    assert hybrid_gpu_split(2.5, 2, 0.5) == (0.5, 2.0)
    assert hybrid_gpu_split(0.0, 2, 0.5) == (0.0, 0.0)
    for gpus in (2.0, 4.0):
        with pytest.raises(ConfigError, match=r"--num_gpus_per_replica must be in \(2, 3\]"):
            hybrid_gpu_split(gpus, 2, 0.5)
    factory = HybridFactory(_run_cfg("latent_mas", tensor_parallel_size=2), None, {})
    factory.resolve(cluster_has_gpus=True, owned=False)
    assert factory.gpus == 3.0 and factory.gpu_split() == (1.0, 2.0)
    assert factory.bundles() == [{"CPU": 2.0, "GPU": 3.0}]
