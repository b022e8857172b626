"""Memory ablations: what an agent passes on beyond the reference's three modes.

After each thinking agent the batch's working memory (BatchKV) is cut by the run's memory mode
(MethodConfig.memory):

    full / last_agent / latent_only   the reference's modes (BatchKV.keep_segments)
    layers        KVComm-style: only the --memory_layers layers' KV is passed on; in every
                  other layer the entries so far are hidden from all later queries (and not
                  shipped between actors)
    top_attention kNN-LatentMAS-style pruning: per sample, the --memory_top_k positions that
                  received the most attention from the agent's last query (its last latent
                  step, or its last prompt token at m = 0), summed over layers and heads
    top_key_norm  the same with a position's key norm (mean over layers and heads) as score

Keeping everything (all layers; k >= the memory's length) is the full memory exactly. The
mask of a hidden layer and the attention mass are applied / read inside the attention function
(engines/attention.py) through a `MemoryView` passed with the forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from latentmas_ray.spec.config import ABLATION_MEMORY_MODES


class AttentionMass:
    """Accumulates, per row and memory column, the attention the chunk's LAST query gives it,
    summed over layers and heads: [B, T] fp32 after the forward."""

    def __init__(self):
        self.mass: torch.Tensor | None = None

    def add(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
            scaling: float | None) -> None:
        """query [B, H, q, Dh], key [B, H_kv, T, Dh], mask [B, 1, q, T] bool or None."""
        q = query[:, :, -1:, :].float()                                        # [B, H, 1, Dh]
        k = key.float().repeat_interleave(query.shape[1] // key.shape[1], dim=1)   # [B, H, T, Dh]
        scale = scaling if scaling is not None else q.shape[-1] ** -0.5
        scores = (q @ k.transpose(-1, -2)) * scale                             # [B, H, 1, T]
        if mask is not None:   # the last query's row; None = causal: the last query sees all
            scores = scores.masked_fill(~mask[:, :, -1:, :].bool(), float("-inf"))
        w = scores.softmax(dim=-1).sum(dim=(1, 2))                             # [B, T]
        self.mass = w if self.mass is None else self.mass + w


@dataclass
class MemoryView:
    """What one forward's attention needs beyond the 2D mask: columns [0, cut) hidden in every
    layer not in `layers` (None: no layer hidden), and an optional AttentionMass to fill."""

    layers: frozenset[int] | None = None
    cut: int = 0
    observer: AttentionMass | None = None

    def mask(self, layer: int, query: torch.Tensor, key: torch.Tensor,
             mask: torch.Tensor | None) -> torch.Tensor | None:
        """The layer's attention mask [B, 1, q, T] bool (None: unchanged, causal)."""
        if self.layers is None or layer in self.layers or self.cut == 0:
            return mask
        q, t = query.shape[2], key.shape[2]
        if mask is None:                         # causal: query i sees columns <= t - q + i
            rows = torch.arange(q, device=key.device)[:, None] + (t - q)
            mask = (torch.arange(t, device=key.device)[None, :] <= rows)[None, None]   # [1, 1, q, T]
        assert mask.dtype == torch.bool, "memory layers need a boolean (sdpa) attention mask"
        visible = torch.arange(t, device=key.device) >= self.cut                # [T]
        return mask & visible                                                   # [B|1, 1, q, T]


def parse_layers(spec: str) -> frozenset[int]:
    return frozenset(int(x) for x in spec.split(","))


def key_norm_scores(kv) -> torch.Tensor:
    """[B, T] mean key norm per column over layers and heads."""
    norms = [layer.keys.float().norm(dim=-1).mean(dim=1) for layer in kv.cache.layers
             if layer.is_initialized]                                           # [B, T] each
    return torch.stack(norms).mean(dim=0)


def apply_memory(kv, method_cfg, mass: AttentionMass | None = None) -> None:
    """Cut `kv` to what the agent passes on under method_cfg.memory (in place)."""
    mode = method_cfg.memory
    if mode not in ABLATION_MEMORY_MODES:
        kv.keep_segments(mode)
    elif mode == "layers":
        kv.hide_in_other_layers(parse_layers(method_cfg.memory_layers), kv.length)
    else:
        if mode == "top_attention":
            assert mass is not None and mass.mass is not None, "no attention mass recorded"
            scores = mass.mass
        else:
            scores = key_norm_scores(kv)
        kv.keep_top(scores, method_cfg.memory_top_k)
