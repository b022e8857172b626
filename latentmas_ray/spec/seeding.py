"""Seeds: one run seed, and from it one independent seed per sample.

A sample's sampling generator is seeded from (run seed, sample id) only, never from its
position in a batch, a shard or a replica. So a sample draws the same random numbers whether
it runs alone, in a batch of 20, or on another machine after a retry.

With K completions per sample (--num_return_sequences) completion j draws from its own
stream, seeded from (run seed, sample id, j); completion 0's seed is the sample's seed, so a
K=1 run draws exactly what it drew before completions existed.
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


def completion_seed(run_seed: int, sample_id: str, index: int) -> int:
    """The seed of completion `index` (0..K-1) of a sample; index 0 is `sample_seed`."""
    assert index >= 0, index
    if index == 0:
        return sample_seed(run_seed, sample_id)
    digest = hashlib.sha256(f"{int(run_seed)}\x00{sample_id}\x00{int(index)}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def completion_generator(run_seed: int, sample_id: str, index: int,
                         device: torch.device | str) -> torch.Generator:
    """A torch.Generator on `device` for completion `index` of a sample (index 0: the same
    stream as `sample_generator`)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(completion_seed(run_seed, sample_id, index))
    return g
