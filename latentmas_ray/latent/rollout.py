"""The latent rollout of one agent over a batch (REFERENCE.md 3.2), with correct batching.

    prefill:  the agent's LEFT-padded prompt is appended to the shared memory `kv`;
              h = final normed hidden state at the last column, which (left padding) is every
              row's last REAL token (the reference reads a pad's state for shorter rows).
    m steps:  e = realign(h) is appended as one input embedding per row (mask 1, position +1),
              h = its output state. m steps add m columns; the last h is not used further.

An agent adds L_agent (padded prompt) + m columns to the memory; its pads are masked forever.
The memory is sized for all of them before the prefill, so every step writes in place, and a
latent step never waits for the device (no host sync between the m forwards).
"""

from __future__ import annotations

import torch

from ..latent.cache import BatchKV
from ..latent.realign import Realigner


def prefill(engine, kv: BatchKV, ids: torch.Tensor, mask: torch.Tensor, observer=None) -> torch.Tensor:
    """ids, mask [B, L] LEFT-padded -> h [B, D], the last real token's normed hidden state."""
    assert bool(mask[:, -1].all()), "prompt must be left-padded (last column real in every row)"
    extra = {"observer": observer} if observer is not None else {}
    hidden = engine.forward(kv, mask, input_ids=ids, **extra)       # [B, L, D]
    return hidden[:, -1, :]                                          # [B, D]


def latent_steps(engine, kv: BatchKV, h: torch.Tensor, steps: int, realign: Realigner,
                 observer=None) -> torch.Tensor:
    """Feed `steps` latent thoughts; h [B, D] -> the last step's output state [B, D].
    observer (latent.memory.AttentionMass): filled by the LAST step's attention."""
    b = h.shape[0]
    kv.reserve(kv.length + steps)
    ones = torch.ones(b, 1, dtype=torch.long, device=h.device)      # [B, 1]
    for step in range(steps):
        e = realign(h)[:, None, :]                                   # [B, 1, D], model dtype
        extra = {"observer": observer} if observer is not None and step == steps - 1 else {}
        h = engine.forward(kv, ones, inputs_embeds=e, **extra)[:, -1, :]   # [B, D]
    return h


def run_latent_agent(engine, kv: BatchKV, ids: torch.Tensor, mask: torch.Tensor, steps: int,
                     realign: Realigner, observer=None) -> torch.Tensor:
    """One non-judger LatentMAS agent: prefill + `steps` latent steps, recorded as a segment
    of `kv` (for the memory modes). Returns the last hidden state [B, D]. observer: filled
    with the attention of the agent's last query (--memory top_attention)."""
    kv.reserve(kv.length + ids.shape[1] + steps)
    start = kv.begin_segment()
    h = prefill(engine, kv, ids, mask, observer if steps == 0 else None)
    h = latent_steps(engine, kv, h, steps, realign, observer)
    kv.end_segment(start, latent=steps)
    return h
