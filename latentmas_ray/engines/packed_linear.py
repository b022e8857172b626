"""Opt-in CPU matmul kernels for decoding: oneDNN linear with weights packed once.

On the CPU a decode or latent step at batch ~10 is matmul bound, and torch's default kernel
for a [10, K] x [K, N] product reaches only ~25% of the machine's peak (SmolLM2 at batch 10:
~108 ms of a ~140 ms step). oneDNN's linear with its weights reordered ahead of time (what
torch.compile's freezing uses on the CPU) runs the same shapes 1.8-2.9x faster.

It changes the rounding (different summation order; ~1e-7 relative), so greedy tokens can
differ from transformers' and from the exact path: `HFEngine(packed_linear=True)` turns it on,
the default is off, and tests/test_engine_fast.py reports how many tokens differ on the parity
cases. CPU and fp32/bf16 only.
"""

from __future__ import annotations

import torch
from torch import nn

BATCH_HINT = 10   # rows oneDNN packs the weights for; any row count works, this one is tuned


class PackedLinear(nn.Module):
    """nn.Linear's forward on a oneDNN-packed copy of its weight (kept: `weight`, `bias`)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight            # the original (tied weights stay tied)
        self.bias = linear.bias
        with torch.no_grad():
            self.register_buffer("packed", torch.ops.mkldnn._reorder_linear_weight(
                linear.weight.detach(), BATCH_HINT), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features)                                   # [M, K]
        out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, self.bias, "none", [], "")
        return out.reshape(*x.shape[:-1], self.out_features)                     # [..., N]


def available(device: torch.device, dtype: torch.dtype) -> bool:
    return (device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
            and torch.backends.mkldnn.is_available())


def pack_linears(model: nn.Module) -> int:
    """Replace every nn.Linear of `model` (decoder layers and lm_head) by a PackedLinear, in
    place. Returns how many were replaced."""
    targets = [(name, mod) for name, mod in model.named_modules() if type(mod) is nn.Linear]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, PackedLinear(mod))
    return len(targets)
