"""End to end on the real embedded model (SmolLM2-135M-Instruct) over real GSM8K rows: every
method through `latentmas-ray run`, the run folder's files, and resuming."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from latentmas_ray.cli import main

# SmolLM2 loaded (converted once per cache) and run through every method: ~90 s on 2 cores
pytestmark = pytest.mark.slow

ROLES = {"baseline": ["single"], "text_mas": ["planner", "critic", "refiner", "judger"],
         "latent_mas": ["planner", "critic", "refiner", "judger"]}


@pytest.fixture(scope="module")
def smollm2():
    from latentmas_ray.spec.models import embedded_model_dir
    return str(embedded_model_dir())


def _argv(method, data, out, n=2, bs=2):
    return ["run", "--method", method, "--task", "gsm8k", "--data", data, "--max_samples", str(n),
            "--max_new_tokens", "12", "--latent_steps", "2", "--temperature", "0",
            "--generate_bs", str(bs), "--output", str(out)]


@pytest.mark.parametrize("method", ["baseline", "text_mas", "latent_mas"])
def test_each_method_end_to_end(method, smollm2, datasets_dir, tmp_path, capsys):
    data = str(datasets_dir / "gsm8k.jsonl")
    out = tmp_path / method
    assert main(_argv(method, data, out)) == 0
    config = json.loads((out / "config.json").read_text())["run"]
    assert config["method"]["method"] == method and config["task"] == "gsm8k"
    rows = pq.read_table(out / "samples.parquet").to_pylist()
    assert [r["id"] for r in rows] == ["0", "1"]
    assert [r["gold"] for r in rows] == ["18", "3"]
    for r in rows:
        assert [a["role"] for a in r["agents"]] == ROLES[method]
        assert r["generated_tokens"] == sum(a["generated_tokens"] for a in r["agents"])
        assert r["prompt_tokens"] == sum(len(a["input_ids"]) for a in r["agents"])
        for a in r["agents"]:
            assert a["generated_tokens"] == len(a["output_ids"]) <= 12
            latent = method == "latent_mas" and a["role"] != "judger"
            assert a["latent_steps"] == (2 if latent else 0)
            assert (a["generated_tokens"] == 0) == latent
        assert r["prediction"].strip()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 2 and 0 <= summary["accuracy"] <= 1
    assert summary["mean_generated_tokens"] == sum(r["generated_tokens"] for r in rows) / 2


def test_rerun_resumes_without_recomputing(smollm2, datasets_dir, tmp_path, monkeypatch, capsys):
    import latentmas_ray.run.batch as ev

    data = str(datasets_dir / "gsm8k.jsonl")
    out = tmp_path / "run"
    assert main(_argv("latent_mas", data, out, n=2)) == 0
    first = pq.read_table(out / "samples.parquet").to_pylist()

    computed: list[str] = []
    original = ev.Evaluator.run

    def counting(self, samples, **kw):          # kw: on_rows (rows as samples finish)
        computed.extend(s.id for s in samples)
        return original(self, samples, **kw)
    monkeypatch.setattr(ev.Evaluator, "run", counting)

    assert main(_argv("latent_mas", data, out, n=2)) == 0          # nothing left to do
    assert computed == []
    assert main(_argv("latent_mas", data, out, n=3, bs=1)) == 0    # one more sample
    assert computed == ["2"]
    rows = pq.read_table(out / "samples.parquet").to_pylist()
    assert [r["id"] for r in rows] == ["0", "1", "2"]
    assert rows[:2] == first   # untouched, and written once
