"""K completions per question (--num_return_sequences): rows, seeds, the fork, the scores.

- The estimators: pass@k against its closed form and against brute force over subsets; maj@k
  with ties and failed extractions.
- Every method returns K rows per question, sample_index 0..K-1, completion 0 equal to the
  K=1 run token for token (so K=1 is unchanged), completions differing from one another, the
  same tokens whatever the batch, and the same again on a rerun.
- LatentMAS's fork: K completions decoded from ONE latent rollout and prefill equal K
  separate decodes of that memory with the completions' own streams.
- The store: K rows per id, resume per completion, K in the run id (K=1 keeps old ids).
- Bad input: K < 1, K > 1 with temperature 0 (refused).
"""

from __future__ import annotations

import itertools
from math import comb

import pytest

from latentmas_ray.spec.config import MethodConfig, RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.run.rows import error_rows, score_rows
from latentmas_ray.methods import get_method
from latentmas_ray.store.passk import (completion_scores, ks_for, maj_at_k, majority_vote, pass_at_k)
from latentmas_ray.spec.seeding import completion_seed, sample_seed
from latentmas_ray.spec.identity import run_id
from latentmas_ray.store.run_store import RunStore, summarize
from latentmas_ray.tasks.base import Sample

SAMPLES = [
    Sample("q-short", "t", "2+3?", "5", "math"),
    Sample("q-long", "t", "Natalia sold clips to 48 of her friends in April, and then half as "
           "many in May. How many clips did she sell altogether?", "72", "math"),
    Sample("q-choice", "t", "Which one?\nA. 12\nB. 24\nC. 48\nD. 72", "D", "choice"),
]
METHODS = {
    "baseline": dict(method="baseline"),
    "text_mas": dict(method="text_mas"),
    "latent_mas": dict(method="latent_mas", latent_steps=3, latent_space_realign=True),
}


# ----- the estimators ----------------------------------------------------------------------
@pytest.mark.parametrize("n,c,k", [(n, c, k) for n in range(1, 7) for c in range(n + 1)
                                   for k in range(1, n + 1)])
def test_pass_at_k_is_the_closed_form_and_the_subset_average(n, c, k):
    closed = 1 - comb(n - c, k) / comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(closed, abs=1e-12)
    # by definition: over every k-subset of the n completions, the share with a correct one
    flags = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(flags, k))
    assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


def test_pass_at_k_edges():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 4, 1) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - comb(197, 100) / comb(200, 100))
    with pytest.raises(AssertionError):
        pass_at_k(4, 1, 5)


def _c(extracted, correct, error=None):
    return {"extracted": extracted, "correct": correct, "error": error}


def test_majority_vote_ties_and_failed_extractions():
    assert majority_vote(["7", "8", "8", "7"]) == 0          # 2-2 tie: the answer voted first
    assert majority_vote(["8", "7", "7", "8"]) == 0
    assert majority_vote([None, "", "  ", "3"]) == 3         # no answer is no vote
    assert majority_vote([None, None]) is None
    assert majority_vote(["5", " 5 ", "6"]) == 0             # surrounding blanks do not split votes


def test_maj_at_k():
    # two failed extractions never outvote one valid answer
    rows = [_c(None, False), _c(None, False), _c("72", True)]
    assert maj_at_k(rows, 3) is True
    assert maj_at_k(rows, 2) is False                        # no vote among the first 2: wrong
    # an error row casts no vote even with an extraction
    rows = [_c("1", False, error="timeout"), _c("1", False, error="timeout"), _c("72", True)]
    assert maj_at_k(rows, 3) is True
    # a tie goes to the first-voted answer, so the result does not depend on anything else
    rows = [_c("9", False), _c("72", True), _c("72", True), _c("9", False)]
    assert maj_at_k(rows, 4) is False and maj_at_k(rows, 1) is False
    rows = [_c("72", True), _c("9", False), _c("9", False), _c("72", True)]
    assert maj_at_k(rows, 4) is True
    assert ks_for(4) == [1, 2, 4] and ks_for(5) == [1, 2, 4, 5] and ks_for(1) == [1]


def test_completion_scores_summary_section():
    rows = []
    for q, flags in {"a": [1, 0, 0, 0], "b": [1, 1, 1, 1], "c": [0, 0, 0, 0]}.items():
        rows += [{"id": q, "sample_index": j, "correct": bool(f), "extracted": str(f),
                  "error": None} for j, f in enumerate(flags)]
    sc = completion_scores(rows, resamples=500)
    assert sc["completions_per_question"] == 4 and sc["questions"] == 3
    assert sc["pass_at_k"]["1"]["value"] == pytest.approx((0.25 + 1 + 0) / 3)
    assert sc["pass_at_k"]["4"]["value"] == pytest.approx(2 / 3)
    assert sc["maj_at_k"]["4"]["value"] == pytest.approx(1 / 3)     # "a": 0 wins 3-1
    lo, hi = sc["pass_at_k"]["2"]["ci95"]
    assert 0 <= lo <= sc["pass_at_k"]["2"]["value"] <= hi <= 1
    assert completion_scores([{**r, "sample_index": 0} for r in rows[:1]]) == {}
    assert completion_scores(rows, resamples=500) == sc                # seeded: reproducible


# ----- the methods -------------------------------------------------------------------------
def _cfg(name, k, temperature=0.8):
    return MethodConfig(temperature=temperature, max_new_tokens=10, num_return_sequences=k,
                        **METHODS[name])


def _tokens(results):
    return [(r.id, r.sample_index, [a.output_ids for a in r.agents]) for r in results]


@pytest.mark.parametrize("name", list(METHODS))
def test_k_rows_per_question_and_k1_unchanged(tiny_engine, name):
    run = get_method(METHODS[name]["method"])
    one = run(tiny_engine, SAMPLES, _cfg(name, 1), run_seed=7)
    four = run(tiny_engine, SAMPLES, _cfg(name, 4), run_seed=7)
    assert [(r.id, r.sample_index) for r in four] == [(s.id, j) for s in SAMPLES for j in range(4)]
    # completion 0 draws the sample's own stream: exactly the K=1 run
    assert _tokens([r for r in four if r.sample_index == 0]) == _tokens(one)
    # the K completions of a question are different draws
    for s in SAMPLES:
        outs = {str(r.agents[-1].output_ids) for r in four if r.id == s.id}
        assert len(outs) > 1, s.id
    # batch-invariant and rerun-identical
    split = run(tiny_engine, SAMPLES[:1], _cfg(name, 4), run_seed=7) + \
        run(tiny_engine, SAMPLES[1:], _cfg(name, 4), run_seed=7)
    assert _tokens(split) == _tokens(four)
    assert _tokens(run(tiny_engine, SAMPLES, _cfg(name, 4), run_seed=7)) == _tokens(four)
    # another run seed gives other completions
    assert _tokens(run(tiny_engine, SAMPLES, _cfg(name, 4), run_seed=8)) != _tokens(four)


def test_latent_fork_equals_separate_decodes_of_one_memory(tiny_engine):
    """The K rows forked from one latent rollout decode exactly what K separate decodes of
    that memory give with the completions' streams (the fork copies the memory faithfully)."""
    from latentmas_ray.methods.latent_mas import LATENT_ROLES, latent_agent_step, role_prompt_ids
    from latentmas_ray.methods.result import sampling_for
    from latentmas_ray.spec.seeding import completion_generator

    cfg = _cfg("latent_mas", 3)
    forked = get_method("latent_mas")(tiny_engine, SAMPLES, cfg, run_seed=11)
    realign = tiny_engine.realigner(cfg.latent_space_realign)
    for i, s in enumerate(SAMPLES):
        for j in range(3):
            kv = tiny_engine.new_memory(1)
            for role in LATENT_ROLES:
                latent_agent_step(tiny_engine, kv, [s], role, cfg, realign)
            ids, mask = tiny_engine.pad_left(role_prompt_ids(tiny_engine, [s], "judger", cfg))
            g = completion_generator(11, s.id, j, tiny_engine.device)
            out = tiny_engine.generate(kv, ids, mask, cfg.max_new_tokens,
                                       sampling_for(tiny_engine, cfg), [g])
            assert forked[3 * i + j].agents[-1].output_ids == out[0], (s.id, j)


def test_greedy_k1_through_generate_is_unchanged(tiny_engine):
    """num_return_sequences=1 is the plain path (greedy tokens as before)."""
    ids, mask = tiny_engine.pad_left([tiny_engine.tokenize("Hello there, how are you?")])
    sp = tiny_engine.sampling(0.0)
    a = tiny_engine.generate(tiny_engine.new_memory(1), ids, mask, 8, sp)
    b = tiny_engine.generate(tiny_engine.new_memory(1), ids, mask, 8, sp, num_return_sequences=1)
    c = tiny_engine.generate(tiny_engine.new_memory(1), ids, mask, 8, sp, num_return_sequences=3)
    assert a == b and c == a * 3     # greedy forks are K copies of the one answer


def test_completion_seeds():
    assert completion_seed(42, "x", 0) == sample_seed(42, "x")
    seeds = {completion_seed(42, "x", j) for j in range(8)} | {completion_seed(42, "y", 0)}
    assert len(seeds) == 9 and all(0 <= s < 2 ** 63 for s in seeds)


# ----- rows and store ----------------------------------------------------------------------
def test_score_rows_and_store_resume_per_completion(tiny_engine, tmp_path):
    cfg = RunConfig(method=_cfg("latent_mas", 3), output=str(tmp_path / "run"))
    results = get_method("latent_mas")(tiny_engine, SAMPLES, cfg.method, run_seed=cfg.seed)
    rows = score_rows(SAMPLES, results, "standard", "latent_mas")
    assert [(r["id"], r["sample_index"]) for r in rows] == \
        [(s.id, j) for s in SAMPLES for j in range(3)]
    store = RunStore(tmp_path / "run")
    store.open(cfg.to_dict())
    store.append(rows[:4])                 # q-short complete, q-long 1 of 3
    assert store.done_ids() == {"q-short"}
    store.append(rows[3:])                 # a completion written twice is read once
    assert store.done_ids() == {s.id for s in SAMPLES}
    table = store.consolidate(order=[s.id for s in reversed(SAMPLES)])
    assert table.num_rows == 9
    assert list(zip(table.column("id").to_pylist(), table.column("sample_index").to_pylist()))[:3] \
        == [("q-choice", 0), ("q-choice", 1), ("q-choice", 2)]
    summary = summarize(table)
    assert summary["samples"] == 9 and summary["completions_per_question"] == 3
    assert set(summary["pass_at_k"]) == {"1", "2", "3"} and set(summary["maj_at_k"]) == {"1", "2", "3"}
    errs = error_rows(SAMPLES[0], "latent_mas", "boom", 3)
    assert [r["sample_index"] for r in errs] == [0, 1, 2]


def test_k_is_part_of_the_run_id_and_k1_keeps_old_ids():
    base = RunConfig().to_dict()
    old = {**base, "method": {k: v for k, v in base["method"].items() if k != "num_return_sequences"}}
    assert run_id(base) == run_id(old)                 # a K=1 run resumes an old folder
    four = RunConfig(method=MethodConfig(num_return_sequences=4)).to_dict()
    assert run_id(four) != run_id(base)


def test_old_parts_read_as_completion_zero(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latentmas_ray.store.run_store import SCHEMA
    store = RunStore(tmp_path / "old")
    store.parts.mkdir(parents=True)
    row = {n: None for n in SCHEMA.names if n != "sample_index"}
    row.update(id="a", correct=True, agents=[], hops=[])
    fields = [f for f in SCHEMA if f.name != "sample_index"]
    pq.write_table(pa.Table.from_pylist([row], schema=pa.schema(fields)),
                   store.parts / "part-000.parquet")
    assert store.read().column("sample_index").to_pylist() == [0]
    assert store.done_ids() == {"a"}


# ----- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize("kw,message", [
    (dict(num_return_sequences=0), "--num_return_sequences must be >= 1, got 0"),
    (dict(num_return_sequences=4, temperature=0.0), "identical greedy completions"),
])
def test_bad_k_is_one_line(kw, message):
    with pytest.raises(ConfigError, match=message) as e:
        MethodConfig(**kw)
    assert "\n" not in str(e.value)


def test_bad_k_on_the_command_line(tmp_path, capsys):
    from latentmas_ray.cli import main

    for argv, message in [(["--num_return_sequences", "0"], "must be >= 1"),
                          (["--num_return_sequences", "3", "--temperature", "0"], "greedy")]:
        assert main(["run", "--output", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and err.startswith("error:") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_save_latents_needs_hf_latent_mas():
    with pytest.raises(ConfigError, match="--save_latents"):
        RunConfig.from_dict({"method": {"method": "baseline"}, "execution": {"save_latents": True}})
