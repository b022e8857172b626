"""Engines: a model + tokenizer behind the small interface the methods use (hf, vllm); how a
vLLM engine starts (vllm_start) and whether a vLLM run fits (vllm_fit)."""

from .hf import HFEngine
from .text import SamplingParams

__all__ = ["HFEngine", "SamplingParams"]
