"""Realignment (REFERENCE.md 2.2/2.3): the ridge matrix, the target norm, the quirks."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from latentmas_ray.latent.realign import RIDGE_LAMBDA, build_realigner
from tiny_model import MODEL_VOCAB


def _weights(v=50, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(v, d, generator=g), torch.randn(v, d, generator=g)


def test_matrix_equals_closed_form():
    w_in, w_out = _weights()
    r = build_realigner(w_in, w_out, enabled=True)
    a, b = w_out.double(), w_in.double()
    ridge = torch.linalg.solve(a.T @ a + RIDGE_LAMBDA * torch.eye(8, dtype=torch.float64), a.T @ b)
    torch.testing.assert_close(r.matrix.double(), ridge, rtol=1e-5, atol=1e-5)
    # lambda is tiny: the ridge solution is the least-squares map W_out @ M ~ W_in (pinv form)
    lstsq = torch.linalg.pinv(a) @ b
    torch.testing.assert_close(r.matrix.double(), lstsq, rtol=1e-4, atol=1e-4)
    assert r.matrix.dtype == torch.float32 and r.matrix.shape == (8, 8)


def test_target_norm_is_mean_row_norm_of_w_in():
    w_in, w_out = _weights()
    r = build_realigner(w_in, w_out, enabled=True)
    expected = torch.stack([row.norm() for row in w_in]).mean()
    torch.testing.assert_close(r.target_norm, expected)


def test_identity_when_off_but_norm_rescale_always_applied():
    w_in, w_out = _weights()
    off = build_realigner(w_in, w_out, enabled=False)
    assert torch.equal(off.matrix, torch.eye(8))
    h = torch.randn(3, 8) * 7
    e = off(h)
    torch.testing.assert_close(e, h * (off.target_norm / h.norm(dim=-1, keepdim=True)))
    torch.testing.assert_close(e.norm(dim=-1), off.target_norm.expand(3))   # not h's norm


def test_apply_maps_then_rescales_and_keeps_dtype():
    w_in, w_out = _weights()
    on = build_realigner(w_in, w_out, enabled=True)
    h = torch.randn(4, 8).to(torch.bfloat16)
    e = on(h)
    assert e.dtype == torch.bfloat16 and e.shape == h.shape
    a = h.float() @ on.matrix
    expected = (a * on.target_norm / a.norm(dim=-1, keepdim=True)).to(torch.bfloat16)
    assert torch.equal(e, expected)
    # an (almost) zero state is clamped, not divided by zero
    assert torch.isfinite(on(torch.zeros(1, 8))).all()


def test_realign_output_is_an_input_embedding_for_token_states():
    """Sanity of the direction: a state equal to W_out[v] maps close to W_in[v] (in direction)."""
    w_in, w_out = _weights(v=200, d=8)
    on = build_realigner(w_in, w_out, enabled=True)
    e = on(w_out)                                                          # [V, D]
    cos_on = torch.nn.functional.cosine_similarity(e, w_in, dim=-1).mean()
    off = build_realigner(w_in, w_out, enabled=False)
    cos_off = torch.nn.functional.cosine_similarity(off(w_out), w_in, dim=-1).mean()
    assert cos_on > cos_off


def test_engine_builds_it_once_from_the_truncated_vocab(tiny_engine, tiny_model_dir):  # noqa: F811
    r1 = tiny_engine.realigner(True)
    assert tiny_engine.realigner(True) is r1                               # cached per engine
    assert tiny_engine.realigner(False) is not r1
    raw = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    n = len(tiny_engine.tokenizer)
    assert raw.get_input_embeddings().weight.shape[0] == MODEL_VOCAB > n
    w_in = raw.get_input_embeddings().weight[:n].detach()
    w_out = raw.get_output_embeddings().weight[:n].detach()
    expected = build_realigner(w_in, w_out, enabled=True)
    torch.testing.assert_close(r1.matrix, expected.matrix)
    torch.testing.assert_close(r1.target_norm, expected.target_norm)
    # ...and truncation matters: the full 320-row matrices give another map
    full = build_realigner(raw.get_input_embeddings().weight.detach(),
                           raw.get_output_embeddings().weight.detach(), enabled=True)
    assert not torch.allclose(full.target_norm, r1.target_norm)
    # untied lm_head: realignment is far from the identity
    assert (r1.matrix - torch.eye(r1.matrix.shape[0])).abs().max() > 0.1
