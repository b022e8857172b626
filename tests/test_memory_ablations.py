"""Memory ablations (issue 17; latent/memory.py): each keeps what it says, keeping everything
equals the full memory token for token, a batch equals its samples alone, bytes are reported."""

from __future__ import annotations

import pytest
import torch

from latentmas_ray.spec.config import MethodConfig
from latentmas_ray.latent.cache import BatchKV
from latentmas_ray.latent.memory import AttentionMass, key_norm_scores
from latentmas_ray.latent.rollout import run_latent_agent
from latentmas_ray.methods import get_method
from latentmas_ray.tasks.base import Sample

SAMPLES = [
    Sample("m-short", "t", "2+3?", "5", "math"),
    Sample("m-long", "t", "Natalia sold 48 clips in April and half as many in May. "
           "How many clips did she sell altogether in April and May?", "72", "math"),
    Sample("m-choice", "t", "Which one?\nA. 12\nB. 24\nC. 48\nD. 72", "D", "choice"),
]
ABLATIONS = {
    "layers": dict(memory="layers", memory_layers="1"),
    "top_attention": dict(memory="top_attention", memory_top_k=12),
    "top_key_norm": dict(memory="top_key_norm", memory_top_k=12),
}
KEEP_ALL = {
    "layers": dict(memory="layers", memory_layers="0,1"),
    "top_attention": dict(memory="top_attention", memory_top_k=100000),
    "top_key_norm": dict(memory="top_key_norm", memory_top_k=100000),
}


def _cfg(**kw) -> MethodConfig:
    return MethodConfig(method="latent_mas", latent_steps=3, temperature=0.0, max_new_tokens=10, **kw)


def _tokens(results):
    return [[(a.role, a.input_ids, a.output_ids) for a in r.agents] for r in results]


def _prompt(engine, texts):
    ids = [engine.tokenize(engine.render([{"role": "user", "content": t}])) for t in texts]
    return engine.pad_left(ids)                                                # [B, L] x2


@pytest.mark.parametrize("name", list(KEEP_ALL))
def test_keeping_everything_equals_the_full_memory(tiny_engine, name):
    run = get_method("latent_mas")
    full = run(tiny_engine, SAMPLES, _cfg(), run_seed=0)
    kept = run(tiny_engine, SAMPLES, _cfg(**KEEP_ALL[name]), run_seed=0)
    assert _tokens(kept) == _tokens(full)


@pytest.mark.parametrize("name", list(ABLATIONS))
def test_a_batch_equals_its_samples_alone_and_bytes_shrink(tiny_engine, name):
    run = get_method("latent_mas")
    cfg = _cfg(**ABLATIONS[name])
    batched = run(tiny_engine, SAMPLES, cfg, run_seed=0)
    alone = [r for s in SAMPLES for r in run(tiny_engine, [s], cfg, run_seed=0)]
    assert _tokens(batched) == _tokens(alone)
    assert [[a.memory_bytes for a in r.agents] for r in batched] == \
        [[a.memory_bytes for a in r.agents] for r in alone]       # pads are never counted
    full = run(tiny_engine, SAMPLES, _cfg(), run_seed=0)
    assert _tokens(batched) != _tokens(full)           # the ablation changes what is read
    for r, f in zip(alone, full):
        for a, b in zip(r.agents[:-1], f.agents[:-1]):
            assert 0 < a.memory_bytes < b.memory_bytes, (a.role, a.memory_bytes, b.memory_bytes)


def test_layers_keeps_only_the_selected_layers(tiny_engine):
    """After an agent under --memory layers 1, the next forward reads its entries in layer 1
    and never in layer 0: noise written there changes nothing, noise in layer 1 does."""
    e = tiny_engine
    ids, mask = _prompt(e, ["Plan the sum of 2 and 3.", "Think."])

    def after(noise_layer):
        kv = e.new_memory(2)
        run_latent_agent(e, kv, ids, mask, 2, e.realigner(False))
        kv.hide_in_other_layers(frozenset({1}), kv.length)
        cut = kv.length
        if noise_layer is not None:
            layer = kv.cache.layers[noise_layer]
            layer.keys[:, :, :cut].normal_(generator=torch.Generator().manual_seed(0))
            layer.values[:, :, :cut].normal_(generator=torch.Generator().manual_seed(1))
        q_ids, q_mask = _prompt(e, ["Answer now.", "Go."])
        return e.forward(kv, q_mask, input_ids=q_ids)[:, -1], kv

    clean, kv = after(None)
    assert torch.equal(after(0)[0], clean)
    assert not torch.allclose(after(1)[0], clean)
    # what is passed on (bytes, and what a hop ships) holds layer 0's new columns only
    per_layer_col = 2 * 2 * 16 * 4 * 2                 # B * H_kv * Dh * fp32 * (K and V)
    assert kv.nbytes() == per_layer_col * (kv.length + (kv.length - kv.cut))
    state = kv.to_state("cpu")
    assert state["layers"][0][0].shape[2] == kv.length - kv.cut
    assert state["layers"][1][0].shape[2] == kv.length
    back = BatchKV.from_state(state)
    q_ids, q_mask = _prompt(e, ["More.", "Again."])
    assert torch.equal(e.forward(back, q_mask, input_ids=q_ids), e.forward(kv, q_mask, input_ids=q_ids))


@pytest.mark.parametrize("mode", ["top_key_norm", "top_attention"])
def test_top_k_keeps_the_highest_scoring_positions(tiny_engine, mode):
    e, k = tiny_engine, 7
    ids, mask = _prompt(e, ["Plan the sum of 2 and 3, step by step please.", "Think."])
    kv = e.new_memory(2)
    mass = AttentionMass()
    run_latent_agent(e, kv, ids, mask, 2, e.realigner(False), mass)
    scores = (mass.mass if mode == "top_attention" else key_norm_scores(kv)).clone()   # [B, T]
    before = [layer.keys.clone() for layer in kv.cache.layers]                        # [B, H, T, Dh]
    real = kv.mask.clone()
    kv.keep_top(scores, k)
    assert kv.length == k
    for row in range(2):
        cols = [c for c in range(real.shape[1]) if real[row, c]]
        want = sorted(sorted(cols, key=lambda c: -float(scores[row, c]))[:k])
        if len(cols) < k:                      # a short row keeps all of its entries
            assert int(kv.mask[row].sum()) == len(cols)
            continue
        assert int(kv.mask[row].sum()) == k
        for layer, old in zip(kv.cache.layers, before):
            assert torch.equal(layer.keys[row], old[row][:, want]), row


def test_attention_mass_is_the_last_querys_attention(tiny_engine, tiny_model_dir):
    """At m = 0 the mass is the prompt's last token's attention, summed over layers and heads;
    checked against transformers' eager attention weights."""
    from transformers import AutoModelForCausalLM

    e = tiny_engine
    ids, mask = _prompt(e, ["Plan the sum of 2 and 3."])
    kv = e.new_memory(1)
    mass = AttentionMass()
    run_latent_agent(e, kv, ids, mask, 0, e.realigner(False), mass)
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager",
                                                 dtype=torch.float32)
    eager.resize_token_embeddings(len(e.tokenizer))
    with torch.no_grad():
        att = eager(input_ids=ids, output_attentions=True).attentions       # [1, H, L, L] each
    want = sum(a[:, :, -1, :].sum(dim=1) for a in att)                      # [1, L]
    assert torch.allclose(mass.mass, want, atol=1e-5)
