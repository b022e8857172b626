"""One batch of samples in, store rows out: generation by the method, then scoring.

A plain class, so the in-process CLI, the Ray actors and the tests all drive the same code.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

from .config import RunConfig
from .tasks.base import Sample
from .tasks.scoring import score_samples


class Evaluator:
    def __init__(self, cfg: RunConfig, model_path: str | Path, prompts: dict[str, str] | None = None,
                 engine=None):
        from .engines.hf import HFEngine
        from .methods import get_method

        self.cfg = cfg
        self.prompts = prompts or {}
        self.engine = engine if engine is not None else HFEngine.load(cfg.model, str(model_path))
        self.method = get_method(cfg.method.method)

    def generate(self, samples: Sequence[Sample]):
        return self.method(self.engine, list(samples), self.cfg.method, self.cfg.seed,
                           prompts=self.prompts)

    def run(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        results = self.generate(samples)
        scores = score_samples(samples, [r.prediction for r in results], self.cfg.scoring)
        return [result_row(s, r, sc, self.cfg.method.method) for s, r, sc in zip(samples, results, scores)]


def result_row(sample: Sample, result, score, method: str) -> dict[str, Any]:
    return {
        "id": sample.id, "task": sample.task, "method": method,
        "prediction": result.prediction,
        "gold": sample.gold if sample.kind != "code" else None,
        "correct": bool(score.correct), "extracted": score.extracted, "error": score.error,
        "prompt_tokens": result.prompt_tokens, "generated_tokens": result.generated_tokens,
        "latent_steps": result.latent_steps, "seconds": result.seconds,
        "agents": [{
            "role": a.role, "name": a.name, "input_ids": list(a.input_ids),
            "output_ids": list(a.output_ids), "prompt_tokens": a.prompt_tokens,
            "generated_tokens": a.generated_tokens, "latent_steps": a.latent_steps,
            "seconds": a.seconds,
        } for a in result.agents],
        "hops": [dataclasses.asdict(h) for h in result.hops],
    }
