"""HybridEngine: the pair the in-process hybrid LatentMAS needs, an HF engine for the latent
agents and a vLLM engine for the judger, on the same model folder (methods/hybrid.py)."""

from __future__ import annotations

import torch

from latentmas_ray.spec.config import ModelConfig, VLLMConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.engines.hf import HFEngine
from latentmas_ray.engines.vllm import VLLMEngine, require_vllm
from latentmas_ray.engines.vllm_start import shared_gpu_utilization


class HybridEngine:
    def __init__(self, hf: HFEngine, vllm: VLLMEngine):
        if hf.stop_token_ids != vllm.stop_token_ids:
            raise ConfigError(f"HF and vLLM stop tokens differ: {sorted(hf.stop_token_ids)} vs "
                              f"{sorted(vllm.stop_token_ids)}")
        if hf.hidden_size != vllm.hidden_size:
            raise ConfigError(f"HF hidden size {hf.hidden_size} != vLLM's {vllm.hidden_size}")
        self.hf, self.vllm = hf, vllm

    @classmethod
    def load(cls, model_cfg: ModelConfig, path: str, options: VLLMConfig | None = None,
             seq_tokens: int | None = None) -> "HybridEngine":
        """HF first, then vLLM with a memory share derived from what the HF engine left free
        (no concurrent memory profiling); vLLM takes embedding prompts (the judger's input)."""
        require_vllm()                                     # fails fast without vLLM
        hf = HFEngine.load(model_cfg, path)
        vllm = VLLMEngine.load(model_cfg, path, shared_gpu_utilization(options or VLLMConfig()),
                               prompt_embeds=True, seq_tokens=seq_tokens)
        return cls(hf, vllm)

    # what Evaluator / Stopwatch may touch
    @property
    def device(self) -> torch.device:
        return self.hf.device

    def sync(self) -> None:
        self.hf.sync()

    def close(self) -> None:
        """Close every engine: vLLM's EngineCore process (the HF engine is plain memory)."""
        self.vllm.close()
