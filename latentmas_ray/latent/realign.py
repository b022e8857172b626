"""Latent-space realignment (REFERENCE.md 2.2, 2.3).

A last-layer hidden state h lives in the model's *output* space (it is what lm_head reads).
To feed it back as the next input we map it to the *input* embedding space:

    M           = solve(W_out^T W_out + lam I, W_out^T W_in)      # [D, D], fp32, lam = 1e-5
    target_norm = mean_v ||W_in[v]||_2                              # scalar, fp32
    e           = cast_h( a * target_norm / max(||a||, 1e-6) ),  a = fp32(h) @ M

M is ridge regression from output-embedding rows to input-embedding rows: h @ M is roughly the
input embedding of the token whose output embedding is h. With realign off, M is the identity
but the norm rescale is still applied (a reference quirk kept on purpose: REFERENCE.md 9.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

RIDGE_LAMBDA = 1e-5   # the reference's fixed constant
MIN_NORM = 1e-6       # the reference's clamp on ||a|| before rescaling


@dataclass(frozen=True)
class Realigner:
    matrix: torch.Tensor       # [D, D] fp32 (the identity when realign is off)
    target_norm: torch.Tensor  # [] fp32: mean row norm of W_in
    enabled: bool              # False: matrix is the identity and apply() skips the matmul

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.apply(h)

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """h: [..., D] last-layer (normed) hidden states -> [..., D] input embeddings, h's dtype."""
        assert h.shape[-1] == self.matrix.shape[0], (h.shape, self.matrix.shape)
        a = h.float()                                                     # [..., D] fp32
        if self.enabled:
            a = a @ self.matrix.to(a.device)                              # [..., D]
        # (identity: x @ I == x exactly in fp32, so skipping the matmul changes nothing)
        norm = a.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)           # [..., 1]
        a = a * (self.target_norm.to(a.device) / norm)                    # [..., D]
        return a.to(h.dtype)


@torch.no_grad()
def build_realigner(w_in: torch.Tensor, w_out: torch.Tensor, enabled: bool) -> Realigner:
    """w_in: [V, D] input-embedding weight; w_out: [V, D] lm_head weight (rows are tokens).

    Both are taken as they are in the model *after* the vocab truncation to len(tokenizer)
    (REFERENCE.md 2.1), so M and target_norm see exactly the reference's rows.
    """
    assert w_in.ndim == 2 and w_in.shape == w_out.shape, (w_in.shape, w_out.shape)
    w_in32 = w_in.detach().float()                                        # [V, D]
    target_norm = w_in32.norm(dim=1).mean()                               # []
    d = w_in32.shape[1]
    if not enabled:
        eye = torch.eye(d, dtype=torch.float32, device=w_in32.device)     # [D, D]
        return Realigner(eye, target_norm, enabled=False)
    w_out32 = w_out.detach().float().to(w_in32.device)                    # [V, D]
    gram = w_out32.T @ w_out32                                            # [D, D]
    gram = gram + RIDGE_LAMBDA * torch.eye(d, dtype=torch.float32, device=gram.device)
    rhs = w_out32.T @ w_in32                                              # [D, D]
    matrix = torch.linalg.solve(gram, rhs)                                # [D, D]
    assert torch.isfinite(matrix).all(), "realignment matrix has non-finite entries"
    return Realigner(matrix, target_norm, enabled=True)


def realigner_for_model(model: torch.nn.Module, enabled: bool) -> Realigner:
    """The realigner of a HF causal LM (its input embeddings and lm_head)."""
    w_in = model.get_input_embeddings().weight                            # [V, D]
    w_out = model.get_output_embeddings().weight                          # [V, D]
    return build_realigner(w_in, w_out, enabled)
