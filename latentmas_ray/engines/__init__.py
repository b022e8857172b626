"""Engines: a model + tokenizer behind the small interface the methods use."""

from .hf import HFEngine
from .text import SamplingParams

__all__ = ["HFEngine", "SamplingParams"]
