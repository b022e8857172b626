"""The prepared GPU check cannot rot: `bash bench/gpu_check.sh --cpu-smoke` runs the same code
at tiny shapes on the CPU and writes its table; the `cuda`-marked tests run the check's
faithfulness part where CUDA is (deselected elsewhere, with a closing line; the GPU check runs
them). Also: the version floor the engines check before loading."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.versions import check_versions, version_problem

REPO = Path(__file__).resolve().parents[1]
SMOKE_BUDGET_S = 60          # the bound on this machine class (2 shared cores)


def test_gpu_check_cpu_smoke_writes_its_table(tmp_path):
    out = tmp_path / "gpu_check.md"
    env = dict(os.environ, PYTHON=sys.executable)
    t0 = time.perf_counter()
    p = subprocess.run(["bash", "bench/gpu_check.sh", "--cpu-smoke", "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    wall = time.perf_counter() - t0
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = [ln.split(" | ") for ln in out.read_text().splitlines()[2:]]
    sections = {r[0].strip("| ") for r in rows}
    assert {"setup", "faithfulness", "engine", "methods", "vllm"} <= sections
    faith = [r for r in rows if r[0].strip("| ") == "faithfulness"]
    assert len(faith) == 3 and all(r[2].split("/")[0] == r[2].split("/")[1].split()[0]
                                   for r in faith[:2]), faith
    methods = {r[1].split()[1]: r[2] for r in rows if r[0].strip("| ") == "methods"
               and "s/sample" in r[2]}
    assert set(methods) == {"baseline", "text_mas", "latent_mas"}
    print(f"gpu_check --cpu-smoke: {wall:.0f} s (budget {SMOKE_BUDGET_S} s on an idle machine)")


def test_gpu_check_refuses_to_run_its_gpu_mode_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    p = subprocess.run(["bash", "bench/gpu_check.sh"], cwd=REPO, capture_output=True, text=True,
                       timeout=120, env=dict(os.environ, PYTHON=sys.executable))
    assert p.returncode != 0 and "needs a CUDA device" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.cuda
def test_latent_mas_on_cuda_equals_cpu_and_batched_equals_unbatched():
    sys.path.insert(0, str(REPO / "bench"))
    from gpu_check import SIZES, faithfulness

    got = faithfulness(torch.device("cuda"), SIZES["gpu"])
    for check in ("latent_mas fp32: device vs CPU", "latent_mas fp32: batched vs unbatched"):
        same, n, _ = got[check]
        assert same == n, (check, got[check])
    same, n, frac = got["latent_mas bf16: matmul vs sdpa attention"]
    assert frac >= 0.5, got          # not bit-identical by design; mostly the same tokens


def test_version_floor_names_the_version_needed():
    assert version_problem("2.13.0+cpu", "5.19.0") is None
    assert version_problem("2.11.0+cu128", "5.17.0") is None
    assert "needs torch >= 2.11" in version_problem("2.10.1", "5.19.0")
    assert "needs transformers >= 5.16.1, < 5.20" in version_problem("2.13.0", "5.20.0")
    assert "transformers 5.15.0 is not supported" in version_problem("2.13.0", "5.15.0")
    assert check_versions().startswith(f"torch {torch.__version__}, transformers ")


def test_engine_load_stops_on_an_old_torch(monkeypatch, tiny_model_dir):
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.spec.config import ModelConfig

    monkeypatch.setattr(torch, "__version__", "2.10.0")
    with pytest.raises(ConfigError, match=r"^torch 2.10.0 is too old: latentmas-ray needs torch >= 2.11"):
        HFEngine.load(ModelConfig(dtype="float32", device="cpu"), tiny_model_dir)
