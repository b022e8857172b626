"""Grouped-query attention without copying the keys and values.

transformers' "sdpa" attention repeats every key/value head `n_heads / n_kv_heads` times
(`repeat_kv`, a full copy of the layer's cache) whenever a mask is passed, which is every step
of a padded batch: for SmolLM2 (9 / 3 heads) at batch 10 with a 700-column memory that copy
costs ~5x the attention itself. torch's SDPA reads grouped heads directly (`enable_gqa`).

"gqa_sdpa" is registered with transformers' AttentionInterface (and its mask builder is
transformers' own sdpa one), so the model code is untouched: masked calls on the CPU go to
SDPA with `enable_gqa=True`; everything else (no mask, CUDA, where HF's choices are tuned for
the flash kernels) goes to transformers' sdpa function unchanged. On the CPU the two give
bit-identical outputs (tests/test_engine_fast.py checks it).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "gqa_sdpa"


def gqa_sdpa_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       attention_mask: torch.Tensor | None, dropout: float = 0.0,
                       scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """query [B, H, q, Dh], key/value [B, H_kv, T, Dh], mask [B, 1, q, T] bool or None.
    Returns ([B, q, H, Dh], None) like every transformers attention function.
    memory_view (kwargs; latent.memory.MemoryView): the memory ablations' per-layer mask and
    attention-mass observer, passed with HFEngine.forward."""
    view = kwargs.pop("memory_view", None)
    if view is not None:
        masked = view.mask(module.layer_idx, query, key, attention_mask)
        if masked is not attention_mask:
            attention_mask, is_causal = masked, False
        if view.observer is not None:
            view.observer.add(query, key, attention_mask, scaling)
    grouped = key.shape[1] != query.shape[1]
    if (attention_mask is None or not grouped or query.device.type != "cpu"
            or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        enable_gqa=True)                                                   # [B, H, q, Dh]
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register "gqa_sdpa" once (idempotent); returns its name for set_attn_implementation."""
    AttentionInterface.register(NAME, gqa_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
