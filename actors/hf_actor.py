"""A model replica as a Ray actor: a thin shell over the core library's `Evaluator`.

One actor = one model copy, pinned to a GPU (`num_gpus`) or, on machines without one, to a CPU
slot (`num_cpus`). All logic lives in `latentmas_ray.evaluate.Evaluator` (generation with the
method) and `latentmas_ray.tasks.scoring` (scoring); this module only adds what a remote
process needs: where to find the model on its own node, how many torch threads to use, and a
`ready()` call that reports where it landed.

`score_rows` is the CPU-side half: the driver runs it as a Ray task (`num_cpus=1`) for code
tasks, so no GPU actor waits on test execution.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Sequence


class HFReplica:
    """Plain class (tested and benchmarked without Ray); `HFActor` is its Ray actor form."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None, prompts: dict[str, str] | None,
                 torch_threads: int | None = None):
        import torch

        from latentmas_ray.config import RunConfig
        from latentmas_ray.evaluate import Evaluator
        from latentmas_ray.models import resolve_model

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        try:  # "Loading weights" bars from every replica would garble the driver's progress bar
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except Exception:  # noqa: BLE001
            pass
        self.cfg = RunConfig.from_dict(cfg)
        # The driver resolved the model on its own node; a worker node may keep it elsewhere
        # (the embedded model is converted into each node's cache on first use).
        if model_path and Path(model_path).is_dir():
            path = Path(model_path)
        else:
            path = resolve_model(self.cfg.model.name_or_path)
        self.model_path = str(path)
        self.evaluator = Evaluator(self.cfg, path, prompts)
        self.batches = 0

    def ready(self) -> dict[str, Any]:
        """Where this replica runs (the driver's first call: it waits for the model load)."""
        import torch

        info: dict[str, Any] = {
            "pid": os.getpid(), "host": socket.gethostname(),
            "device": str(self.evaluator.engine.device), "torch_threads": torch.get_num_threads(),
            "model_path": self.model_path, "node_id": None, "gpu_ids": [], "batches": self.batches,
        }
        try:
            import ray
            if ray.is_initialized():
                ctx = ray.get_runtime_context()
                info["node_id"] = ctx.get_node_id()
                info["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
        except Exception:  # noqa: BLE001 - informative only
            pass
        return info

    def generate(self, samples: Sequence) -> list:
        """Method output only (SampleResult per sample); scoring happens elsewhere."""
        self.batches += 1
        return self.evaluator.generate(list(samples))

    def run(self, samples: Sequence) -> list[dict[str, Any]]:
        """Generate and score (cheap scorers: math and multiple choice): store rows."""
        self.batches += 1
        return self.evaluator.run(list(samples))


def score_rows(samples: Sequence, results: Sequence, mode: str, method: str,
               workers: int = 1) -> list[dict[str, Any]]:
    """Score generated results and build store rows (runs on a CPU worker for code tasks)."""
    from latentmas_ray.evaluate import result_row
    from latentmas_ray.tasks.scoring import score_samples

    samples, results = list(samples), list(results)
    assert [s.id for s in samples] == [r.id for r in results], "results out of order"
    scores = score_samples(samples, [r.prediction for r in results], mode, workers=workers)
    return [result_row(s, r, sc, method) for s, r, sc in zip(samples, results, scores)]


def error_row(sample, method: str, error: str) -> dict[str, Any]:
    """The store row of a sample that could not be evaluated (a recorded error, not a crash)."""
    return {
        "id": sample.id, "task": sample.task, "method": method, "prediction": "",
        "gold": sample.gold if sample.kind != "code" else None, "correct": False,
        "extracted": None, "error": f"not evaluated: {error}"[:2000],
        "prompt_tokens": 0, "generated_tokens": 0, "latent_steps": 0, "seconds": 0.0,
        "agents": [],
    }


# ----- Ray forms ---------------------------------------------------------------------------

def actor_options(*, gpus: float = 0.0, cpus: float = 1.0, max_restarts: int = 3,
                  placement_group=None, bundle_index: int = -1, name: str | None = None
                  ) -> dict[str, Any]:
    """Options for `HFActor.options(...)`.

    max_restarts: Ray restarts a crashed replica (it reloads the model) up to this many times.
    max_task_retries=0: a batch in flight on a dying replica is NOT retried by Ray on the same
    replica (that would wait for the restart, which may never be placed when its node is
    gone); it fails at once and the driver hands it to a live replica.
    """
    opts: dict[str, Any] = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": max_restarts,
                            "max_task_retries": 0, "max_concurrency": 1}
    if name:
        opts["name"] = name
    if placement_group is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
        opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
            placement_group=placement_group, placement_group_bundle_index=bundle_index,
            placement_group_capture_child_tasks=False)
    return opts


_REMOTE: dict[str, Any] = {}


def hf_actor_class():
    """`ray.remote(HFReplica)`, made on first use so importing this module needs no Ray."""
    if "actor" not in _REMOTE:
        import ray
        _REMOTE["actor"] = ray.remote(HFReplica)
    return _REMOTE["actor"]


def score_task():
    """`score_rows` as a Ray task: 1 CPU; Ray retries it if its worker or node dies."""
    if "score" not in _REMOTE:
        import ray
        _REMOTE["score"] = ray.remote(num_cpus=1, max_retries=3)(score_rows)
    return _REMOTE["score"]
