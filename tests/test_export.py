"""`latentmas-ray export RUN_DIR --to DIR`: a run's samples as a Hugging Face dataset (every row
equals the store's) or as lm-evaluation-harness log_samples JSONL; bad input is one line each."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from latentmas_ray.cli import main
from latentmas_ray.report import load_run

N = 5


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A finished run of the tiny model (LatentMAS, 5 ARC-Easy samples)."""
    out = tmp_path_factory.mktemp("export") / "arc-run"
    assert main(["run", "--model_name", tiny_model_dir, "--dtype", "float32", "--device", "cpu",
                 "--task", "arc_easy", "--max_samples", str(N), "--generate_bs", "2",
                 "--latent_steps", "2", "--max_new_tokens", "8", "--temperature", "0",
                 "--output", str(out)]) == 0
    return out


def store_rows(run_dir: Path) -> list[dict]:
    return load_run(run_dir).rows          # the store's rows in sample-id order


def test_datasets_round_trip(run_dir, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    to = tmp_path / "ds"
    assert main(["export", str(run_dir), "--to", str(to)]) == 0      # datasets is the default
    assert f"exported {run_dir} as datasets to {to}" in capsys.readouterr().err
    ds = datasets.load_from_disk(str(to))
    rows = store_rows(run_dir)
    assert len(ds) == len(rows) == N
    for i, row in enumerate(rows):
        assert ds[i] == row, row["id"]       # every column, agents' traces included
    assert ds.features["agents"].feature["input_ids"].feature.dtype == "int32"
    meta = json.loads(ds.info.description)["latentmas_ray"]
    assert meta["config"] == json.loads((run_dir / "config.json").read_text())
    assert meta["summary"] == json.loads((run_dir / "summary.json").read_text())
    assert ds.info.config_name == "arc_easy" and ds.info.dataset_name == "arc-run"
    assert not list(tmp_path.glob(".ds.tmp-*"))                       # no temporary left


def test_jsonl_has_lm_eval_log_samples_fields(run_dir, tmp_path):
    to = tmp_path / "lm"
    assert main(["export", str(run_dir), "--to", str(to), "--format", "jsonl"]) == 0
    lines = (to / "samples_arc_easy.jsonl").read_text().splitlines()
    rows = store_rows(run_dir)
    assert len(lines) == len(rows) == N
    for i, (line, row) in enumerate(zip(lines, rows)):
        rec = json.loads(line)
        assert rec["doc_id"] == i and rec["doc"]["id"] == row["id"]
        assert rec["target"] == row["gold"]
        assert rec["resps"] == [[row["prediction"] or ""]]
        assert rec["filtered_resps"] == [row["extracted"] or ""]
        assert rec["metrics"] == ["exact_match"]
        assert rec["exact_match"] == (1.0 if row["correct"] else 0.0)
        assert rec["filter"] == "extract"
        assert rec["target_hash"] == hashlib.sha256(row["gold"].encode()).hexdigest()
        assert len(rec["doc_hash"]) == 64
        assert rec["latentmas_ray"]["generated_tokens"] == row["generated_tokens"]
        assert rec["latentmas_ray"]["latent_steps"] == row["latent_steps"]
    results = json.loads((to / "results.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert results["results"]["arc_easy"]["exact_match,extract"] == pytest.approx(
        summary["accuracy"])
    assert results["n-samples"]["arc_easy"] == {"original": N, "effective": N}
    assert results["latentmas_ray_summary"] == summary


def test_overwrite_replaces_a_non_empty_target(run_dir, tmp_path, capsys):
    to = tmp_path / "lm"
    to.mkdir()
    (to / "old.txt").write_text("x")
    assert main(["export", str(run_dir), "--to", str(to), "--format", "jsonl"]) == 2
    err = capsys.readouterr().err
    assert f"export target {to} exists and is not empty; pass --overwrite" in err
    assert len(err.strip().splitlines()) == 1 and (to / "old.txt").exists()
    assert main(["export", str(run_dir), "--to", str(to), "--format", "jsonl",
                 "--overwrite"]) == 0
    assert sorted(p.name for p in to.iterdir()) == ["results.json", "samples_arc_easy.jsonl"]


def test_an_empty_target_folder_is_fine(run_dir, tmp_path):
    to = tmp_path / "empty"
    to.mkdir()
    assert main(["export", str(run_dir), "--to", str(to), "--format", "jsonl"]) == 0
    assert (to / "samples_arc_easy.jsonl").is_file()


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("make,message", [
    (lambda tmp: tmp / "missing", "no such run folder"),
    (lambda tmp: tmp, "not a run folder (no config.json)"),
])
def test_not_a_run_folder(make, message, tmp_path, capsys):
    (tmp_path / "stray.txt").write_text("x")
    assert main(["export", str(make(tmp_path)), "--to", str(tmp_path / "out")]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_target_holding_the_run_is_refused_even_with_overwrite(run_dir, capsys):
    assert main(["export", str(run_dir), "--to", str(run_dir.parent), "--overwrite"]) == 2
    assert "holds the run folder" in one_error_line(capsys)
    assert (run_dir / "config.json").is_file()


def test_target_that_is_a_file(run_dir, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["export", str(run_dir), "--to", str(tmp_path / "f")]) == 2
    assert "is a file" in one_error_line(capsys)


def test_missing_datasets_names_the_extra(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "datasets", None)     # `import datasets` raises ImportError
    assert main(["export", str(run_dir), "--to", str(tmp_path / "ds")]) == 2
    err = one_error_line(capsys)
    assert "needs the datasets package: pip install latentmas-ray[datasets]" in err
    assert not (tmp_path / "ds").exists()
    # JSONL needs no extra package
    assert main(["export", str(run_dir), "--to", str(tmp_path / "lm"), "--format", "jsonl"]) == 0
