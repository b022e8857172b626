"""The checked-in cluster configs: they parse, carry the fields their tools need, and the
command they run names a module that exists and flags that its parser accepts."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster" / "cluster.yaml"
RAYJOB_YAML = REPO / "cluster" / "rayjob.yaml"


def entrypoint_args(command: str) -> tuple[str, list[str]]:
    """`... python -m MODULE ARGS` -> (MODULE, ARGS)."""
    words = shlex.split(command)
    i = words.index("-m")
    assert words[i - 1].startswith("python"), command
    return words[i + 1], words[i + 2:]


def check_driver_command(module: str, args: list[str]):
    """The module exists and its parser takes the flags; returns (args, RunConfig)."""
    assert importlib.util.find_spec(module) is not None, f"no module {module}"
    from jobs.evaluate import build_parser
    from latentmas_ray.spec.flags import build_run_config

    assert module == "jobs.evaluate"
    ns = build_parser().parse_args(args)
    cfg = build_run_config(ns, ray=True)
    assert cfg.output and PurePosixPath(cfg.output).is_absolute(), \
        "a job's --output must be absolute (a relative one lands in the job's temporary dir)"
    return ns, cfg


def commented_commands(path: Path) -> list[str]:
    """Shell commands in the file's leading comment block (backslash continuations joined)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    text = "\n".join(lines).replace("\\\n", " ")
    return [ln for ln in text.splitlines() if ln]


# ----- Ray cluster launcher ------------------------------------------------------------------

@pytest.fixture(scope="module")
def launcher() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def test_cluster_yaml_passes_rays_own_schema(launcher):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(launcher, schema)
    full = prepare_config(copy.deepcopy(launcher))     # what `ray up` does before launching
    validate_config(full)


def test_cluster_yaml_has_a_cpu_head_and_gpu_workers(launcher):
    import ray

    types = launcher["available_node_types"]
    assert launcher["head_node_type"] in types
    gpu_types = [n for n in types if n != launcher["head_node_type"]]
    assert gpu_types and all(types[n]["max_workers"] >= 1 for n in gpu_types)
    assert launcher["max_workers"] >= max(types[n]["max_workers"] for n in gpu_types)
    assert any(types[n]["node_config"]["InstanceType"].startswith(("g", "p")) for n in gpu_types)
    head_start = " ".join(launcher["head_start_ray_commands"])
    assert "ray start --head" in head_start and "--num-gpus=0" in head_start
    assert "--dashboard-host=0.0.0.0" in head_start                  # the job server
    worker_start = " ".join(launcher["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in worker_start
    # Ray 2.60 token auth: the same mode everywhere, one shared token.
    assert "RAY_AUTH_MODE=token" in head_start and "RAY_AUTH_MODE=token" in worker_start
    assert "~/.ray/auth_token" in launcher["file_mounts"]
    # The image's Ray is the one the project pins.
    assert f"rayproject/ray:{ray.__version__}-" in launcher["docker"]["image"]


def test_cluster_yaml_installs_this_project(launcher):
    mounts = launcher["file_mounts"]
    remote = next(r for r, local in mounts.items() if local == ".")
    setup = " ".join(launcher["setup_commands"])
    assert f"pip install -q -e {remote}" in setup and "torch==2.13.0" in setup
    assert ".venv" in launcher["rsync_exclude"]


def test_cluster_yaml_submit_command_runs_the_driver(launcher):
    cmds = [c for c in commented_commands(CLUSTER_YAML) if "ray job submit" in c]
    assert cmds, "the header shows how to submit a run"
    module, args = entrypoint_args(cmds[0])
    ns, cfg = check_driver_command(module, args)
    assert cfg.execution.replicas <= launcher["max_workers"]
    fetch = [c.split() for c in commented_commands(CLUSTER_YAML) if "rsync-down" in c]
    assert fetch and cfg.output.startswith(fetch[0][3]), "the header shows how to fetch results"


# ----- KubeRay RayJob ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB_YAML.read_text())


def test_rayjob_has_the_required_fields(rayjob):
    import ray

    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert rayjob["metadata"]["name"]
    spec = rayjob["spec"]
    assert spec["entrypoint"] and spec["shutdownAfterJobFinishes"] is True
    rc = spec["rayClusterSpec"]
    assert rc["rayVersion"] == ray.__version__
    assert rc["authOptions"]["mode"] == "token"
    head = rc["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    assert head["template"]["spec"]["containers"][0]["image"]
    for group in rc["workerGroupSpecs"]:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        c = group["template"]["spec"]["containers"][0]
        assert c["image"] and int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_rayjob_entrypoint_runs_the_driver_with_what_the_cluster_has(rayjob):
    spec = rayjob["spec"]
    module, args = entrypoint_args(spec["entrypoint"])
    ns, cfg = check_driver_command(module, args)
    rc = spec["rayClusterSpec"]
    gpus = sum(int(g["replicas"]) * int(g["template"]["spec"]["containers"][0]["resources"]
                                        ["limits"]["nvidia.com/gpu"]) for g in rc["workerGroupSpecs"])
    assert cfg.execution.replicas * cfg.execution.num_gpus_per_replica <= gpus
    # The driver runs on the head: --output must be on a mounted (persistent) volume there.
    head = rc["headGroupSpec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["name"] for m in head["containers"][0]["volumeMounts"]}
    out_mount = next((m for m in mounts if cfg.output.startswith(m.rstrip("/") + "/")), None)
    assert out_mount, f"--output {cfg.output} is not on a volume of the head pod"
    vol = next(v for v in head["volumes"] if v["name"] == mounts[out_mount])
    assert "persistentVolumeClaim" in vol
    # The model folder is mounted wherever a replica may run.
    for group in rc["workerGroupSpecs"]:
        wm = [m["mountPath"] for m in group["template"]["spec"]["containers"][0]["volumeMounts"]]
        assert any(cfg.model.name_or_path.startswith(m + "/") for m in wm)


# ----- the local cluster script ----------------------------------------------------------------

def test_local_cluster_script_help():
    p = subprocess.run([sys.executable, str(REPO / "cluster" / "local_cluster.py"), "--help"],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0 and "start" in p.stdout and "--gpus-per-worker" in p.stdout


def test_readme_names_each_way_to_submit():
    text = (REPO / "cluster" / "README.md").read_text()
    for needle in ("local_cluster.py start", "ray job submit", "ray up cluster/cluster.yaml",
                   "kubectl apply -f cluster/rayjob.yaml", "--ray", "summary.json"):
        assert needle in text, needle


def test_local_cluster_without_the_venvs_ray_says_to_use_the_venv(monkeypatch, tmp_path):
    """The system python has no `ray` command: one line naming the venv, not a
    FileNotFoundError traceback from subprocess."""
    import cluster.local_cluster as lc

    monkeypatch.setattr(lc.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"no `ray` command .* \.venv/bin/python cluster/local_cluster\.py"):
        lc._ray_bin()
