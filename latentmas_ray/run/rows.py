"""The one path from generated results to store rows, for every engine and placement.

    rows_for(cfg, samples, results) -> rows     score the predictions, one row per result

The in-process Evaluator (run/batch.py), the streamed vLLM runs (run/streaming.py), the HF and
vLLM actors, the hybrid pair and the disaggregated role actors (actors/) all hand their
SampleResults to `rows_for`; the driver's CPU scoring task (code tasks) is `score_rows` itself.
A change to what a row holds (the trace, the hops) is one edit here. `error_rows` are the rows
of samples that could not be evaluated (recorded, not lost).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from latentmas_ray.errors import SampleError
from latentmas_ray.spec.config import RunConfig
from latentmas_ray.tasks.base import Sample
from latentmas_ray.tasks.scoring import score_samples


def rows_for(cfg: RunConfig, samples: Sequence[Sample], results: Sequence,
             workers: int | None = None) -> list[dict[str, Any]]:
    """The store rows of a batch: `results` (K per sample, sample-major) scored by the run's
    scoring mode and labelled with its method."""
    return score_rows(samples, results, cfg.scoring, cfg.method.method, workers,
                      cfg.execution.sandbox_level)


def score_rows(samples: Sequence[Sample], results: Sequence, mode: str, method: str,
               workers: int | None = None, sandbox_level: str = "standard") -> list[dict[str, Any]]:
    """Score generated results and build store rows (a replica for cheap scorers; a CPU worker
    for code tasks). results: K per sample (K >= 1), sample-major, sample_index 0..K-1."""
    samples, results = list(samples), list(results)
    assert samples and len(results) % len(samples) == 0, (len(samples), len(results))
    failed = [isinstance(r, SampleError) for r in results]
    if any(failed):     # a streamed sample (K = 1) that raised a SampleError: its error row
        assert len(results) == len(samples), "a SampleError stands for one completion (K = 1)"
        ok = [i for i, f in enumerate(failed) if not f]
        good = iter(score_rows([samples[i] for i in ok], [results[i] for i in ok], mode, method,
                               workers, sandbox_level) if ok else [])
        return [error_row(s, method, str(r)) if f else next(good)
                for s, r, f in zip(samples, results, failed)]
    k = len(results) // len(samples)
    per_row = [s for s in samples for _ in range(k)]                  # each sample K times
    assert ([(s.id, i % k) for i, s in enumerate(per_row)]
            == [(r.id, getattr(r, "sample_index", 0)) for r in results]), "results out of order"
    scores = score_samples(per_row, [r.prediction for r in results], mode, workers=workers,
                           sandbox_level=sandbox_level)
    return [result_row(s, r, sc, method) for s, r, sc in zip(per_row, results, scores)]


def result_row(sample: Sample, result, score, method: str) -> dict[str, Any]:
    row = {
        "id": sample.id, "sample_index": getattr(result, "sample_index", 0),
        "position": _position(sample), "task": sample.task, "method": method,
        "prediction": result.prediction,
        "gold": sample.gold if sample.kind != "code" else None,
        "correct": bool(score.correct), "extracted": score.extracted, "error": score.error,
        "prompt_tokens": result.prompt_tokens, "generated_tokens": result.generated_tokens,
        "latent_steps": result.latent_steps, "seconds": result.seconds,
        "agents": [{
            "role": a.role, "name": a.name, "input_ids": list(a.input_ids),
            "output_ids": list(a.output_ids), "prompt_tokens": a.prompt_tokens,
            "generated_tokens": a.generated_tokens, "latent_steps": a.latent_steps,
            "seconds": a.seconds, "model": getattr(a, "model", "") or None,
            "memory_bytes": getattr(a, "memory_bytes", 0),
        } for a in result.agents],
        "hops": [dataclasses.asdict(h) for h in result.hops],
        "max_new_tokens": getattr(result, "max_new_tokens", None),
    }
    if getattr(result, "latents", None):   # --save_latents: RunStore.append moves it to a side file
        row["latents"] = result.latents
    return row


def _position(sample: Sample) -> int | None:
    """The sample's place in its task (store/run_store.py orders rows by it); None when the
    sample was made by hand rather than loaded."""
    position = getattr(sample, "position", -1)
    return position if position >= 0 else None


def error_row(sample: Sample, method: str, error: str, sample_index: int = 0) -> dict[str, Any]:
    """The store row of a sample that could not be evaluated (a recorded error, not a crash)."""
    return {
        "id": sample.id, "sample_index": sample_index, "position": _position(sample),
        "task": sample.task, "method": method, "prediction": "",
        "gold": sample.gold if sample.kind != "code" else None, "correct": False,
        "extracted": None, "error": f"not evaluated: {error}"[:2000],
        "prompt_tokens": 0, "generated_tokens": 0, "latent_steps": 0, "seconds": 0.0,
        "agents": [], "hops": [], "max_new_tokens": None,
    }


def error_rows(sample: Sample, method: str, error: str, k: int = 1) -> list[dict[str, Any]]:
    """One error row per completion (K of them), so a resumed run counts the sample as done."""
    return [error_row(sample, method, error, j) for j in range(k)]
