"""The vocabulary mask, set once per engine: a vLLM logits processor that keeps the rows of
the model's output vocabulary the tokenizer knows (the HF engine truncates the vocab to
len(tokenizer), REFERENCE.md 2.1; Qwen3 has 151936 rows for 151669 tokens).

Passed as `logits_processors=[VocabMask]` only when the model has more rows than the tokenizer
has tokens, so it is built once in the EngineCore process and applied to every batch, instead
of an `allowed_token_ids` list (a mask built per request) on every request. Importing this
module imports vLLM: only the vLLM engine imports it, when it starts one.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import LogitsProcessor


def tokenizer_size(path: str) -> int:
    from transformers import AutoTokenizer
    return len(AutoTokenizer.from_pretrained(path, local_files_only=True))


class VocabMask(LogitsProcessor):
    """logits[:, len(tokenizer):] = -inf for every row of every batch."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        mc = vllm_config.model_config
        self.keep = tokenizer_size(mc.tokenizer)
        assert 0 < self.keep <= mc.get_vocab_size(), (self.keep, mc.get_vocab_size())

    def apply(self, logits: torch.Tensor) -> torch.Tensor:    # [B, V]
        if logits.shape[-1] > self.keep:
            logits[:, self.keep:] = float("-inf")
        return logits

    def is_argmax_invariant(self) -> bool:
        return False        # it can change the argmax: greedy decoding must see it too

    def update_state(self, batch_update) -> None:
        pass                # the same mask for every request
