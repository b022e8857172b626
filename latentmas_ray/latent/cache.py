"""The shared working memory of a batch: a KV cache plus the bookkeeping that makes a padded
batch behave exactly like B separate batch-size-1 runs.

Layout. All rows share one cache index axis t = 0..T-1 (the HF cache grows by the same number
of columns for every row). Each chunk appended to it (an agent's prompt, a latent step, a
decoded token) is LEFT-padded to the longest row of that chunk, so a row's cache can hold pads
in the middle, e.g. with two agents:

    row 0:  [pad pad p p p p | l l | pad q q q | l l]
    row 1:  [p p p p p p     | l l | q q q q   | l l]

- `mask` [B, T]: 1 = a real token or latent vector, 0 = a pad. It is passed as the 2D
  attention mask of every forward, so no query ever attends to any pad (earlier agents' pads
  included; the reference unmasks them, REFERENCE.md 9.1).
- `next_pos` [B]: the number of real entries of each row so far. The next real entry of a row
  gets position id next_pos[row]; pads get a dummy position (they are never attended to). So
  each row's positions are contiguous 0..N-1, exactly as at batch size 1, while causality is
  still decided by the cache index (HF builds the causal part from the cache length).
- `segments`: (start, end, latent) column ranges of what each agent added, for the memory
  modes ("full", "last_agent", "latent_only").

Storage. Keys and values live in a `SlabCache` (latent/slab.py): per layer one preallocated
buffer written in place, so appending a token costs its own columns, not a copy of the whole
memory. The mask likewise: `mask` is a view of the first T columns of `mask_buf` [B, C].
`reserve(n)` sizes both for n columns ahead of a chunk of known length. Full-attention
decoders only (asserted when the cache is built).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from latentmas_ray.spec.config import SEGMENT_MEMORY_MODES

from ..errors import ConfigError
from .memory import MemoryView
from .slab import SlabCache, capacity_for



@dataclass
class Segment:
    start: int   # first cache column of the agent's contribution
    end: int     # one past its last column
    latent: int  # how many of its last columns are latent vectors


def _exported(t: torch.Tensor, device) -> torch.Tensor:
    """`t` on `device` as a tensor of its own: never a view of a live buffer (which would
    pickle, and ship through the object store, the whole buffer, and would change under the
    next in-place write)."""
    moved = t if device is None else t.to(device)
    if moved.data_ptr() == t.data_ptr() or not moved.is_contiguous():
        moved = moved.clone(memory_format=torch.contiguous_format)
    return moved


@dataclass
class BatchKV:
    cache: SlabCache             # layers[i].keys / .values: [B, H_kv, T, Dh] views of its buffers
    mask: torch.Tensor           # [B, T] long: 1 real, 0 pad (a view of mask_buf)
    next_pos: torch.Tensor       # [B] long: position id of each row's next real entry
    segments: list[Segment] = field(default_factory=list)
    mask_buf: torch.Tensor | None = None   # [B, C] long, C >= T; None: adopt `mask`
    # --memory layers (latent/memory.py): columns [0, cut) are hidden in every layer not in
    # `kept_layers` (None: no layer hidden)
    kept_layers: frozenset[int] | None = None
    cut: int = 0

    def __post_init__(self):
        if self.mask_buf is None:
            self.mask_buf = self.mask.contiguous()
            self.mask = self.mask_buf[:, :self.mask_buf.shape[1]]

    # ----- construction ------------------------------------------------------------------
    @classmethod
    def empty(cls, batch: int, device: torch.device | str, config=None) -> "BatchKV":
        """An empty memory for `batch` rows. `config` (the model config) gives the number of
        layers and checks they are all full attention; without it layers appear lazily."""
        cache = SlabCache.for_config(config) if config is not None else SlabCache()
        mask = torch.zeros(batch, 0, dtype=torch.long, device=device)        # [B, 0]
        next_pos = torch.zeros(batch, dtype=torch.long, device=device)       # [B]
        return cls(cache, mask, next_pos)

    # ----- sizes -----------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.mask.shape[0]

    @property
    def length(self) -> int:
        """T, the number of cache columns (pads included)."""
        return self.mask.shape[1]

    def real_lengths(self) -> torch.Tensor:
        """[B] real (unpadded) entries per row."""
        return self.mask.sum(dim=1)

    def nbytes(self) -> int:
        """Bytes of the keys and values held (T columns; the masks are negligible and not
        counted, nor is the unused reserve: see reserved_nbytes). A layer's hidden columns
        (--memory layers) are not counted: they are never read nor shipped."""
        total = 0
        for i, layer in enumerate(self.cache.layers):
            for t in (layer.keys, layer.values):
                if t is not None:
                    total += t[:, :, self._first_column(i):].numel() * t.element_size()
        return total

    def sample_nbytes(self) -> list[int]:
        """Each row's own keys and values: its real entries only (pads excluded), so the
        figure does not depend on the batch it ran in."""
        total = torch.zeros(self.batch_size, dtype=torch.long, device=self.mask.device)
        for i, layer in enumerate(self.cache.layers):
            if layer.keys is None:
                continue
            per_entry = (layer.keys[0, :, 0].numel() * layer.keys.element_size()
                         + layer.values[0, :, 0].numel() * layer.values.element_size())
            total += self.mask[:, self._first_column(i):].sum(dim=1) * per_entry
        return total.tolist()

    def _first_column(self, layer: int) -> int:
        """The first column layer `layer` can still read (cut for a hidden layer, else 0)."""
        return self.cut if self.kept_layers is not None and layer not in self.kept_layers else 0

    def reserved_nbytes(self) -> int:
        """Bytes allocated for keys and values, the unused reserve included."""
        return sum(t.numel() * t.element_size() for layer in self.cache.layers
                   for t in (layer.k_buf, layer.v_buf) if t is not None)

    def check(self) -> None:
        """Loud consistency check: the HF cache, the mask and next_pos agree. next_pos counts
        every real entry ever added, so it exceeds the entries held once a memory mode has cut
        the cache (keep_columns does not renumber); it can never be smaller."""
        t = self.cache.get_seq_length()
        assert t == self.length, f"cache holds {t} columns but the mask has {self.length}"
        assert torch.all(self.next_pos >= self.real_lengths()), (self.next_pos, self.real_lengths())

    # ----- appending a chunk -------------------------------------------------------------
    def _own_mask(self) -> None:
        """Re-adopt `mask` if a caller replaced it by a tensor outside mask_buf."""
        same = (self.mask.untyped_storage().data_ptr() == self.mask_buf.untyped_storage().data_ptr()
                and self.mask.storage_offset() == 0 and self.mask.shape[0] == self.mask_buf.shape[0])
        if not same:
            self.mask_buf = self.mask.contiguous()
            self.mask = self.mask_buf[:, :self.mask_buf.shape[1]]

    def reserve(self, columns: int) -> None:
        """Room for `columns` columns in total (keys, values and mask), allocated now, so the
        next chunks up to that length are written in place."""
        self._own_mask()
        self.cache.reserve(columns)
        if columns > self.mask_buf.shape[1]:
            buf = self.mask_buf.new_zeros((self.batch_size, columns))        # [B, C]
            buf[:, :self.length].copy_(self.mask)
            self.mask_buf, self.mask = buf, buf[:, :self.length]

    def extend(self, chunk_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reserve the columns of a new chunk before its forward pass.

        chunk_mask: [B, L] 1 real / 0 pad, LEFT-padded (pads only before the real tokens).
        Returns (attention_mask [B, T+L], position_ids [B, L]) for the forward, and updates
        mask/next_pos. The forward must then append exactly L columns to `cache`.
        A one-column chunk (a latent step, a decoded token) costs no host sync.
        """
        assert chunk_mask.ndim == 2 and chunk_mask.shape[0] == self.batch_size, chunk_mask.shape
        chunk_mask = chunk_mask.to(device=self.mask.device, dtype=torch.long)
        t, n = self.length, chunk_mask.shape[1]
        if n > 1:   # left padding: once a row has a real token, the rest of the chunk is real
            assert torch.all(chunk_mask[:, 1:] >= chunk_mask[:, :-1]), "chunk must be left-padded"
        seen = chunk_mask.cumsum(dim=1)                                      # [B, L]
        # real token k of a row (k = 0..) gets next_pos + k; pads get next_pos (never attended)
        position_ids = self.next_pos[:, None] + (seen - 1).clamp_min(0)      # [B, L]
        self._own_mask()
        if t + n > self.mask_buf.shape[1]:          # unplanned: grow in a large step
            self.reserve(capacity_for(t + n, self.mask_buf.shape[1]))
        self.mask_buf[:, t:t + n].copy_(chunk_mask)
        self.mask = self.mask_buf[:, :t + n]                                 # [B, T+L]
        self.next_pos = self.next_pos + seen[:, -1]                          # [B]
        return self.mask, position_ids

    def decode_mask(self) -> torch.Tensor:
        """[B, 1, 1, T] bool: the attention mask of a one-column chunk just added by `extend`,
        in the 4D form HF passes straight to attention (no mask building, no host sync).
        A single query attends to every real column, itself included, so causality adds
        nothing here."""
        return self.mask.bool()[:, None, None, :]

    def begin_segment(self) -> int:
        return self.length

    def end_segment(self, start: int, latent: int) -> None:
        self.segments.append(Segment(start, self.length, latent))

    # ----- memory modes ----------------------------------------------------------------
    def keep_columns(self, start: int, end: int | None = None) -> "BatchKV":
        """Keep cache columns [start, end) of every layer and row, in place; returns self.

        Positions are NOT renumbered: next_pos keeps counting, so the next chunk sits right
        after the kept entries in RoPE distance (the kept keys were rotated at their original
        positions; the reference would restart positions at the shorter cache length).
        """
        end = self.length if end is None else end
        assert 0 <= start <= end <= self.length, (start, end, self.length)
        self._own_mask()
        self.cache.keep_columns(start, end)
        n = end - start
        if start > 0:
            self.mask_buf[:, :n].copy_(self.mask_buf[:, start:end].clone())
        self.mask = self.mask_buf[:, :n]                                      # [B, T']
        kept = []
        for s in self.segments:
            a, b = max(s.start, start), min(s.end, end)
            if a < b:
                kept.append(Segment(a - start, b - start, min(s.latent, b - a)))
        self.segments = kept
        return self

    def hide_in_other_layers(self, layers: frozenset[int], cut: int) -> "BatchKV":
        """--memory layers: columns [0, cut) stay readable only in `layers`."""
        n = len(self.cache.layers)
        if layers and max(layers) >= n:
            raise ConfigError(f"--memory_layers {sorted(layers)}: the model has {n} layers (0..{n - 1})")
        assert cut >= self.cut, (cut, self.cut)
        self.kept_layers, self.cut = frozenset(layers), cut
        return self

    def view(self, observer=None):
        """The MemoryView a forward on this memory needs (None: nothing beyond the mask)."""
        if self.kept_layers is None and observer is None:
            return None
        return MemoryView(self.kept_layers, self.cut, observer)

    def keep_top(self, scores: torch.Tensor, k: int) -> "BatchKV":
        """Keep, per row, the k columns of highest `scores` [B, T] among its real entries (in
        their original order; a row with fewer real entries keeps them all). k >= T keeps
        everything untouched. Positions are not renumbered (as keep_columns)."""
        t = self.length
        if k >= t:
            return self
        scores = scores.float().masked_fill(self.mask == 0, float("-inf"))      # [B, T]
        cols = scores.topk(k, dim=1).indices.sort(dim=1).values                 # [B, k]
        self._own_mask()
        self.cache.gather_columns(cols)
        self.mask_buf[:, :k].copy_(self.mask_buf[:, :t].gather(1, cols))
        self.mask = self.mask_buf[:, :k]                                        # [B, k]
        self.segments = [Segment(0, k, 0)]
        return self

    def keep_segments(self, mode: str) -> "BatchKV":
        """What an agent passes on (REFERENCE.md 3.7): "full" everything (the reference);
        "last_agent" only the last agent's prompt + latents (`sequential_info_only`);
        "latent_only" only the last agent's latent vectors (`latent_only`)."""
        assert mode in SEGMENT_MEMORY_MODES, mode
        if mode == "full" or not self.segments:
            return self
        last = self.segments[-1]
        if mode == "last_agent":
            return self.keep_columns(last.start, last.end)
        return self.keep_columns(last.end - last.latent, last.end)

    # ----- rows --------------------------------------------------------------------------
    def select_rows(self, rows: torch.Tensor) -> "BatchKV":
        """Keep only `rows` ([B'] ascending long indices), in place; used to drop finished
        rows. Copies the kept rows' filled columns once (the decode loop calls it rarely)."""
        rows = rows.to(self.mask.device)
        self._own_mask()
        t = self.length
        self.cache.batch_select_indices(rows)                                 # keys: [B', H, T, Dh]
        self.mask_buf = self.mask_buf.index_select(0, rows)                   # [B', C]
        self.mask = self.mask_buf[:, :t]                                      # [B', T]
        self.next_pos = self.next_pos.index_select(0, rows)                   # [B']
        return self

    def fork_rows(self, rows: torch.Tensor) -> "BatchKV":
        """Rows `rows` ([B'] long, repeats allowed) as the new batch, in place: row i becomes
        a copy of old row rows[i]. `rows = arange(B).repeat_interleave(K)` forks every row's
        memory K ways (K completions decoded from one prefill). Copies the filled columns."""
        rows = rows.to(self.mask.device)
        self._own_mask()
        t = self.length
        self.cache.fork_rows(rows)                                           # keys: [B', H, T, Dh]
        self.mask_buf = self.mask_buf.index_select(0, rows)                   # [B', C]
        self.mask = self.mask_buf[:, :t]                                      # [B', T]
        self.next_pos = self.next_pos.index_select(0, rows)                   # [B']
        return self

    # ----- devices and transport -------------------------------------------------------
    def to_state(self, device: torch.device | str | None = None) -> dict:
        """Plain tensors (optionally moved, e.g. to "cpu"), each holding only its own T
        columns: picklable for Ray's object store."""
        layers = []
        for i, layer in enumerate(self.cache.layers):
            if layer.is_initialized and layer.keys.numel() > 0:
                c = self._first_column(i)      # a hidden layer ships only what it can read
                layers.append((_exported(layer.keys[:, :, c:], device),
                               _exported(layer.values[:, :, c:], device)))
            else:
                layers.append((None, None))
        return {
            "layers": layers,
            "mask": _exported(self.mask, device),
            "next_pos": _exported(self.next_pos, device),
            "segments": [(s.start, s.end, s.latent) for s in self.segments],
            "kept_layers": sorted(self.kept_layers) if self.kept_layers is not None else None,
            "cut": self.cut,
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device | str | None = None) -> "BatchKV":
        """The inverse of to_state. Tensors already on `device` are adopted, not copied."""
        def mv(t):
            return t if device is None or t is None else t.to(device)
        kept, cut = state.get("kept_layers"), state.get("cut", 0)

        def full(i, t):     # a hidden layer's unread columns [0, cut) come back as zeros
            if t is None or kept is None or i in kept or cut == 0:
                return t
            return torch.cat([t.new_zeros(t.shape[0], t.shape[1], cut, t.shape[3]), t], dim=2)
        data = [(full(i, mv(k)), full(i, mv(v))) for i, (k, v) in enumerate(state["layers"])]
        cache = SlabCache.holding(data) if data and data[0][0] is not None else SlabCache(len(data))
        kv = cls(cache, mv(state["mask"]), mv(state["next_pos"]),
                 [Segment(*s) for s in state["segments"]],
                 kept_layers=frozenset(kept) if kept is not None else None,
                 cut=state.get("cut", 0))
        kv.check()
        return kv

    def to(self, device: torch.device | str) -> "BatchKV":
        """A copy on `device` (e.g. "cpu" to park it, back to "cuda" to use it)."""
        return BatchKV.from_state(self.to_state(device))
