"""A KV cache written in place: per layer one preallocated buffer ("slab"), the gpt-fast way.

transformers' DynamicCache appends a step with `torch.cat`, i.e. it rewrites every layer's
whole keys and values at every token. A `SlabLayer` instead owns buffers of a fixed capacity
C and writes each new chunk into the next free columns; what the model reads are views of
the filled part:

    k_buf, v_buf   [B, H_kv, C, Dh]   allocated once (or grown in large chunks, rarely), zeroed:
                                      attention that reads all C columns (engines/attention.py,
                                      matmul) gives the unwritten ones weight 0, and 0 x garbage
                                      could be NaN
    keys, values   [B, H_kv, T, Dh]   = k_buf[:, :, :T], the columns written so far

To the model a SlabLayer behaves exactly like a DynamicLayer (same `keys`/`values`, same
length, same mask sizes), so attention sees the very same numbers. `SlabCache` is the
`transformers.Cache` holding one SlabLayer per decoder layer; `reserve(n)` sizes all of them
for n columns before a chunk of known length (a prompt + m latent steps, a prompt +
max_new_tokens), so a whole rollout or decode writes in place without one reallocation.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import Cache, CacheLayerMixin

GROW_MIN = 256   # columns: an unplanned growth adds at least this many (or doubles), never 1 by 1


def capacity_for(needed: int, current: int) -> int:
    return max(needed, 2 * current, current + GROW_MIN)


class SlabLayer(CacheLayerMixin):
    """One decoder layer's keys and values in preallocated buffers."""

    is_compileable = False   # the visible length changes per step: HF builds masks as for a dynamic cache
    is_sliding = False
    is_croppable = False

    def __init__(self, capacity: int = 0):
        super().__init__()
        self.k_buf: torch.Tensor | None = None    # [B, H, C, Dh]
        self.v_buf: torch.Tensor | None = None    # [B, H, C, Dh]
        self.length = 0                           # T: columns written
        self.capacity_hint = capacity             # C to allocate at the first update

    # ----- what the model calls ----------------------------------------------------------
    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, n, dk = key_states.shape
        cap = max(self.capacity_hint, n)
        self.dtype, self.device = key_states.dtype, key_states.device
        self.k_buf = key_states.new_zeros((b, h, cap, dk))
        self.v_buf = value_states.new_zeros((b, h, cap, value_states.shape[-1]))
        self.length = 0
        self.is_initialized = True
        self._expose()

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the chunk's keys/values [B, H, L, Dh] after the filled part; returns the
        filled views [B, H, T+L, Dh] (what DynamicLayer would return, without the copy)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.k_buf.shape[2]:
            self.grow(capacity_for(end, self.k_buf.shape[2]))
        self.k_buf[:, :, self.length:end].copy_(key_states)
        self.v_buf[:, :, self.length:end].copy_(value_states)
        self.length = end
        self._expose()
        return self.keys, self.values

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0      # (kv_length, kv_offset), as DynamicLayer

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return -1                                 # grows on demand: no hard maximum

    # ----- what BatchKV calls ------------------------------------------------------------
    def _expose(self) -> None:
        self.keys = self.k_buf[:, :, :self.length]      # [B, H, T, Dh] view
        self.values = self.v_buf[:, :, :self.length]    # [B, H, T, Dh] view

    @property
    def capacity(self) -> int:
        return self.k_buf.shape[2] if self.is_initialized else self.capacity_hint

    def grow(self, capacity: int) -> None:
        """Reallocate to `capacity` columns (>= the filled length), keeping the filled part."""
        if not self.is_initialized:
            self.capacity_hint = max(self.capacity_hint, capacity)
            return
        if capacity <= self.k_buf.shape[2]:
            return
        b, h, _, dk = self.k_buf.shape
        k = self.k_buf.new_zeros((b, h, capacity, dk))
        v = self.v_buf.new_zeros((b, h, capacity, self.v_buf.shape[-1]))
        k[:, :, :self.length].copy_(self.keys)
        v[:, :, :self.length].copy_(self.values)
        self.k_buf, self.v_buf = k, v
        self._expose()

    def keep_columns(self, start: int, end: int) -> None:
        """Keep columns [start, end): moved to the front of the same buffers."""
        if not self.is_initialized:
            return
        n = end - start
        if start > 0:
            # source and destination may overlap: go through a copy of the kept part
            self.k_buf[:, :, :n].copy_(self.k_buf[:, :, start:end].clone())
            self.v_buf[:, :, :n].copy_(self.v_buf[:, :, start:end].clone())
        self.length = n
        self._expose()

    def gather_columns(self, cols: torch.Tensor) -> None:
        """Row i keeps columns cols[i] ([B, K] long), moved to the front of the buffers."""
        if not self.is_initialized:
            return
        b, h, _, dk = self.k_buf.shape
        idx = cols[:, None, :, None]                                               # [B, 1, K, 1]
        kept_k = self.k_buf[:, :, :self.length].gather(2, idx.expand(b, h, -1, dk))   # [B, H, K, Dh]
        kept_v = self.v_buf[:, :, :self.length].gather(2, idx.expand(b, h, -1, self.v_buf.shape[-1]))
        self.k_buf[:, :, :cols.shape[1]].copy_(kept_k)
        self.v_buf[:, :, :cols.shape[1]].copy_(kept_v)
        self.length = cols.shape[1]
        self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep rows `indices` ([B'] ascending), moved to the front of the same buffers."""
        if not self.is_initialized:
            return
        t, b = self.length, indices.shape[0]
        kept_k = self.k_buf[:, :, :t].index_select(0, indices)      # [B', H, T, Dh]
        kept_v = self.v_buf[:, :, :t].index_select(0, indices)
        self.k_buf, self.v_buf = self.k_buf[:b], self.v_buf[:b]     # views: no reallocation
        self.k_buf[:, :, :t].copy_(kept_k)
        self.v_buf[:, :, :t].copy_(kept_v)
        self._expose()

    def fork_rows(self, indices: torch.Tensor) -> None:
        """Rows `indices` ([B'] any order, repeats allowed: B' may exceed B) in new buffers of
        the same capacity; only the filled columns are copied (K completions of one memory)."""
        if not self.is_initialized:
            return
        t = self.length
        b, h, cap, dk = self.k_buf.shape
        k = self.k_buf.new_zeros((indices.shape[0], h, cap, dk))             # [B', H, C, Dh]
        v = self.v_buf.new_zeros((indices.shape[0], h, cap, self.v_buf.shape[-1]))
        k[:, :, :t].copy_(self.k_buf[:, :, :t].index_select(0, indices))
        v[:, :, :t].copy_(self.v_buf[:, :, :t].index_select(0, indices))
        self.k_buf, self.v_buf = k, v
        self._expose()

    @classmethod
    def holding(cls, keys: torch.Tensor, values: torch.Tensor) -> "SlabLayer":
        """A layer whose buffers are exactly `keys`/`values` [B, H, T, Dh] (full: T == C)."""
        layer = cls()
        layer.dtype, layer.device = keys.dtype, keys.device
        layer.k_buf, layer.v_buf = keys.contiguous(), values.contiguous()
        layer.length = keys.shape[2]
        layer.is_initialized = True
        layer._expose()
        return layer


class SlabCache(Cache):
    """A transformers Cache of SlabLayers: full-attention decoders (Llama, Qwen2/3, ...).
    With `num_layers` None the layers are created at their first update (as DynamicCache())."""

    def __init__(self, num_layers: int | None = None, capacity: int = 0,
                 layers: list[SlabLayer] | None = None):
        if layers is None:
            layers = [SlabLayer(capacity) for _ in range(num_layers or 0)]
        self.capacity_hint = capacity
        super().__init__(layers=layers)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int,
               *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        while len(self.layers) <= layer_idx:
            self.layers.append(SlabLayer(self.capacity_hint))
        return self.layers[layer_idx].update(key_states, value_states)

    @classmethod
    def for_config(cls, config, capacity: int = 0) -> "SlabCache":
        text = config.get_text_config(decoder=True)
        kinds = set(getattr(text, "layer_types", None) or ["full_attention"])
        assert kinds == {"full_attention"}, (
            f"SlabCache supports full-attention layers only, this model has {sorted(kinds)}")
        return cls(text.num_hidden_layers, capacity)

    @classmethod
    def holding(cls, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> "SlabCache":
        return cls(len(layers), layers=[SlabLayer.holding(k, v) if k is not None else SlabLayer()
                                        for k, v in layers])

    @property
    def capacity(self) -> int:
        return min((layer.capacity for layer in self.layers), default=self.capacity_hint)

    def reserve(self, columns: int) -> None:
        """Make room for `columns` columns in every layer (one reallocation at most)."""
        self.capacity_hint = max(self.capacity_hint, columns)
        for layer in self.layers:
            if columns > layer.capacity:
                layer.grow(columns)

    def keep_columns(self, start: int, end: int) -> None:
        for layer in self.layers:
            layer.keep_columns(start, end)

    def gather_columns(self, cols: torch.Tensor) -> None:
        for layer in self.layers:
            layer.gather_columns(cols)

    def fork_rows(self, indices: torch.Tensor) -> None:
        for layer in self.layers:
            layer.fork_rows(indices)
