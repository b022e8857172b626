"""A run end to end with K completions and --save_latents on the tiny model, then
`latentmas-ray inspect`: the nearest-token table and the drift PNG exist and are sane, and a
latent vector equal to a token's embedding finds that token first."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from latentmas_ray.cli import main
from latentmas_ray.commands.inspect import inspect_run
from latentmas_ray.report.latents import LatentLens
from latentmas_ray.store.run_store import RunStore

DATA = Path(__file__).parent / "data" / "gsm8k.jsonl"
M = 3


@pytest.fixture(scope="module")
def saved_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("k") / "run"
    argv = ["run", "--method", "latent_mas", "--task", "gsm8k", "--data", str(DATA),
            "--max_samples", "3", "--latent_steps", str(M), "--max_new_tokens", "6",
            "--temperature", "0.7", "--num_return_sequences", "2", "--save_latents",
            "--generate_bs", "2", "--torch_threads", "1",
            "--model_name", str(tiny_model_dir), "--output", str(out)]
    assert main(argv) == 0
    return out, argv


def test_run_writes_k_rows_and_latent_side_files(saved_run):
    out, argv = saved_run
    table = pq.read_table(out / "samples.parquet")
    keys = list(zip(table.column("id").to_pylist(), table.column("sample_index").to_pylist()))
    assert len(keys) == 6 and sorted({j for _, j in keys}) == [0, 1]
    assert len(list((out / "parts").glob("latents-*.pt"))) == 2          # a side file per part
    latents = RunStore(out).latents()
    assert set(latents) == {sid for sid, _ in keys}
    for saved in latents.values():
        assert list(saved) == ["planner", "critic", "refiner"]
        assert saved["critic"]["hidden"].shape == (M, 64) == saved["critic"]["fed"].shape
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"] == 6 and summary["completions_per_question"] == 2
    assert set(summary["pass_at_k"]) == {"1", "2"}
    # the rerun resumes: nothing left to do, the same rows
    assert main(argv) == 0
    assert pq.read_table(out / "samples.parquet").equals(table)


def test_inspect_table_and_png(saved_run, tiny_engine):
    out, _ = saved_run
    res = inspect_run(out, tiny_engine, top=3)
    md = (res["output"] / "inspect.md").read_text()
    png = res["output"] / "latent_drift.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    from matplotlib.image import imread
    img = imread(png)
    assert img.shape[0] > 200 and img.shape[1] > 600 and img.std() > 0      # not blank
    for sid, steps in res["steps"].items():
        assert f"### Sample {sid}" in md
        assert [(s.role, s.step) for s in steps] == \
            [(r, t) for r in ("planner", "critic", "refiner") for t in range(M)]
        for s in steps:
            assert len(s.lens) == 3 and len(s.nearest) == 3
            assert all(0 <= p <= 1 for _, p in s.lens) and all(-1 <= c <= 1 + 1e-6 for _, c in s.nearest)
            assert s.hidden_norm > 0 and s.fed_norm > 0
            assert (s.drift_cos is None) == (s.step == 0)
    assert "Mean over 3 samples" in md


def test_a_token_embedding_finds_its_token_first(tiny_engine):
    lens = LatentLens(tiny_engine)
    emb = tiny_engine.model.get_input_embeddings().weight.detach().float()
    head = tiny_engine.lm_head.weight.detach().float()
    toks = [5, 77, 150]
    h = torch.randn(len(toks), emb.shape[1], generator=torch.Generator().manual_seed(0))
    steps = lens.view("planner", {"hidden": h, "fed": emb[toks].clone()}, top=4)
    for s, tok in zip(steps, toks):
        assert s.nearest_ids[0] == tok and s.manifold_cos == pytest.approx(1.0, abs=1e-5)
        assert s.fed_norm == pytest.approx(float(emb[tok].norm()), rel=1e-5)
    # the logit lens is lm_head of h: its first token is the argmax of the logits
    for s, row in zip(steps, h):
        assert s.lens[0][0] == tiny_engine.tokenizer.decode([int((head @ row).argmax())])


def test_inspect_without_latents_is_one_line(tmp_path, capsys, tiny_model_dir):
    out = tmp_path / "plain"
    assert main(["run", "--method", "latent_mas", "--task", "gsm8k", "--data", str(DATA),
                 "--max_samples", "1", "--latent_steps", "1", "--max_new_tokens", "2",
                 "--temperature", "0", "--model_name", str(tiny_model_dir),
                 "--output", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--save_latents" in err and len(err.splitlines()) == 1
