"""Defaults that do what their names say: `latentmas-ray run` with no method flags runs
LatentMAS with latent thinking; the reference's --latent_steps 0 is named for what it is."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from latentmas_ray.cli import main
from latentmas_ray.spec.config import MethodConfig


def _run(tiny_model_dir, out, *extra) -> list[str]:
    return ["run", "--model_name", tiny_model_dir, "--dtype", "float32", "--device", "cpu",
            "--task", "arc_easy", "--max_samples", "1", "--max_new_tokens", "2",
            "--temperature", "0", "--output", str(out), *extra]


def test_the_default_latent_mas_run_does_latent_steps(tiny_model_dir, tmp_path, capsys):
    assert MethodConfig().method == "latent_mas"
    out = tmp_path / "default"
    assert main(_run(tiny_model_dir, out)) == 0          # no --method, no --latent_steps
    m = MethodConfig().latent_steps
    assert m > 0
    row = pq.read_table(out / "samples.parquet").to_pylist()[0]
    assert row["method"] == "latent_mas"
    assert row["latent_steps"] == 3 * m                  # planner, critic, refiner: m each
    assert json.loads((out / "summary.json").read_text())["mean_latent_steps"] == 3 * m
    assert "equals the baseline" not in capsys.readouterr().err


def test_zero_latent_steps_says_it_is_the_baseline_with_a_longer_prompt(tiny_model_dir, tmp_path,
                                                                         capsys):
    assert main(_run(tiny_model_dir, tmp_path / "zero", "--latent_steps", "0")) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "equals the baseline with a longer prompt" in line]
    assert len(notes) == 1, err
    # the judger keeps the cache: no longer the baseline, no note
    assert main(_run(tiny_model_dir, tmp_path / "keep", "--latent_steps", "0",
                     "--keep_cache_at_zero_steps")) == 0
    assert "equals the baseline" not in capsys.readouterr().err
