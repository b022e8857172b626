"""Rows as samples finish (issue 25: a stop keeps every finished sample), without Ray: the HF
decode tells each row's end with the tokens it returns, the methods hand out a sample's K
results once its rows are done, the Evaluator and the HF replica hand out scored rows as they
finish, each exactly once, and nothing they return changes. The driver's side on Ray:
tests/test_partial_ray.py; the scheduler's: tests/test_scheduler.py."""

from __future__ import annotations

import pytest
import torch

from latentmas_ray.methods import get_method
from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
from latentmas_ray.tasks.base import Sample

QUESTIONS = ["2+3?", "What is 7 times 6?", "Pick one.\nA. x\nB. y\nC. z\nD. w",
             "Natalia sold 48 clips in April and half as many in May. How many?",
             "How many clips altogether?", "12 + 24 + 48 = ?"]
SAMPLES = [Sample(f"s{i}", "t", q, "1", "math") for i, q in enumerate(QUESTIONS)]
TIMING = {"seconds"}


def staggered_stop(outs: list[list[int]], engine) -> int:
    """A token that, made a stop token, ends these rows at the most different steps (one
    of them, when there is one, never): found in the rows' own free outputs."""
    def ends(t: int) -> set:
        return {o.index(t) if t in o else None for o in outs}
    candidates = [t for o in outs for t in o[1:6] if t not in engine.stop_token_ids]
    return max(candidates, key=lambda t: (len(ends(t)), None in ends(t)))


def sampling_generators(n: int, seed: int = 5) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


# ----- the engine ---------------------------------------------------------------------------

@pytest.mark.parametrize("b,k,temperature", [(1, 1, 0.0), (6, 1, 0.0), (3, 2, 0.9)])
def test_generate_tells_each_row_once_with_the_tokens_it_returns(tiny_engine, monkeypatch,
                                                                 b, k, temperature):
    e = tiny_engine
    prompts = [e.tokenize(e.render([{"role": "user", "content": q}])) for q in QUESTIONS[:b]]
    ids, mask = e.pad_left(prompts)
    sp = e.sampling(temperature)
    n = 24

    def run(on_finished=None):
        gens = sampling_generators(b * k) if temperature else None
        kw = {"num_return_sequences": k} if k > 1 else {}
        return e.generate(e.new_memory(b), ids, mask, n, sp, gens, **kw, on_finished=on_finished)

    monkeypatch.setattr(e, "stop_token_ids", e.stop_token_ids | {staggered_stop(run(), e)})
    calls: list[tuple[list[int], list[list[int]]]] = []
    outs = run(lambda rows, tokens: calls.append((list(rows), list(tokens))))
    assert outs == run()                                 # the callback changes nothing
    told = [r for rows, _ in calls for r in rows]
    assert sorted(told) == list(range(b * k))            # every row exactly once
    for rows, tokens in calls:
        assert [outs[r] for r in rows] == tokens         # the tokens generate returns
    if b * k > 1:
        assert len(calls) >= 2, "the rows ended at one step: the test says nothing"
        early = [r for rows, _ in calls[:-1] for r in rows]
        assert all(len(outs[r]) < n and outs[r][-1] in e.stop_token_ids for r in early)


# ----- the methods --------------------------------------------------------------------------

def free_answers(engine, method, cfg) -> list[list[int]]:
    return [r.agents[-1].output_ids for r in get_method(method)(engine, SAMPLES, cfg, run_seed=0)]


def without_timing(r) -> dict:
    d = r.to_dict()
    d.pop("seconds")
    d["agents"] = [{k: v for k, v in a.items() if k not in TIMING} for a in d["agents"]]
    return d


@pytest.mark.parametrize("method,k", [("baseline", 1), ("baseline", 2), ("text_mas", 1),
                                      ("latent_mas", 1), ("latent_mas", 2)])
def test_methods_hand_out_each_sample_once_its_k_rows_are_done(tiny_engine, monkeypatch,
                                                               method, k):
    cfg = MethodConfig(method=method, temperature=0.8 if k > 1 else 0.0, max_new_tokens=20,
                       latent_steps=2, num_return_sequences=k)
    monkeypatch.setattr(tiny_engine, "stop_token_ids", tiny_engine.stop_token_ids
                        | {staggered_stop(free_answers(tiny_engine, method, cfg), tiny_engine)})
    plain = get_method(method)(tiny_engine, SAMPLES, cfg, run_seed=0)
    heard: list[list] = []
    got = get_method(method)(tiny_engine, SAMPLES, cfg, run_seed=0, on_results=heard.append)
    assert [without_timing(r) for r in got] == [without_timing(r) for r in plain]
    assert len(heard) >= 2, "every sample ended at one step: the test says nothing"
    flat = [r for part in heard for r in part]
    assert sorted((r.id, r.sample_index) for r in flat) == \
        sorted((r.id, r.sample_index) for r in got)                     # each exactly once
    for part in heard:                                                   # whole samples, K each
        assert [(r.id, r.sample_index) for r in part] == \
            [(i, j) for i in dict.fromkeys(r.id for r in part) for j in range(k)]
        assert all(any(r is g for g in got) for r in part)              # the results returned
    # a sample's seconds: its share of the decode until it ended (the sums are the wall time)
    first = heard[0][0]
    assert 0 < first.agents[-1].seconds <= max(r.agents[-1].seconds for r in got)


# ----- the Evaluator and the replica --------------------------------------------------------

@pytest.fixture
def stop_engine(tiny_engine, monkeypatch):
    cfg = MethodConfig(method="latent_mas", temperature=0.0, max_new_tokens=20, latent_steps=2)
    monkeypatch.setattr(tiny_engine, "stop_token_ids", tiny_engine.stop_token_ids
                        | {staggered_stop(free_answers(tiny_engine, "latent_mas", cfg),
                                          tiny_engine)})
    return tiny_engine, RunConfig(task="gsm8k", method=cfg,
                                  model=ModelConfig(dtype="float32", device="cpu"))


def comparable(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in TIMING}
    out["agents"] = [{k: v for k, v in a.items() if k not in TIMING} for a in row["agents"]]
    return out


def test_evaluator_hands_out_scored_rows_as_samples_finish(stop_engine, tiny_model_dir):
    from latentmas_ray.run.batch import Evaluator

    engine, cfg = stop_engine
    ev = Evaluator(cfg, tiny_model_dir, engine=engine)
    whole = ev.run(SAMPLES)
    heard: list[list[dict]] = []
    rest = ev.run(SAMPLES, on_rows=heard.append)
    assert len(heard) >= 2
    rows = [r for part in heard for r in part] + rest
    assert sorted(r["id"] for r in rows) == [s.id for s in SAMPLES]      # each exactly once
    by_id = {r["id"]: comparable(r) for r in whole}
    assert all(comparable(r) == by_id[r["id"]] for r in rows)


def test_evaluator_of_a_method_that_cannot_tell_returns_the_batch_whole(stop_engine,
                                                                        tiny_model_dir):
    from latentmas_ray.methods import latent_mas
    from latentmas_ray.run.batch import Evaluator

    engine, cfg = stop_engine

    def whole_batches(engine, samples, method_cfg, run_seed, prompts=None):
        return latent_mas.run_batch(engine, samples, method_cfg, run_seed, prompts)

    ev = Evaluator(cfg, tiny_model_dir, engine=engine, method=whole_batches)
    heard: list = []
    assert not ev.streams
    assert sorted(r["id"] for r in ev.run(SAMPLES, on_rows=heard.append)) == \
        [s.id for s in SAMPLES] and heard == []


def test_replica_streams_rows_as_samples_finish_and_types_its_errors(stop_engine,
                                                                     tiny_model_dir,
                                                                     tmp_path, monkeypatch):
    from actors.common import typed_actor
    from actors.hf_actor import FINISHED_LOG, HFReplica
    from latentmas_ray.errors import ReplicaFault

    engine, cfg = stop_engine
    replica = typed_actor(HFReplica)(cfg, tiny_model_dir, {}, engine=engine)
    whole = {r["id"]: comparable(r) for r in replica.run(SAMPLES)}
    monkeypatch.setenv(FINISHED_LOG, str(tmp_path / "finished.log"))
    parts = list(replica.run_stream(SAMPLES))
    assert len(parts) >= 2 and all(parts)
    rows = [r for p in parts for r in p]
    assert sorted(r["id"] for r in rows) == sorted(whole)               # each exactly once
    assert all(comparable(r) == whole[r["id"]] for r in rows)
    assert replica.batches == 2
    # the audit: each sample once, in the order the stream handed them out
    audit = [ln.split() for ln in (tmp_path / "finished.log").read_text().splitlines()]
    assert [i for _, i in audit] == list(dict.fromkeys(r["id"] for r in rows))
    assert [float(t) for t, _ in audit] == sorted(float(t) for t, _ in audit)

    def broken(samples, on_rows=None):                 # the batch thread's error, typed
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    replica.evaluator.run = broken
    with pytest.raises(ReplicaFault, match="illegal memory access"):
        list(replica.run_stream(SAMPLES))


def test_streaming_methods_cross_the_actor_boundary_typed():
    """A generator method (the HF replica's) and an async one (the vLLM actor's): what they
    yield passes through, what they raise is typed like any method's."""
    import asyncio

    from actors.common import typed_actor
    from latentmas_ray.errors import ReplicaFault

    class Streams:
        def rows(self, fail: bool = False):
            yield [1]
            if fail:
                raise RuntimeError("CUDA error: device-side assert triggered")
            yield [2]

        async def arows(self, fail: bool = False):
            yield [1]
            if fail:
                raise RuntimeError("CUDA error: device-side assert triggered")
            yield [2]

    s = typed_actor(Streams)()

    async def collect(fail):
        return [x async for x in s.arows(fail)]
    assert list(s.rows()) == [[1], [2]] and asyncio.run(collect(False)) == [[1], [2]]
    with pytest.raises(ReplicaFault, match="device-side assert"):
        list(s.rows(True))
    with pytest.raises(ReplicaFault, match="device-side assert"):
        asyncio.run(collect(True))


def test_an_interrupted_run_in_process_keeps_the_samples_finished_in_its_batch(
        stop_engine, tiny_model_dir, tmp_path, monkeypatch):
    """In process too (issue 25): a Ctrl-C while a batch's slower rows still decode leaves the
    samples that finished before it on disk, each written once."""
    from rich.console import Console

    from latentmas_ray.run import in_process
    from latentmas_ray.run.batch import Evaluator
    from latentmas_ray.store.run_store import RunStore

    engine, cfg = stop_engine
    cfg.generate_bs = len(SAMPLES)
    store = RunStore(tmp_path / "run")
    store.open(cfg.to_dict())
    append = store.append

    def append_then_interrupt(rows):       # the user interrupts after the first finished rows
        append(rows)
        raise KeyboardInterrupt
    monkeypatch.setattr(store, "append", append_then_interrupt)
    monkeypatch.setattr(Evaluator, "for_config",
                        classmethod(lambda cls, c, p, pr=None: cls(c, p, pr, engine)))
    with pytest.raises(KeyboardInterrupt):
        in_process.run_in_process(cfg, store, SAMPLES, tiny_model_dir, {}, Console(quiet=True))
    kept = RunStore(tmp_path / "run").read().column("id").to_pylist()
    assert 0 < len(kept) < len(SAMPLES) and len(set(kept)) == len(kept)
