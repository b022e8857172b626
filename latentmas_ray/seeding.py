"""Seeds: one run seed, and from it one independent seed per sample.

A sample's sampling generator is seeded from (run seed, sample id) only, never from its
position in a batch, a shard or a replica. So a sample draws the same random numbers whether
it runs alone, in a batch of 20, or on another machine after a retry.
"""

from __future__ import annotations

import hashlib

import torch


def sample_seed(run_seed: int, sample_id: str) -> int:
    """sha256(run_seed, sample_id) folded to a non-negative 63-bit int (what torch accepts)."""
    digest = hashlib.sha256(f"{int(run_seed)}\x00{sample_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sample_generator(run_seed: int, sample_id: str, device: torch.device | str) -> torch.Generator:
    """A torch.Generator on `device`, seeded for this sample. One per sample per method call;
    the agents of a sample draw from it in order, so the stream is the sample's own."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(sample_seed(run_seed, sample_id))
    return g
