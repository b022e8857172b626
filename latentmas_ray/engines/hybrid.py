"""HybridEngine: the pair the in-process hybrid LatentMAS needs, an HF engine for the latent
agents and a vLLM engine for the judger, on the same model folder (methods/hybrid.py)."""

from __future__ import annotations

import dataclasses

import torch

from ..config import ModelConfig, VLLMConfig
from ..errors import ConfigError
from .hf import HFEngine
from .vllm import VLLMEngine


class HybridEngine:
    def __init__(self, hf: HFEngine, vllm: VLLMEngine):
        if hf.stop_token_ids != vllm.stop_token_ids:
            raise ConfigError(f"HF and vLLM stop tokens differ: {sorted(hf.stop_token_ids)} vs "
                              f"{sorted(vllm.stop_token_ids)}")
        if hf.hidden_size != vllm.hidden_size:
            raise ConfigError(f"HF hidden size {hf.hidden_size} != vLLM's {vllm.hidden_size}")
        self.hf, self.vllm = hf, vllm

    @classmethod
    def load(cls, model_cfg: ModelConfig, path: str, options: VLLMConfig | None = None) -> "HybridEngine":
        options = options or VLLMConfig()
        if options.gpu_memory_utilization is None:   # leave the HF engine room on the GPU
            options = dataclasses.replace(options, gpu_memory_utilization=0.45)
        vllm = VLLMEngine.load(model_cfg, path, options)   # first: fails fast without vLLM
        return cls(HFEngine.load(model_cfg, path), vllm)

    # what Evaluator / Stopwatch may touch
    @property
    def device(self) -> torch.device:
        return self.hf.device

    def sync(self) -> None:
        self.hf.sync()

    def close(self) -> None:
        self.vllm.close()
