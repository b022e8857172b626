"""The run store: atomic parts, resume without duplicates, config mismatch detection."""

from __future__ import annotations

import json

import pytest

from latentmas_ray.config import RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.store import RunStore, summarize


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
    from latentmas_ray.atomic import atomic_write_text
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
