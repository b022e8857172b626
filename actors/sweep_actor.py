"""A sweep's model replica as a Ray actor: ONE model load, every grid point's batches.

A thin shell over `latentmas_ray.run.sweep.PointEvaluators`: one Evaluator per grid point (its
method and settings) over the one engine this actor loads. A batch is a list of
`PointSample`s, so it carries its point; `run_points` returns [(point, store rows)].
"""

from __future__ import annotations

from typing import Any, Sequence

from actors.common import local_model_path, quiet_progress_bars, where


class SweepReplica:
    """Plain class (tested without Ray); `remote_form(SweepReplica)` is its actor."""

    def __init__(self, cfg, points: dict[str, dict[str, Any]],
                 model_path: str | None, prompts: dict[str, str] | None,
                 torch_threads: int | None = None):
        import torch

        from latentmas_ray.engines.hf import HFEngine
        from latentmas_ray.run.sweep import PointEvaluators
        from latentmas_ray.spec.config import RunConfig

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        base = cfg              # the typed RunConfig (it pickles), as every replica actor takes
        path = local_model_path(base, model_path)
        self.model_path = str(path)
        engine = HFEngine.load(base.model, self.model_path)       # the one load
        self.evaluators = PointEvaluators({k: RunConfig.from_dict(d) for k, d in points.items()},
                                          path, prompts, engine=engine)
        self.batches = 0

    def ready(self) -> dict[str, Any]:
        import torch

        return {**where(), "device": str(self.evaluators.engine.device), "engine": "hf",
                "torch_threads": torch.get_num_threads(), "model_path": self.model_path,
                "batches": self.batches}

    def run_points(self, items: Sequence) -> list[tuple[str, list[dict[str, Any]]]]:
        """PointSamples of one or more points -> [(point, store rows)]."""
        self.batches += 1
        return self.evaluators.run_mixed(list(items))

    def stats(self) -> dict[str, Any]:
        """What this replica did: batches, the points it ran, the engines it holds (loads)."""
        ev = self.evaluators
        engines = {id(ev.engine)} | {id(e) for v in ev.evaluators.values() for e in v.engines.values()}
        return {**where(), "batches": self.batches, "points": sorted(ev.evaluators),
                "engines_loaded": len(engines)}
