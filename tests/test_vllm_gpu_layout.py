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
import sys
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
    from jobs.replicas import HybridFactory
    from latentmas_ray.engines.vllm_fit import hybrid_gpu_split

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


@pytest.fixture
def fake_gpu_ray():
    """A local Ray with 3 fake GPUs (Ray schedules on them and sets CUDA_VISIBLE_DEVICES)."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=4, num_gpus=3, include_dashboard=False, logging_level="error")
    # the probe below travels by value (Ray's workers cannot import a test module)
    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    try:
        yield ray
    finally:
        ray.cloudpickle.unregister_pickle_by_value(module)
        ray.shutdown()


class SeatProbe:
    """Stands where a replica's actor stands and asks vLLM's own code what it would do there."""

    def devices(self) -> tuple[list[str], str]:
        import os

        import ray
        return [str(g) for g in ray.get_gpu_ids()], os.environ.get("CUDA_VISIBLE_DEVICES", "")

    def executor(self, tp: int, backend: str | None) -> str:
        """The executor vLLM's ParallelConfig settles on here."""
        from vllm.config import ParallelConfig
        return str(ParallelConfig(tensor_parallel_size=tp,
                                  distributed_executor_backend=backend).distributed_executor_backend)

    def ray_executor_verdict(self, tp: int) -> str:
        """vLLM's Ray executor set-up on this actor's placement group (initialize_ray_cluster:
        its bundle checks, then _verify_bundles), as on a CUDA platform: "accepted" or why not."""
        from vllm.config import ParallelConfig
        from vllm.platforms import current_platform
        from vllm.v1.executor import ray_utils

        type(current_platform).ray_device_key = "GPU"     # the CPU platform has no Ray device
        try:
            ray_utils.initialize_ray_cluster(
                ParallelConfig(tensor_parallel_size=tp, distributed_executor_backend="ray"))
        except ValueError as e:
            return str(e)
        return "accepted"


@pytest.mark.ray
@needs_vllm
def test_tensor_parallel_seat_on_ray_is_what_vllm_accepts(fake_gpu_ray):
    """A hybrid replica with --tensor_parallel_size 2 on a local Ray (fake GPUs): its seat
    (jobs/replicas.py) holds the HF actor on one device and the vLLM actor on two others; in
    the vLLM actor vLLM keeps our multiprocessing executor and sees its 2 devices (what that
    executor needs). Left to choose there, vLLM would pick its Ray executor, whose own check
    refuses this seat; it accepts only one device per bundle, shown on such a group."""
    ray = fake_gpu_ray
    from ray.util import remove_placement_group

    from actors.common import actor_options
    from jobs.placement import seat_group
    from jobs.replicas import HybridFactory
    from latentmas_ray.engines.vllm_start import engine_args

    factory = HybridFactory(_run_cfg("latent_mas", tensor_parallel_size=2), None, {})
    factory.resolve(cluster_has_gpus=True, owned=False)
    hf_gpus, vllm_gpus = factory.gpu_split()
    pg = seat_group(factory.bundles(), "tp-seat")
    ray.get(pg.ready(), timeout=60)
    probe = ray.remote(SeatProbe)
    hf = probe.options(**actor_options(gpus=hf_gpus, cpus=factory.cpus, placement_group=pg,
                                       bundle_index=0)).remote()
    vllm = probe.options(**actor_options(gpus=vllm_gpus, cpus=1.0, placement_group=pg,
                                         bundle_index=0)).remote()
    (hf_ids, _), (vllm_ids, visible) = ray.get([hf.devices.remote(), vllm.devices.remote()])
    assert len(hf_ids) == 1 and len(vllm_ids) == 2 and not set(hf_ids) & set(vllm_ids)
    assert sorted(visible.split(",")) == sorted(vllm_ids)
    backend = engine_args("/m", torch.bfloat16, VLLMConfig(tensor_parallel_size=2), cuda=True,
                          prompt_embeds=False, seq_tokens=None,
                          vocab_mask=False)["distributed_executor_backend"]
    assert ray.get(vllm.executor.remote(2, backend)) == "mp"
    assert ray.get(vllm.executor.remote(2, None)) == "ray"         # vLLM's choice, unpinned
    verdict = ray.get(vllm.ray_executor_verdict.remote(2))
    assert "cannot have more than 1 GPU" in verdict, verdict
    remove_placement_group(pg)

    one_each = seat_group([{"CPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}], "ray-executor-seat")
    ray.get(one_each.ready(), timeout=60)
    driver = probe.options(**actor_options(cpus=1.0, placement_group=one_each,
                                           bundle_index=0)).remote()
    assert ray.get(driver.ray_executor_verdict.remote(2)) == "accepted"


@needs_vllm
def test_a_hybrid_seat_too_small_for_tensor_parallelism_stops_before_anything_starts():
    import dataclasses

    from jobs.evaluate import check_before_start

    cfg = _run_cfg("latent_mas", tensor_parallel_size=2)
    bad = dataclasses.replace(cfg, execution=dataclasses.replace(
        cfg.execution, ray=True, num_gpus_per_replica=2.0))
    with pytest.raises(ConfigError, match=r"must be in \(2, 3\] \(default 3\), got 2$"):
        check_before_start(bad)
    check_before_start(dataclasses.replace(bad, execution=dataclasses.replace(
        bad.execution, num_gpus_per_replica=3.0)))
