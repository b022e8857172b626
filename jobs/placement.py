"""Connecting to Ray and reserving what the replicas need: plain functions the driver calls.

- `check_address` / `connect`: fail fast, with one ConfigError, when nothing listens at the
  address (instead of ray.init's long retries), when it is a dashboard URL, or when the cluster
  wants token authentication.
- `check_placement` / `seat_group` / `release`: the static check (GPUs exist when asked for,
  the nodes can hold the bundles), one placement group per replica, and the clean-up.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any
from urllib.parse import urlparse

from latentmas_ray.errors import ConfigError

# Set by the Ray job supervisor in the driver of a `ray job submit` job.
JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


# ----- connecting ----------------------------------------------------------------------------

def _host_port(address: str) -> tuple[str, int] | None:
    a = address[len("ray://"):] if address.startswith("ray://") else address
    if ":" not in a:
        return None
    host, _, port = a.rpartition(":")
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        return None


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail fast (instead of ray.init's long retries) when nothing listens at `address`."""
    if address.startswith(("http://", "https://")):
        u = urlparse(address)
        raise ConfigError(
            f"--address {address} is an HTTP (dashboard / job submission) address; the driver "
            f"connects to the cluster's GCS address, e.g. {u.hostname}:6379 (or submit with "
            f"`ray job submit --address {address} -- python -m jobs.evaluate ...`)")
    if address in ("auto", "local"):
        return
    hp = _host_port(address)
    if hp is None:
        raise ConfigError(f"--address {address!r} is not host:port, ray://host:port, auto or local")
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(
            f"cannot reach the Ray cluster at {address} ({e.strerror or e}); start one with "
            "`ray start --head` (or cluster/local_cluster.py start), or fix --address / "
            "RAY_ADDRESS; without either a local Ray is started in this process") from None


def connect(address: str | None, *, local_cpus: int | None = None,
            local_resources: dict[str, float] | None = None) -> tuple[bool, str]:
    """Connect this process to Ray. Returns (we started it / must shut it down, description).
    A local Ray gets `local_cpus` CPU slots and `local_resources` (the scoring resource)."""
    import ray

    if ray.is_initialized():
        return False, "the Ray this process is already connected to"
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    check_address(address)
    kwargs: dict[str, Any] = {"logging_level": logging.WARNING}
    if address == "local":
        kwargs.update(num_cpus=local_cpus, include_dashboard=False,
                      resources=dict(local_resources or {}))
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as e:
        raise ConfigError(f"cannot connect to a Ray cluster at {address}: {e}") from None
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        if "Authentication" in name or "auth" in str(e).lower():
            raise ConfigError(
                f"the Ray cluster at {address} refused the connection ({name}): it uses token "
                "authentication; set RAY_AUTH_MODE=token (the token is read from "
                "~/.ray/auth_token or RAY_AUTH_TOKEN)") from None
        raise ConfigError(f"cannot connect to a Ray cluster at {address}: {name}: {e}") from None
    where = "a local Ray started in this process" if address == "local" else f"the cluster at {address}"
    return address == "local", where


# ----- placing the replicas ------------------------------------------------------------------

def placeable(nodes: list[dict[str, float]], bundle: dict[str, float]) -> int:
    """How many bundles the nodes could hold if they were otherwise empty."""
    n = 0
    for res in nodes:
        n += min(int(math.floor(res.get(k, 0.0) / v + 1e-9)) for k, v in bundle.items() if v > 0)
    return n


def alive_node_resources() -> list[dict[str, float]]:
    import ray
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def check_placement(replicas: int, bundle: dict[str, float], where: str, *,
                    bundles_per_replica: int = 1, unit: str = "replicas") -> None:
    """The static checks: GPUs exist when asked for, and the alive nodes could hold
    `replicas` x `bundles_per_replica` bundles if they were otherwise empty."""
    nodes = alive_node_resources()
    total_gpus = sum(n.get("GPU", 0.0) for n in nodes)
    total_cpus = sum(n.get("CPU", 0.0) for n in nodes)
    gpus = bundle.get("GPU", 0.0)
    if gpus > 0 and total_gpus == 0:
        raise ConfigError(
            f"--num_gpus_per_replica {gpus:g} asks for GPUs, but {where} has none "
            f"({len(nodes)} node(s), {total_cpus:g} CPUs); use --num_gpus_per_replica 0 for "
            "CPU replicas, or a cluster with GPU nodes")
    fit = placeable(nodes, bundle)
    if fit < replicas * bundles_per_replica:
        need = ", ".join(f"{v:g} {k}" for k, v in bundle.items() if v > 0)
        have = "; ".join(", ".join(f"{n.get(k, 0):g} {k}" for k in bundle) for n in nodes)
        raise ConfigError(
            f"cannot place {replicas} {unit} of {need} each on {where}: its {len(nodes)} "
            f"node(s) ({have}) hold at most {fit}; use --replicas "
            f"{max(fit // bundles_per_replica, 1)}"
            + (", fewer --torch_threads" if gpus == 0 and bundle.get("CPU", 1) > 1 else "")
            + " or a bigger cluster")


def release(pg, owned: bool) -> None:
    """The end of a run, however it ends: the reservation removed, and the local Ray this
    process started (owned) shut down. (The replicas are killed by the driver first.)"""
    import ray

    for group in (pg if isinstance(pg, (list, tuple)) else [pg]):
        if group is None:
            continue
        try:
            from ray.util import remove_placement_group
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 - already gone with its cluster
            pass
    if owned:
        ray.shutdown()


def seat_group(bundles: list[dict[str, float]], name: str):
    """The placement group of ONE replica (its bundles; several for a disaggregated pipeline,
    spread over the nodes). Each replica has its own, so the run starts with those that can
    be placed and the others keep waiting (or an autoscaler adds nodes for them)."""
    from ray.util import placement_group

    return placement_group([dict(b) for b in bundles],
                           strategy="SPREAD" if len(bundles) > 1 else "PACK", name=name)


def ask_autoscaler(bundles: list[dict[str, float]]) -> bool:
    """Tell an autoscaler what the run needs (it adds nodes for it; replaces any earlier
    request of this job). False when the cluster has none to ask."""
    try:
        from ray.autoscaler.sdk import request_resources
        request_resources(bundles=[dict(b) for b in bundles])
        return True
    except Exception:  # noqa: BLE001 - no autoscaler: nothing to ask
        return False


def check_scoring(resource: str, where: str, autoscale: bool) -> None:
    """Code tasks are scored only where `resource` is declared (not beside GPU replicas):
    fail before the run when no node has it and no autoscaler can add one."""
    if resource == "any" or autoscale:
        return
    if not any(n.get(resource, 0) > 0 for n in alive_node_resources()):
        raise ConfigError(
            f"code scoring runs where the Ray resource {resource!r} is declared, and no node of "
            f"{where} has it: start the head (or CPU workers) with "
            f"--resources '{{\"{resource}\": 4}}' (cluster/cluster.yaml does), or pass "
            "--scoring_resource any to score on any node's CPUs, GPU nodes included")
