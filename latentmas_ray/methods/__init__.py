"""Methods: a batch of Samples in, one SampleResult per sample out.

    run_batch(engine, samples, method_cfg, run_seed, prompts=None) -> list[SampleResult]

prompts: user prompt templates from prompts.load_prompt_file (None = the built-in texts).
"""

from __future__ import annotations

from typing import Callable

from ..errors import ConfigError
from . import baseline, latent_mas, text_mas
from .result import AgentTrace, SampleResult

METHODS: dict[str, Callable] = {
    "baseline": baseline.run_batch,
    "text_mas": text_mas.run_batch,
    "latent_mas": latent_mas.run_batch,
}


def get_method(name: str) -> Callable:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}") from None


__all__ = ["AgentTrace", "SampleResult", "METHODS", "get_method"]
