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

"gqa_matmul" (opt-in: --decode_attention matmul) is the same, except that a one-position step
(decode, latent step) attends as two batched matmuls over the grouped heads: the G = H / H_kv
query heads of a group are one [G, Dh] block against that group's keys, so keys and values
are read once, in place (the whole preallocated buffer, its unwritten columns masked). It
computes what transformers' eager attention computes (scores in the model's dtype, softmax in
fp32); measured on this CPU (bench/bench_engine.py) torch's fused kernel reads a 2000-column
bf16 memory at ~1 GB/s, these matmuls at ~8 GB/s, and on a GPU it avoids the repeat_kv copy
that a masked sdpa call makes. Not bit-identical to sdpa.
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
        attention_mask, is_causal = apply_view(view, module, query, key, attention_mask, scaling,
                                               is_causal)
    grouped = key.shape[1] != query.shape[1]
    if (attention_mask is None or not grouped or query.device.type != "cpu"
            or kwargs.get("position_bias") is not None):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling,
        enable_gqa=True)                                                   # [B, H, q, Dh]
    return out.transpose(1, 2).contiguous(), None


def apply_view(view, module, query, key, attention_mask, scaling, is_causal):
    """The memory ablations' mask for this layer and their attention-mass observer."""
    masked = view.mask(module.layer_idx, query, key, attention_mask)
    if masked is not attention_mask:
        attention_mask, is_causal = masked, False
    if view.observer is not None:
        view.observer.add(query, key, attention_mask, scaling)
    return attention_mask, is_causal


def gqa_matmul_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         attention_mask: torch.Tensor | None, dropout: float = 0.0,
                         scaling: float | None = None, is_causal: bool | None = None, **kwargs):
    """As gqa_sdpa_attention; one query position goes through grouped matmuls:
    query [B, H, 1, Dh], key/value [B, H_kv, T, Dh], mask [B, 1, 1, T] bool (True = attend)
    or additive float, or None. Returns ([B, 1, H, Dh], None)."""
    b, h, q_len, dh = query.shape
    if q_len != 1 or dropout or kwargs.get("position_bias") is not None:
        return gqa_sdpa_attention(module, query, key, value, attention_mask, dropout=dropout,
                                  scaling=scaling, is_causal=is_causal, **kwargs)
    view = kwargs.pop("memory_view", None)
    if view is not None:
        attention_mask, _ = apply_view(view, module, query, key, attention_mask, scaling, False)
    hk, t = key.shape[1], key.shape[2]
    key_all, value_all = whole_buffer(key), whole_buffer(value)           # [B, H_kv, C, Dh]
    if key_all.shape[2] != value_all.shape[2]:
        key_all, value_all = key, value
    scale = dh ** -0.5 if scaling is None else scaling
    q = query.reshape(b, hk, h // hk, dh)                                   # [B, H_kv, G, Dh]
    scores = torch.matmul(q, key_all.transpose(-1, -2)) * scale            # [B, H_kv, G, C]
    lowest = torch.finfo(scores.dtype).min
    scores[..., t:] = lowest                             # columns not written yet
    if attention_mask is not None:
        mask = attention_mask[:, :, :1, -t:]                               # [B, 1, 1, T]
        if mask.dtype == torch.bool:
            scores[..., :t].masked_fill_(~mask, lowest)
        else:
            scores[..., :t] += mask
    probs = scores.softmax(dim=-1, dtype=torch.float32).to(value.dtype)   # [B, H_kv, G, C]
    out = torch.matmul(probs, value_all)                                   # [B, H_kv, G, Dh]
    return out.reshape(b, 1, h, dh), None


def whole_buffer(x: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, Dh], the filled part buf[:, :, :T] of a contiguous slab buffer buf
    [B, H, C, Dh] (latent/slab.py) -> buf, on the same storage (no copy); anything else ->
    x. Why: a batched matmul over a prefix view (batch stride C * Dh, not T * Dh) is not a
    plain strided batch to torch, which copies it first (5x slower here at 2000 columns);
    over the whole buffer it reads in place, and the unwritten columns get weight 0."""
    b, h, t, d = x.shape
    s0, s1, s2, s3 = x.stride()
    if (x.is_contiguous() or (s3, s2) != (1, d) or s1 % d or s0 != h * s1
            or x.storage_offset() % s1):                 # must start at a (row, head) block
        return x
    shape = (b, h, s1 // d, d)                                             # [B, H, C, Dh]
    if x.untyped_storage().nbytes() < (x.storage_offset() + b * s0) * x.element_size():
        return x
    return x.as_strided(shape, x.stride())


MATMUL_NAME = "gqa_matmul"


def register(decode: str = "sdpa") -> str:
    """Register our attention functions once (idempotent); returns the name to pass to
    set_attn_implementation for the one-position path `decode` (sdpa | matmul)."""
    AttentionInterface.register(NAME, gqa_sdpa_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    AttentionInterface.register(MATMUL_NAME, gqa_matmul_attention)
    AttentionMaskInterface.register(MATMUL_NAME, sdpa_mask)
    return MATMUL_NAME if decode == "matmul" else NAME
