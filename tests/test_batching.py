"""A sample's result never depends on its batch: batched == batch-size-1, token for token.

Greedy: for generate_bs in {1, 3, 4} over samples of very different prompt lengths (so the
left padding, the pads between agents in the shared memory and the per-row positions all
matter), every agent's tokens equal the sample's batch-size-1 tokens, for all methods.
Sampling: each sample draws from its own generator (seeded by run seed + sample id), so its
tokens are the same alone or in a batch.
"""

from __future__ import annotations

import pytest

from latentmas_ray.spec.config import MethodConfig
from latentmas_ray.methods import get_method
from latentmas_ray.tasks.base import Sample


LONG = ("Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
        "in May. How many clips did Natalia sell altogether in April and May? ") * 4
SAMPLES = [
    Sample("s-short", "t", "2+3?", "5", "math"),
    Sample("s-long", "t", LONG, "72", "math"),
    Sample("s-choice", "t", "Which one?\nA. 12\nB. 24\nC. 48\nD. 72", "D", "choice"),
    Sample("s-code", "t", "Write add(a, b).", "assert add(1, 2) == 3", "code", entry_point="add"),
    Sample("s-mid", "t", "Natalia sold 48 clips in April and half as many in May. Total?", "72", "math"),
]

CONFIGS = {
    "baseline": dict(method="baseline"),
    "text_mas": dict(method="text_mas"),
    "text_mas_hier": dict(method="text_mas", prompt="hierarchical"),
    "latent_m4_realign": dict(method="latent_mas", latent_steps=4, latent_space_realign=True),
    "latent_m0_default": dict(method="latent_mas", latent_steps=0),
    "latent_m0_keep": dict(method="latent_mas", latent_steps=0, judger_drops_cache_at_zero_steps=False),
    "latent_hier_think": dict(method="latent_mas", prompt="hierarchical", latent_steps=2, think=True),
    "latent_last_agent": dict(method="latent_mas", latent_steps=3, memory="last_agent"),
    "latent_latent_only": dict(method="latent_mas", latent_steps=3, memory="latent_only"),
}


def _run(engine, cfg, bs, seed=7):
    out = {}
    for i in range(0, len(SAMPLES), bs):
        batch = SAMPLES[i:i + bs]
        for r in get_method(cfg.method)(engine, batch, cfg, run_seed=seed):
            out[r.id] = r
    assert list(out) == [s.id for s in SAMPLES]
    return out


def _tokens(results):
    return {k: [(a.role, a.input_ids, a.output_ids) for a in r.agents] for k, r in results.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_batched_equals_unbatched(tiny_engine, name):  # noqa: F811
    cfg = MethodConfig(temperature=0.0, max_new_tokens=12, **CONFIGS[name])
    alone = _tokens(_run(tiny_engine, cfg, bs=1))
    for bs in (3, 4):
        assert _tokens(_run(tiny_engine, cfg, bs=bs)) == alone, f"generate_bs={bs}"
    # the predictions (texts) follow
    assert all(len(v[-1][2]) > 0 for v in alone.values())


@pytest.mark.parametrize("name", ["baseline", "text_mas", "latent_m4_realign"])
def test_sampling_is_per_sample(tiny_engine, name):  # noqa: F811
    cfg = MethodConfig(temperature=0.8, top_p=0.9, top_k=40, max_new_tokens=12, **CONFIGS[name])
    alone = _tokens(_run(tiny_engine, cfg, bs=1))
    assert _tokens(_run(tiny_engine, cfg, bs=4)) == alone
    assert _tokens(_run(tiny_engine, cfg, bs=5)) == alone
    # and the seed matters: another run seed gives other tokens
    other = _tokens(_run(tiny_engine, cfg, bs=5, seed=8))
    assert other != alone
    # sampling actually differs from greedy
    greedy = _tokens(_run(tiny_engine, MethodConfig(temperature=0.0, max_new_tokens=12, **CONFIGS[name]), bs=5))
    assert greedy != alone
