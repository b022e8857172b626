"""The run store: atomic parts, resume without duplicates, config mismatch detection."""

from __future__ import annotations

import json

import pytest

from latentmas_ray.spec.config import RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.store.run_store import RunStore, summarize


def _row(i, correct=True, tokens=10):
    return {"id": str(i), "task": "gsm8k", "method": "baseline", "prediction": f"p{i}",
            "gold": "1", "correct": correct, "extracted": "1", "error": None,
            "prompt_tokens": 5, "generated_tokens": tokens, "latent_steps": 0, "seconds": 0.5,
            "agents": [{"role": "single", "name": "Assistant", "input_ids": [1, 2],
                        "output_ids": [3] * tokens, "prompt_tokens": 2,
                        "generated_tokens": tokens, "latent_steps": 0, "seconds": 0.5}]}


def test_append_read_consolidate(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="gsm8k").to_dict())
    store.append([_row(2), _row(0, correct=False)])
    store.append([_row(1, tokens=0)])
    assert store.done_ids() == {"0", "1", "2"}
    table = store.consolidate(order=["0", "1", "2"])
    assert table.column("id").to_pylist() == ["0", "1", "2"]
    assert (tmp_path / "run" / "samples.parquet").exists()
    summary = summarize(table)
    assert summary["samples"] == 3 and summary["correct"] == 2
    assert summary["mean_generated_tokens"] == pytest.approx(20 / 3)
    assert summary["mean_generated_tokens_by_agent"] == {"single": pytest.approx(20 / 3)}
    assert not list((tmp_path / "run" / "parts").glob(".*tmp"))


def test_resume_same_config_and_reject_a_different_one(tmp_path):
    cfg = RunConfig(task="gsm8k")
    RunStore(tmp_path / "r").open(cfg.to_dict())
    resumed = RunConfig(task="gsm8k", generate_bs=3, max_samples=5)   # batch-invariant fields
    RunStore(tmp_path / "r").open(resumed.to_dict())
    saved = json.loads((tmp_path / "r" / "config.json").read_text())["run"]
    assert saved["generate_bs"] == 3
    other = RunConfig(task="gsm8k")
    other.method.latent_steps = 3
    with pytest.raises(ConfigError, match="holds a different run.*latent_steps"):
        RunStore(tmp_path / "r").open(other.to_dict())


def test_non_run_folder_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty and holds no run"):
        RunStore(tmp_path / "x").open(RunConfig().to_dict())


def test_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os
    from latentmas_ray.store.atomic import atomic_write_text
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644


def test_hops_are_stored_and_summarised(tmp_path):
    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="gsm8k").to_dict())
    hop = lambda b, ms: {"src": "refiner", "dst": "judger", "payload": "kv", "bytes": b, "ms": ms}  # noqa: E731
    store.append([{**_row(0), "hops": [hop(1000, 2.0)]}, {**_row(1), "hops": [hop(3000, 4.0)]}])
    table = store.consolidate()
    assert table.column("hops").to_pylist()[1] == [hop(3000, 4.0)]
    assert summarize(table)["hops"] == {"refiner->judger (kv)": {
        "mean_bytes": 2000.0, "mean_ms": 3.0, "samples": 2}}


def test_parts_written_before_a_column_existed_still_read(tmp_path):
    """A run stored before `hops` existed resumes: its parts read with the column empty, and
    its config (no use_vllm field) matches today's default config."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latentmas_ray.store.run_store import SCHEMA

    old_cfg = RunConfig(task="gsm8k").to_dict()
    del old_cfg["use_vllm"]
    store = RunStore(tmp_path / "run")
    store.open(old_cfg)
    old_schema = pa.schema([f for f in SCHEMA if f.name != "hops"])
    pq.write_table(pa.Table.from_pylist([_row(0)], schema=old_schema),
                   store.parts / "part-00000000000000000001-old.parquet")
    store.append([_row(1)])
    RunStore(tmp_path / "run").open(RunConfig(task="gsm8k").to_dict())     # resumes
    table = store.consolidate(order=["0", "1"])
    assert table.schema == SCHEMA and table.column("hops").to_pylist() == [None, None]
    assert "hops" not in summarize(table)
    with pytest.raises(ConfigError, match="use_vllm"):
        RunStore(tmp_path / "run").open(RunConfig(task="gsm8k", use_vllm=True).to_dict())


def test_k_completions_consolidate_by_streaming(tmp_path, monkeypatch):
    """K = 4 rows per sample, parts written out of order and rows shuffled inside them: the
    streaming path writes the task's order (samples, then sample_index), and neither the
    in-memory consolidation nor a whole-table read runs (issue 24)."""
    import pyarrow.parquet as pq

    from bench.stand_in import row
    from latentmas_ray.spec.config import MethodConfig, RunConfig
    from latentmas_ray.tasks.registry import load_task

    cfg = RunConfig(task="arc_easy", method=MethodConfig(method="baseline", temperature=0.7,
                                                         num_return_sequences=4))
    store = RunStore(tmp_path / "run")
    store.open(cfg.to_dict())
    samples = load_task("arc_easy", max_samples=9).samples

    def rows(part):
        return [{**row(s), "sample_index": j, "correct": (j + i) % 3 == 0}
                for i, s in enumerate(part) for j in (3, 1, 0, 2)]
    for part in (samples[6:], samples[:3], samples[3:6]):
        store.append(rows(part))

    def in_memory(*a, **k):
        raise AssertionError("the in-memory path ran")
    monkeypatch.setattr(RunStore, "_consolidate_in_memory", in_memory)
    monkeypatch.setattr(RunStore, "read", in_memory)
    assert store.counts()[0] == 36 and store.done_ids() == {s.id for s in samples}
    store.consolidate(order=[s.id for s in samples], read_back=False)
    merged = pq.read_table(tmp_path / "run" / "samples.parquet")
    assert list(zip(merged.column("id").to_pylist(), merged.column("sample_index").to_pylist())) \
        == [(s.id, j) for s in samples for j in range(4)]
    summary = store.summary()
    assert summary["samples"] == 36 and summary["completions_per_question"] == 4
    monkeypatch.undo()
    from latentmas_ray.store.run_store import summarize
    assert summary == summarize(RunStore(tmp_path / "run").read())   # the same as in memory


def test_parts_are_ordered_by_position_without_reading_ids(tmp_path, monkeypatch):
    """Rows carry their sample's place in the task: parts written out of order (rows shuffled
    inside) are sorted by that integer, with no id lookup and no in-memory path; the count
    of complete samples streams the result (issue 24: a 1M-sample run's end)."""
    import pyarrow.parquet as pq

    from bench.stand_in import row
    from latentmas_ray.tasks.registry import load_task

    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="arc_easy").to_dict())
    samples = load_task("arc_easy", max_samples=9).samples
    for part in (samples[6:], samples[:3], samples[3:6]):
        store.append([row(s) for s in reversed(part)])

    def refused(*a, **k):
        raise AssertionError("ids were read to order the parts")
    monkeypatch.setattr(RunStore, "_plan", refused)
    monkeypatch.setattr(RunStore, "_consolidate_in_memory", refused)
    store.consolidate(order=None, read_back=False)
    merged = pq.read_table(tmp_path / "run" / "samples.parquet")
    assert merged.column("id").to_pylist() == [s.id for s in samples]
    assert merged.column("position").to_pylist() == list(range(9))
    assert store.complete_samples() == 9


def test_parts_without_positions_are_ordered_by_id(tmp_path, monkeypatch):
    """Parts written before rows carried a position (round 2) still consolidate by streaming,
    placed by their ids in the task's order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latentmas_ray.store.run_store import SCHEMA

    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="gsm8k").to_dict())
    old_schema = pa.schema([f for f in SCHEMA if f.name != "position"])
    for n, ids in enumerate(([4, 5], [0, 1], [2, 3])):
        pq.write_table(pa.Table.from_pylist([_row(i) for i in reversed(ids)], schema=old_schema),
                       store.parts / f"part-0000000000000000000{n}-old.parquet")
    monkeypatch.setattr(RunStore, "_consolidate_in_memory",
                        lambda *a, **k: pytest.fail("the in-memory path ran"))
    store.consolidate(order=(str(i) for i in range(6)), read_back=False)
    merged = pq.read_table(tmp_path / "run" / "samples.parquet")
    assert merged.column("id").to_pylist() == [str(i) for i in range(6)]
    assert merged.column("position").to_pylist() == [None] * 6


def test_complete_samples_counts_samples_with_all_k_rows(tmp_path):
    """summary.json's status: a sample is complete when its K completions are stored."""
    from latentmas_ray.spec.config import MethodConfig

    cfg = RunConfig(task="gsm8k", method=MethodConfig(method="baseline", temperature=0.7,
                                                      num_return_sequences=3))
    store = RunStore(tmp_path / "run")
    store.open(cfg.to_dict())
    store.append([{**_row(i), "sample_index": j, "position": i}
                  for i in range(4) for j in range(3 if i != 2 else 2)])
    assert store.complete_samples() == 3              # before consolidation: from the parts
    store.consolidate(order=None, read_back=False)
    assert store.complete_samples() == 3              # after: streamed from samples.parquet


def test_done_mask_by_position_agrees_with_done_ids(tmp_path):
    """A resume finds what is left from two integer columns (no set of the run's ids): the
    same samples as by id, a sample missing one of its K completions not done, rows of
    samples past a shorter task ignored; older rows without positions: None (ask by id)."""
    import numpy as np

    from latentmas_ray.run.pending import pending_samples
    from latentmas_ray.spec.config import MethodConfig
    from latentmas_ray.tasks.registry import load_task

    cfg = RunConfig(task="arc_easy", method=MethodConfig(method="baseline", temperature=0.7,
                                                         num_return_sequences=2))
    store = RunStore(tmp_path / "run")
    store.open(cfg.to_dict())
    samples = load_task("arc_easy", max_samples=8).samples
    rows = [{**_row(0), "id": s.id, "position": s.position, "sample_index": j}
            for s in samples for j in range(2) if (s.position, j) not in ((2, 1), (4, 0), (4, 1))]
    store.append(rows)
    mask = store.done_mask(8)
    assert mask.tolist() == [i not in (2, 4) for i in range(8)]
    assert {s.id for s in samples if mask[s.position]} == store.done_ids()
    assert [s.position for s in pending_samples(samples, store)] == [2, 4]
    assert store.done_mask(3).tolist() == [True, True, False]
    store.append([{**_row(99), "sample_index": 0}])            # a row without a position
    assert store.done_mask(8) is None
    assert [s.position for s in pending_samples(samples, store)] == [2, 4]
    assert isinstance(mask, np.ndarray)
