"""The disaggregated method without Ray (latentmas_ray/methods/disaggregated.py; its Ray shell
and the 4-node cluster runs are tests/test_disaggregated.py).

- A chain of LatentRoles gives the colocated run's greedy tokens for every memory mode (KV
  payload), and for the embeddings payload on the tiny model (plus the judger's hidden state
  close to the KV one); each sample carries its three hops.
- The `auto` cost model.
"""

from __future__ import annotations

import pytest
import torch

from latentmas_ray.methods.disaggregated import LatentRole, choose_payload, run_chain
from latentmas_ray.methods.latent_mas import run_batch
from latentmas_ray.prompts import AGENT_ROLES as ROLES
from latentmas_ray.tasks.registry import load_task

from test_disaggregated import run_cfg


def tokens(results) -> dict[str, list[int]]:
    return {r.id: r.agents[-1].output_ids for r in results}


def workers(cfg, engine, payload="kv"):
    return {r: LatentRole(engine, cfg, r, {}, payload) for r in ROLES}


@pytest.mark.parametrize("memory", ["full", "last_agent", "latent_only"])
def test_role_chain_equals_colocated(tiny_engine, memory):
    cfg = run_cfg("tiny", memory=memory)
    samples = load_task("arc_easy", max_samples=6).samples
    want = run_batch(tiny_engine, samples, cfg.method, cfg.seed)          # one batch of 6
    ws = workers(cfg, tiny_engine)
    got = run_chain(ws, samples[:4]) + run_chain(ws, samples[4:])         # other batches
    assert tokens(got) == tokens(want)
    for r, w in zip(got, want):
        assert [a.role for a in r.agents] == list(ROLES)
        assert r.prompt_tokens == w.prompt_tokens and r.latent_steps == w.latent_steps
        assert [(h.src, h.dst, h.payload) for h in r.hops] == [
            ("planner", "critic", "kv"), ("critic", "refiner", "kv"), ("refiner", "judger", "kv")]
        assert all(h.bytes > 0 and h.ms >= 0 for h in r.hops)
    if memory == "latent_only":    # only the m = 2 latent columns move: 2 x 2*2*2*16*4 B
        assert all(h.bytes == 2 * 512 for r in got for h in r.hops)
    assert all(w.stats()["batches"] == 2 and w.stats()["busy_s"] > 0 for w in ws.values())


def test_embeds_payload_on_the_tiny_model(tiny_engine):
    cfg = run_cfg("tiny")
    samples = load_task("arc_easy", max_samples=4).samples
    want = run_batch(tiny_engine, samples, cfg.method, cfg.seed)
    ws = workers(cfg, tiny_engine, payload="embeds")
    got = run_chain(ws, samples)
    assert tokens(got) == tokens(want)           # holds on the tiny model (rounding only)
    kv_hops = run_chain(workers(cfg, tiny_engine), samples)[0].hops
    for h, k in zip(got[0].hops, kv_hops):
        assert h.payload == "embeds" and 0 < h.bytes < k.bytes   # 64 vs 2*2*2*16 values/pos

    # The judger's memory rebuilt from embeddings vs shipped as KV: its prompt's last hidden
    # state agrees to rounding.
    def judger_state(payload):
        w = workers(cfg, tiny_engine, payload)
        box = w["planner"].step(samples)
        for role in ("critic", "refiner"):
            box = w[role].step(box)
        kv, _, _ = w["judger"].rebuild(box)
        from latentmas_ray.methods.latent_mas import role_prompt_ids
        ids, mask = tiny_engine.pad_left(role_prompt_ids(tiny_engine, samples, "judger", cfg.method))
        return tiny_engine.forward(kv, mask, input_ids=ids)[:, -1]
    a, b = judger_state("kv"), judger_state("embeds")
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


def test_auto_cost_model():
    # SmolLM2-135M fp32: KV 2*30*3*64*4 = 46,080 B/position, embeddings 576*4 = 2,304 B.
    kv, emb = 46_080, 2_304
    assert choose_payload(kv, emb, prefill_ms_per_pos=0.5, bytes_per_ms=10e6 / 1e3) == "embeds"  # 10 MB/s
    assert choose_payload(kv, emb, prefill_ms_per_pos=0.5, bytes_per_ms=1e9 / 1e3) == "kv"       # 1 GB/s
    assert choose_payload(kv, emb, 0.5, 10e3, memory="latent_only") == "kv"
