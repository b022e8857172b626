"""A stand-in replica for measuring the driver alone (bench/bench_scale.py) and for driving
its fault paths in tests: it sleeps a fixed time per batch and returns well-formed store rows
(every sample correct), with no model. Reached only through `run_on_ray(..., factory=...)`:
the command line cannot select it.

    StandInFactory(cfg, latency_s=0.05, broken={0}, config_error=False, cpus=0.01,
                   load_fail={0})

broken: replica numbers whose every batch raises (a replica that is alive but broken);
load_fail: replica numbers whose load fails (an OSError in the constructor, as a node without
the model folder); "all": every replica's;
config_error: every batch raises a ConfigError (a deterministic error of the run);
calls_file: each batch appends a line there (to count attempts across processes).
"""

from __future__ import annotations

import os
import time
from typing import Any

from jobs.replicas import ReplicaFactory


class StandInReplica:
    def __init__(self, rid: int, latency_s: float, broken: bool, config_error: bool,
                 calls_file: str | None, load_fail: bool = False, k: int = 1):
        if load_fail:
            raise OSError(f"stand-in replica {rid}: no model folder on this node")
        self.rid, self.latency_s, self.broken, self.k = rid, latency_s, broken, k
        self.config_error, self.calls_file = config_error, calls_file
        self.batches = 0

    def ready(self) -> dict[str, Any]:
        from actors.common import where
        return {**where(), "device": "stand-in", "engine": "stand-in", "batches": self.batches}

    def run(self, samples) -> list[dict[str, Any]]:
        self.batches += 1
        if self.calls_file:
            with open(self.calls_file, "a") as f:
                f.write(f"{self.rid} {len(samples)}\n")
        time.sleep(self.latency_s)
        if self.config_error:
            from latentmas_ray.errors import ConfigError
            raise ConfigError("prompt of 9999 tokens is longer than the engine's 2048 "
                              "(a stand-in's config error)")
        if self.broken:
            raise RuntimeError(f"stand-in replica {self.rid} is broken")
        if self.k == 1:
            return [row(s) for s in samples]
        return [{**row(s), "sample_index": j, "correct": j % 2 == 0}    # K completions
                for s in samples for j in range(self.k)]

    def generate(self, samples):
        raise NotImplementedError("the stand-in serves run() only")


def row(sample) -> dict[str, Any]:
    """A well-formed store row, correct, with one agent of a few tokens."""
    return {"id": sample.id, "position": sample.position if sample.position >= 0 else None,
            "task": sample.task, "method": "baseline",
            "prediction": str(sample.gold), "gold": sample.gold, "correct": True,
            "extracted": str(sample.gold), "error": None, "prompt_tokens": 10,
            "generated_tokens": 1, "latent_steps": 0, "seconds": 0.0,
            "agents": [{"role": "single", "name": "baseline", "input_ids": [1, 2, 3],
                        "output_ids": [4], "prompt_tokens": 3, "generated_tokens": 1,
                        "latent_steps": 0, "seconds": 0.0}],
            "hops": []}


class StandInFactory(ReplicaFactory):
    label = "stand-in replica(s)"

    def __init__(self, cfg, latency_s: float = 0.05, *, broken: set[int] = frozenset(),
                 config_error: bool = False, cpus: float = 0.01, gpus: float = 0.0,
                 calls_file: str | None = None, load_fail: set[int] | str = frozenset()):
        super().__init__(cfg, None, {})
        self.load_fail = load_fail
        self.latency_s, self.broken, self.config_error = latency_s, set(broken), config_error
        self.stand_in_cpus, self.stand_in_gpus, self.calls_file = cpus, gpus, calls_file

    def resolve(self, cluster_has_gpus: bool, owned: bool) -> None:
        self.gpus, self.threads = self.stand_in_gpus, 1

    @property
    def cpus(self) -> float:
        return self.stand_in_cpus

    def local_cpus(self) -> int:
        return max(os.cpu_count() or 1, 2)

    def kind(self) -> str:
        return f"stand-in, {self.latency_s * 1e3:g} ms per batch"

    def start(self, pg, replica: int):
        from actors.common import ActorGroup, remote_form

        opts = self.actor_options(pg, 0)
        opts["runtime_env"] = {"env_vars": {"OMP_NUM_THREADS": "1"}}
        actor = remote_form(StandInReplica).options(**opts).remote(
            replica, self.latency_s, replica in self.broken, self.config_error, self.calls_file,
            self.load_fail == "all" or replica in self.load_fail,
            self.cfg.method.num_return_sequences)
        return ActorGroup.single("stand-in", actor)
