"""The torch and transformers this code runs on, checked once before an engine loads.

A GPU image brings its own torch (a bare CUDA image: torch 2.11 or newer) and maybe another
transformers than setup.cfg pins. Below the floor, or at a transformers whose KV-cache API
differs, the engine would fail deep inside a forward pass; instead the load stops with one line
naming the version needed.

- torch >= 2.11: the oldest torch of the images we target. Nothing newer is used: the newest
  torch API the engine calls is scaled_dot_product_attention(enable_gqa=True), from torch 2.5
  (the others: torch.compile(dynamic=True), Tensor.untyped_storage, torch.isin, are older).
- transformers >= 5.16.1, < 5.20: the range vLLM 0.32 accepts (latentmas_ray/spec/pins.py);
  the KV-cache API differs from 5.20 on (past_key_values= vs cache=; setup.cfg), and the
  engine registers its attention with AttentionInterface (transformers >= 4.48).
"""

from __future__ import annotations

import re

TORCH_FLOOR = (2, 11)
TRANSFORMERS_FLOOR = (5, 16, 1)
TRANSFORMERS_CEILING = (5, 20)          # exclusive


def parse(version: str) -> tuple[int, ...]:
    """"2.13.0+cpu" -> (2, 13, 0); "5.20.0.dev0" -> (5, 20, 0)."""
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def dotted(v: tuple[int, ...]) -> str:
    return ".".join(map(str, v))


def version_problem(torch_version: str, transformers_version: str) -> str | None:
    """None when these versions are supported, else one line saying what is needed."""
    t, tf = parse(torch_version), parse(transformers_version)
    if t < TORCH_FLOOR:
        return (f"torch {torch_version} is too old: latentmas-ray needs torch >= "
                f"{dotted(TORCH_FLOOR)} (pip install 'torch>={dotted(TORCH_FLOOR)}')")
    if not TRANSFORMERS_FLOOR <= tf < TRANSFORMERS_CEILING:
        return (f"transformers {transformers_version} is not supported: latentmas-ray needs "
                f"transformers >= {dotted(TRANSFORMERS_FLOOR)}, < {dotted(TRANSFORMERS_CEILING)} "
                f"(pip install 'transformers>={dotted(TRANSFORMERS_FLOOR)},"
                f"<{dotted(TRANSFORMERS_CEILING)}')")
    return None


def check_versions() -> str:
    """The installed torch and transformers ("torch X, transformers Y"); a ConfigError naming
    the version needed when they are outside what this code supports."""
    import torch
    import transformers

    from ..errors import ConfigError

    problem = version_problem(torch.__version__, transformers.__version__)
    if problem:
        raise ConfigError(problem)
    return f"torch {torch.__version__}, transformers {transformers.__version__}"
