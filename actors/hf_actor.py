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

from typing import Any, Sequence

from actors.common import actor_options, local_model_path, quiet_progress_bars, where

__all__ = ["HFReplica", "actor_options", "error_row", "hf_actor_class", "score_rows", "score_task"]


class HFReplica:
    """Plain class (tested and benchmarked without Ray); `HFActor` is its Ray actor form."""

    def __init__(self, cfg: dict[str, Any], model_path: str | None, prompts: dict[str, str] | None,
                 torch_threads: int | None = None):
        import torch

        from latentmas_ray.config import RunConfig
        from latentmas_ray.evaluate import Evaluator

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = RunConfig.from_dict(cfg)
        path = local_model_path(self.cfg, model_path)
        self.model_path = str(path)
        self.evaluator = Evaluator(self.cfg, path, prompts)
        self.batches = 0

    def ready(self) -> dict[str, Any]:
        """Where this replica runs (the driver's first call: it waits for the model load)."""
        import torch

        return {**where(), "device": str(self.evaluator.engine.device), "engine": "hf",
                "torch_threads": torch.get_num_threads(), "model_path": self.model_path,
                "batches": self.batches}

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
        "agents": [], "hops": [],
    }


# ----- Ray forms ---------------------------------------------------------------------------

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
