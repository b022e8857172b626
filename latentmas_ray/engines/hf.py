"""HFEngine: a transformers causal LM + tokenizer, with the primitives the methods need.

- `render` / `tokenize` / `pad_left`: chat-template prompts, LEFT-padded batches.
- `forward(kv, chunk_mask, ids|embeds)`: append a chunk to a batch's shared memory (BatchKV)
  with the right 2D mask and per-row position ids; returns the decoder's final hidden states.
- `generate(kv, ids, mask, ...)`: our own decode loop (not HF generate), so positions, masks
  and per-sample random streams are under our control.

Speed (issue 13). The memory is a preallocated cache written in place (latent/slab.py), sized
before a prefill + decode or a prefill + m latent steps; a one-column forward gets its 4D
mask straight from the memory (no mask building, no host sync); masked attention reads the
grouped key/value heads without copying them (engines/attention.py); a decode step waits for
the device once (the stop flags), a latent step never; finished rows stay in the batch until
half of it is done, then are dropped together; sampling draws each row's noise from its own
generator and picks all rows at once. Opt-in and not bit-identical: --compile (torch.compile of
the one-position forward) and --packed_linear (CPU oneDNN matmuls on prepacked weights).

Which hidden state. We run the decoder (`model.get_decoder()`, i.e. `model.model`) and read
`last_hidden_state`, which is the output of the final norm (RMSNorm for Qwen/Llama); logits
are `lm_head` of it. In transformers 5.19 `output_hidden_states=True` gives n_layers + 1
states whose last entry is *replaced* by `last_hidden_state` (`capture_outputs(...,
tie_last_hidden_states=True)` in utils/output_capturing.py), so the reference's
`hidden_states[-1]` is this same normed state; tests/test_hf_engine.py checks both facts.
At start-up `_check_head` verifies that lm_head(last_hidden_state) equals the model's own
logits, so an architecture with extra logit processing (soft-capping, scaling) fails loudly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from latentmas_ray.spec.config import ModelConfig
from ..errors import ConfigError
from ..latent.cache import BatchKV
from ..latent.realign import Realigner, realigner_for_model
from . import attention as gqa_attention
from . import packed_linear as packed
from .text import SamplingParams, TextSide, resolve_dtype

log = logging.getLogger(__name__)

# generate's `on_finished(rows, tokens)`: rows that ended, as original indices, and their ids
RowsFinished = Callable[[list[int], list[list[int]]], None]


def compiled_steps(decoder):
    """torch.compile of the decoder for one-position steps. dynamic=True: the memory's length
    (and the batch, which shrinks as rows finish) are symbolic, so a run compiles a few graphs
    (ids / embeds inputs, batch 1 / more, a first step with no memory), not one per step.
    No CUDA graphs ("reduce-overhead"): they need static shapes and the length changes."""
    import shutil

    if decoder.device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++")):
        raise ConfigError("--compile on the CPU needs a C++ compiler (g++) for torch.compile; "
                          "install one or drop --compile")
    import torch._dynamo

    # the graphs above, for each engine in the process; past the limit dynamo runs eagerly
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    return torch.compile(decoder, dynamic=True)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class HFEngine(TextSide):
    def __init__(self, model, tokenizer, *, grouped_attention: bool = True,
                 packed_linear: bool = False, compile_steps: bool = False,
                 decode_attention: str = "auto"):
        """grouped_attention: masked attention reads the grouped KV heads in place (CPU; the
        outputs are bit-identical to transformers' sdpa); False keeps the model's own.
        packed_linear: oneDNN matmuls with prepacked weights on the CPU (engines/
        packed_linear.py): faster at small batches but NOT bit-identical, so off by default.
        compile_steps: one-position forwards (decode and latent steps) go through
        torch.compile (dynamic shapes: one graph serves every memory length and batch > 1);
        also not bit-identical (fused kernels round differently), so off by default.
        decode_attention: "matmul" attends one-position steps with grouped matmuls
        (engines/attention.py: reads the memory once; faster in bf16 and on GPU); not
        bit-identical to "sdpa". "auto": matmul in bf16/fp16, sdpa (exact) in fp32."""
        self.model = model.eval()
        self.model.config.use_cache = True
        impl = self.model.config._attn_implementation
        if decode_attention == "auto":
            half = self.model.dtype in (torch.bfloat16, torch.float16)
            decode_attention = "matmul" if half and grouped_attention else "sdpa"
        if grouped_attention and impl == "sdpa":
            self.model.set_attn_implementation(gqa_attention.register(decode_attention))
        elif decode_attention != "sdpa":
            raise ConfigError(f"--decode_attention {decode_attention} needs the model's sdpa "
                              f"attention, not {impl}")
        # A one-column chunk gets its 4D bool mask from BatchKV.decode_mask: only the sdpa
        # family takes a bool mask (eager adds the mask, so it gets HF's own float mask).
        self._bool_mask = self.model.config._attn_implementation in (
            "sdpa", gqa_attention.NAME, gqa_attention.MATMUL_NAME)
        # Vocab truncation, as the reference's HF path does (REFERENCE.md 2.1): the model keeps
        # exactly len(tokenizer) rows of embed_tokens and lm_head (Qwen3: 151936 -> 151669).
        # This changes the realignment matrix and target norm, so it must happen first.
        rows = self.model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) != rows:
            if len(tokenizer) > rows:
                log.warning("tokenizer has %d tokens but the model %d rows: growing the "
                            "embeddings (new rows are freshly initialised)", len(tokenizer), rows)
            self.model.resize_token_embeddings(len(tokenizer))
        if packed_linear:
            dev, dt = self.model.get_input_embeddings().weight.device, self.model.dtype
            if not packed.available(dev, dt):
                raise ConfigError(f"packed_linear needs the CPU with fp32/bf16, not {dev} {dt}")
            packed.pack_linears(self.model)
        self.decoder = self.model.get_decoder()          # base model; its output is normed
        self._step_decoder = compiled_steps(self.decoder) if compile_steps else None
        self.lm_head = self.model.get_output_embeddings()
        assert self.lm_head is not None, "model has no output embeddings (lm_head)"
        assert self.lm_head.weight.shape[0] == len(tokenizer), "lm_head rows != len(tokenizer)"

        self.init_text(tokenizer, getattr(self.model, "generation_config", None))
        self._realigners: dict[bool, Realigner] = {}
        self.source = ""                    # the model folder (set by load)
        self._check_head()

    # ----- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, model_cfg: ModelConfig, path: str, **engine_kw) -> "HFEngine":
        """Load a local HF folder (config + weights + tokenizer); never touches the network.
        The weights are loaded straight onto the device (no full copy staged in host memory)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from latentmas_ray.spec.versions import check_versions

        check_versions()                    # one line naming the version needed, not a deep error
        folder = Path(path)
        if not folder.is_dir():
            raise ConfigError(f"model folder {path} does not exist; pass a local folder with "
                              "config.json, the weights and the tokenizer files")
        device = resolve_device(model_cfg.device)
        dtype = resolve_dtype(model_cfg.dtype, device)
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - any loader failure becomes one clear message
            raise ConfigError(f"cannot load a tokenizer from {path}: {type(e).__name__}: {e}") from e
        try:
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, local_files_only=True,
                                                         device_map=str(device))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"cannot load a causal LM from {path}: {type(e).__name__}: {e}") from e
        engine_kw.setdefault("packed_linear", model_cfg.packed_linear)
        engine_kw.setdefault("compile_steps", model_cfg.compile)
        engine_kw.setdefault("decode_attention", model_cfg.decode_attention)
        engine = cls(model.to(device), tokenizer, **engine_kw)   # .to: a no-op check
        engine.source = str(folder)         # recorded in each agent's trace (its model)
        return engine

    # ----- properties ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def hidden_size(self) -> int:
        return self.lm_head.weight.shape[1]

    def sync(self) -> None:
        """Wait for queued GPU work (for honest wall-clock timings)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def realigner(self, enabled: bool) -> Realigner:
        """The realignment map, built once per engine and setting (REFERENCE.md 2.2)."""
        if enabled not in self._realigners:
            self._realigners[enabled] = realigner_for_model(self.model, enabled)
        return self._realigners[enabled]

    def new_memory(self, batch: int) -> BatchKV:
        return BatchKV.empty(batch, self.device, self.model.config)

    # ----- model ---------------------------------------------------------------------------
    @torch.no_grad()
    def forward(self, kv: BatchKV, chunk_mask: torch.Tensor, input_ids: torch.Tensor | None = None,
                inputs_embeds: torch.Tensor | None = None, observer=None) -> torch.Tensor:
        """Append one LEFT-padded chunk to `kv` and return its final (normed) hidden states.

        chunk_mask [B, L]; exactly one of input_ids [B, L] / inputs_embeds [B, L, D].
        Returns [B, L, D]. With left padding, [:, -1] is every row's last real entry.
        observer: a latent.memory.AttentionMass to fill with the last query's attention.
        A memory with hidden layers (--memory layers) or an observer goes with a MemoryView
        that our attention function (engines/attention.py) applies.
        """
        assert (input_ids is None) != (inputs_embeds is None), "pass ids or embeds"
        attention_mask, position_ids = kv.extend(chunk_mask)        # [B, T+L], [B, L]
        if chunk_mask.shape[1] == 1 and self._bool_mask:
            attention_mask = kv.decode_mask()                        # [B, 1, 1, T+1] bool
        view = kv.view(observer)
        extra = {}
        if view is not None:
            if self.model.config._attn_implementation not in (gqa_attention.NAME,
                                                              gqa_attention.MATMUL_NAME):
                raise ConfigError("the memory ablations (--memory layers / top_attention) need "
                                  "the sdpa attention (HFEngine grouped_attention=True)")
            extra["memory_view"] = view
        decoder = self.decoder
        if self._step_decoder is not None and chunk_mask.shape[1] == 1 and view is None:
            decoder = self._step_decoder                  # torch.compile'd one-position steps
        out = decoder(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=kv.cache,   # transformers 5.19: `cache=` would be silently ignored
            use_cache=True,
            **extra,
        )
        assert kv.cache.get_seq_length() == kv.length, "cache and mask out of step"
        return out.last_hidden_state                                 # [B, L, D]

    @torch.no_grad()
    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """h [B, D] normed hidden states -> [B, V] fp32 logits."""
        return self.lm_head(h).float()

    def _check_head(self) -> None:
        # real text: the pad row of the embeddings may be zeros, whose logits are all 0
        ids = torch.tensor([self.tokenize("Check: 12 + 30 = 42.")], device=self.device)  # [1, L]
        with torch.no_grad():
            ref = self.model(input_ids=ids, use_cache=False).logits[:, -1].float()  # [1, V]
            h = self.decoder(input_ids=ids, use_cache=False).last_hidden_state      # [1, L, D]
            # lm_head over all L positions, as the model does: a [1, D] matmul would round
            # differently in bf16 (a ~1e-2 relative difference on random weights)
            ours = self.logits(h)[:, -1]                                            # [1, V]
        # fp32 to 1e-3; half precision: a post-processing (soft-capping, scaling) still shows
        tol = 1e-3 if self.dtype == torch.float32 else 2e-2
        if not torch.allclose(ref, ours, rtol=tol, atol=tol):
            raise ConfigError(f"{type(self.model).__name__}: logits are not lm_head(final hidden "
                              "state); this architecture post-processes logits and is not supported")

    # ----- decoding ------------------------------------------------------------------------
    def pick(self, logits: torch.Tensor, sp: SamplingParams,
             generators: list[torch.Generator | None],
             finished: list[bool] | None = None) -> torch.Tensor:
        """logits [B, V] fp32 -> next tokens [B]. Greedy: argmax. Sampling: temperature, then
        top-k, then top-p (HF's warper order), each row drawn from its own generator.

        The draw is torch.multinomial's own (n = 1): argmax(probs / q), q ~ Exp(1) of V values
        from the row's generator; here the noise is drawn per row and the argmax taken for all
        rows at once, so every row gets the token multinomial would give it. Rows marked
        `finished` draw nothing (their streams stay where they are) and get an argmax."""
        if sp.greedy:
            return logits.argmax(dim=-1)                                          # [B]
        logits = logits / sp.temperature
        if sp.top_k:
            k = min(sp.top_k, logits.shape[-1])
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]                    # [B, 1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if sp.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, dim=-1, descending=True)    # [B, V]
            probs = sorted_logits.softmax(dim=-1)
            mass_before = probs.cumsum(dim=-1) - probs                            # [B, V]
            drop_sorted = mass_before >= sp.top_p        # the top token always stays
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            logits = logits.masked_fill(drop, float("-inf"))
        probs = logits.softmax(dim=-1)                                            # [B, V]
        noise = torch.empty_like(probs)                                           # [B, V]
        for i, g in enumerate(generators):
            if finished is not None and finished[i]:
                noise[i].fill_(1.0)
                continue
            assert g is not None, "sampling needs one generator per row"
            noise[i].exponential_(1.0, generator=g)
        return (probs / noise).argmax(dim=-1)                                     # [B]

    def _cut_at_stop(self, row: list[int]) -> list[int]:
        for i, t in enumerate(row):
            if t in self.stop_token_ids:
                return row[:i + 1]
        return row

    @torch.no_grad()
    def generate(self, kv: BatchKV, ids: torch.Tensor, mask: torch.Tensor, max_new_tokens: int,
                 sp: SamplingParams, generators: list[torch.Generator | None] | None = None,
                 num_return_sequences: int = 1,
                 on_finished: RowsFinished | None = None) -> list[list[int]]:
        """Prefill the LEFT-padded prompt `ids` [B, L] after `kv`, then decode.

        num_return_sequences K: the prompt is prefilled ONCE per row; then the memory and the
        last hidden state are forked into K rows per prompt (row-major: prompt 0's K, then
        prompt 1's, ...) and decoded as a batch of B x K, `generators` giving one stream per
        completion (B x K of them). K = 1 is the plain path, untouched.

        Returns each row's new token ids (B x K lists). A row ends at its first stop token, which IS
        included (and counted), like HF generate's `sequences`; or after max_new_tokens.
        A finished row draws no more random numbers and never influences the others; it is
        dropped from the batch (and from `kv`, which this call consumes) once at least half
        of the batch is finished, so the compaction copy is paid rarely.

        on_finished(rows, tokens): told at the step where rows end (their stop token, or the
        length limit at the last step), before a compaction drops them: the rows' original
        indices (0..B*K-1) and their token ids, exactly what the return value holds for them.
        Every row is told exactly once, in order of finishing, all before this returns; the
        tokens and the return value are those of a run without it.
        """
        assert max_new_tokens >= 1 and num_return_sequences >= 1
        k = num_return_sequences
        b = ids.shape[0] * k
        generators = list(generators) if generators is not None else [None] * b
        assert len(generators) == b, (len(generators), b)
        stops = torch.tensor(sorted(self.stop_token_ids), device=self.device)    # [S]
        kv.reserve(kv.length + ids.shape[1] + max_new_tokens)   # the whole decode writes in place
        h = self.forward(kv, mask, input_ids=ids)[:, -1, :]                        # [B, D]
        if k > 1:                                        # fork: K decodes of one prefill
            fork = torch.arange(ids.shape[0], device=self.device).repeat_interleave(k)  # [B*K]
            kv.fork_rows(fork)
            h = h.index_select(0, fork)                                            # [B*K, D]
        rows = torch.arange(b, device=self.device)       # original row of each batch row
        out = torch.full((b, max_new_tokens), self.pad_token_id, dtype=torch.long,
                         device=self.device)                                       # [B, N]
        done = torch.zeros(b, dtype=torch.bool, device=self.device)                # [b]
        finished = [False] * b                           # host copy of `done`
        one = torch.ones(b, 1, dtype=torch.long, device=self.device)              # [b, 1]
        told = _Teller(on_finished, b, self._cut_at_stop)     # host copy of `rows`, who was told
        for step in range(max_new_tokens):
            tok = self.pick(self.logits(h), sp, generators, finished)             # [b]
            out[rows, step] = tok
            if step == max_new_tokens - 1:
                break
            done |= torch.isin(tok, stops)
            before, finished = finished, done.tolist()   # the step's one host sync
            told.newly(out, before, finished)
            n_done = sum(finished)
            if n_done == len(finished):
                break
            if 2 * n_done >= len(finished):              # compact: drop the finished rows
                keep = [i for i, f in enumerate(finished) if not f]
                keep_t = torch.tensor(keep, device=self.device)
                kv.select_rows(keep_t)
                tok, rows, done = tok[keep_t], rows[keep_t], done[keep_t]
                generators = [generators[i] for i in keep]
                finished = [False] * len(keep)
                one = one[:len(keep)]
                told.keep(keep)
            h = self.forward(kv, one, input_ids=tok[:, None])[:, -1, :]            # [b, D]
        told.rest(out)                                   # the length limit (or all stopped)
        return [self._cut_at_stop(r) for r in out.tolist()]


class _Teller:
    """HFEngine.generate's `on_finished`: which original row each batch row is (the host twin
    of `rows`, compacted alike) and which were told; nothing at all without a callback."""

    def __init__(self, on_finished: RowsFinished | None, b: int, cut: Callable):
        self.on_finished, self.cut = on_finished, cut
        self.rows = list(range(b))          # batch row -> original row
        self.untold = set(self.rows)

    def newly(self, out: torch.Tensor, before: list[bool], now: list[bool]) -> None:
        """Rows that `now` are finished and `before` were not (this step's stop tokens)."""
        if self.on_finished is not None:
            self.tell(out, [self.rows[i] for i, (a, n) in enumerate(zip(before, now)) if n and not a])

    def keep(self, keep: list[int]) -> None:
        self.rows = [self.rows[i] for i in keep]

    def rest(self, out: torch.Tensor) -> None:
        if self.on_finished is not None:
            self.tell(out, sorted(self.untold))

    def tell(self, out: torch.Tensor, rows: list[int]) -> None:
        if not rows:
            return
        self.untold -= set(rows)
        idx = torch.tensor(rows, device=out.device)
        self.on_finished(rows, [self.cut(r) for r in out.index_select(0, idx).tolist()])
