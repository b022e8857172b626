"""What the HF and vLLM engines share: the tokenizer side and the sampling settings.

Both engines render prompts, tokenize, pad and decode with these same functions, stop on the
same token set and fall back to the same top_k, so a prompt's token ids and a generation's stop
are the HF engine's by construction on either engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SamplingParams:
    temperature: float       # 0 = greedy (argmax); top_p/top_k are then ignored
    top_p: float = 1.0       # nucleus mass kept (1.0 = off)
    top_k: int | None = None  # None/0 = off

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        # the reference: bf16 on GPU, fp32 when there is no CUDA
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def as_id_list(x) -> list[int]:
    """An id, a list of ids or None (generation_config's eos_token_id) as a list."""
    if x is None:
        return []
    if isinstance(x, int):
        return [x]
    return [int(i) for i in x]


class TextSide:
    """The tokenizer half of an engine. Subclasses call `init_text` from their __init__ and
    provide `device` (where prompt tensors go)."""

    tokenizer: object
    stop_token_ids: frozenset[int]
    pad_token_id: int
    default_top_k: int | None

    def init_text(self, tokenizer, generation_config) -> None:
        self.tokenizer = tokenizer
        # Stop tokens: generation_config eos ids (Qwen3: <|im_end|>, <|endoftext|>) plus the
        # tokenizer's eos, the set HF generate stops on in the reference.
        stops = set(as_id_list(getattr(generation_config, "eos_token_id", None)))
        stops |= set(as_id_list(tokenizer.eos_token_id))
        assert stops, "no stop token: neither generation_config nor the tokenizer has an eos"
        self.stop_token_ids = frozenset(stops)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else min(stops))
        # top_k used when the method config leaves it None (Qwen3's generation_config: 20).
        # transformers 5 has no implicit default (4.x defaulted to 50).
        gk = getattr(generation_config, "top_k", None)
        self.default_top_k = int(gk) if gk else None

    def sampling(self, temperature: float, top_p: float = 1.0, top_k: int | None = None) -> SamplingParams:
        """Sampling settings; top_k None falls back to the model's generation_config."""
        return SamplingParams(temperature, top_p, top_k if top_k is not None else self.default_top_k)

    def render(self, messages: list[dict], think: bool = False) -> str:
        """Chat template with the generation prompt, no `enable_thinking` argument (as the
        reference), plus the literal "<think>" when `think`."""
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str), type(text)
        return text + "<think>" if think else text

    def tokenize(self, text: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) > 0, "empty prompt"
        return list(ids)

    def pad_left(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token lists -> (ids [B, L], mask [B, L]), LEFT-padded with pad_token_id."""
        assert seqs and all(len(s) > 0 for s in seqs), "every row needs at least one token"
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), self.pad_token_id, dtype=torch.long)   # [B, L]
        mask = torch.zeros((len(seqs), length), dtype=torch.long)                     # [B, L]
        for i, s in enumerate(seqs):
            ids[i, length - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, length - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (ids [B, L], mask [B, L]), LEFT-padded, no special tokens added."""
        return self.pad_left([self.tokenize(t) for t in texts])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)
