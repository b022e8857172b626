"""One batch of samples in, store rows out: generation by the method, then scoring.

A plain class, so the in-process CLI, the Ray actors and the tests all drive the same code.
`Evaluator.for_config` picks the engine and the method from the run's `engine_kind`: the HF
engine, vLLM (baseline / TextMAS) or the hybrid (LatentMAS: HF latent agents, vLLM judger).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

from latentmas_ray.errors import SampleError
from latentmas_ray.spec.config import RunConfig
from latentmas_ray.tasks.base import Sample
from latentmas_ray.tasks.scoring import score_samples


class Evaluator:
    def __init__(self, cfg: RunConfig, model_path: str | Path, prompts: dict[str, str] | None = None,
                 engine=None, method: Callable | None = None):
        """An HF engine and cfg's method unless `engine` / `method` are given. Per-agent
        checkpoints (--agents ... model:) are checked, then each loaded once (`engines`)."""
        from latentmas_ray.engines.hf import HFEngine
        from latentmas_ray.methods import get_method
        from latentmas_ray.spec.models import check_agent_models

        self.cfg = cfg
        self.prompts = prompts or {}
        agent_paths = check_agent_models(cfg, model_path)     # before any weights load
        self.engine = engine if engine is not None else HFEngine.load(cfg.model, str(model_path))
        self.method = method or get_method(cfg.method.method)
        self.engines = {}               # model as written in the agents file -> its engine
        for model, folder in agent_paths.items():
            same = Path(folder).resolve() == Path(model_path).resolve()
            self.engines[model] = self.engine if same else HFEngine.load(cfg.model, str(folder))

    @classmethod
    def for_config(cls, cfg: RunConfig, model_path: str | Path,
                   prompts: dict[str, str] | None = None, engine=None) -> "Evaluator":
        """The Evaluator cfg.engine_kind asks for; `engine` (tests, actors): one already loaded."""
        kind = cfg.engine_kind
        if kind == "hf":
            return cls(cfg, model_path, prompts, engine)
        from latentmas_ray.engines.vllm import require_vllm

        require_vllm()          # one message naming what to install, before any loading
        if kind == "hybrid":
            from latentmas_ray.engines.hf_vllm_pair import HybridEngine
            from latentmas_ray.methods.hybrid import run_batch
            engine = engine or HybridEngine.load(cfg.model, str(model_path), cfg.execution.vllm,
                                                 seq_tokens=typical_seq_tokens(cfg))
            return cls(cfg, model_path, prompts, engine, run_batch)
        from latentmas_ray.engines.vllm import VLLMEngine
        engine = engine or VLLMEngine.load(cfg.model, str(model_path), cfg.execution.vllm,
                                           prompt_embeds=False, seq_tokens=typical_seq_tokens(cfg))
        return cls(cfg, model_path, prompts, engine)

    def generate(self, samples: Sequence[Sample]):
        """B samples -> B x K SampleResults (K = --num_return_sequences), sample-major."""
        extra = {"save_latents": True} if self.cfg.execution.save_latents else {}
        if self.engines:
            extra["engines"] = self.engines
        return self.method(self.engine, list(samples), self.cfg.method, self.cfg.seed,
                           prompts=self.prompts, **extra)

    def run(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        return score_rows(samples, self.generate(samples), self.cfg.scoring, self.cfg.method.method)


def typical_seq_tokens(cfg: RunConfig) -> int:
    """Positions a typical vLLM sequence of this run takes (prompt + new tokens), which sizes
    max_num_seqs from the KV budget (engines/vllm_start.py). A rough mean, not a bound: vLLM
    admits a sequence only when its KV fits, so a high estimate only queues requests longer.
    The 512 is a generous chat prompt (GSM8K prompts are ~150-300 tokens); TextMAS agents read
    up to three earlier answers (1.5 x max_new_tokens on average); the hybrid judger's input
    holds four prompts and 3 x latent_steps vectors."""
    m = cfg.method
    extra = {"baseline": 0, "text_mas": int(1.5 * m.max_new_tokens),
             "latent_mas": 3 * 512 + 3 * m.latent_steps}[m.method]
    return 512 + extra + m.max_new_tokens


def score_rows(samples: Sequence[Sample], results: Sequence, mode: str, method: str,
               workers: int | None = None) -> list[dict[str, Any]]:
    """Score generated results and build store rows (a replica for cheap scorers; a CPU worker
    for code tasks). results: K per sample (K >= 1), sample-major, sample_index 0..K-1."""
    samples, results = list(samples), list(results)
    assert samples and len(results) % len(samples) == 0, (len(samples), len(results))
    failed = [isinstance(r, SampleError) for r in results]
    if any(failed):     # a streamed sample (K = 1) that raised a SampleError: its error row
        assert len(results) == len(samples), "a SampleError stands for one completion (K = 1)"
        ok = [i for i, f in enumerate(failed) if not f]
        good = iter(score_rows([samples[i] for i in ok], [results[i] for i in ok], mode, method,
                               workers) if ok else [])
        return [error_row(s, method, str(r)) if f else next(good)
                for s, r, f in zip(samples, results, failed)]
    k = len(results) // len(samples)
    per_row = [s for s in samples for _ in range(k)]                  # each sample K times
    assert ([(s.id, i % k) for i, s in enumerate(per_row)]
            == [(r.id, getattr(r, "sample_index", 0)) for r in results]), "results out of order"
    scores = score_samples(per_row, [r.prediction for r in results], mode, workers=workers)
    return [result_row(s, r, sc, method) for s, r, sc in zip(per_row, results, scores)]


def result_row(sample: Sample, result, score, method: str) -> dict[str, Any]:
    row = {
        "id": sample.id, "sample_index": getattr(result, "sample_index", 0),
        "task": sample.task, "method": method,
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


def error_row(sample: Sample, method: str, error: str, sample_index: int = 0) -> dict[str, Any]:
    """The store row of a sample that could not be evaluated (a recorded error, not a crash)."""
    return {
        "id": sample.id, "sample_index": sample_index, "task": sample.task, "method": method, "prediction": "",
        "gold": sample.gold if sample.kind != "code" else None, "correct": False,
        "extracted": None, "error": f"not evaluated: {error}"[:2000],
        "prompt_tokens": 0, "generated_tokens": 0, "latent_steps": 0, "seconds": 0.0,
        "agents": [], "hops": [], "max_new_tokens": None,
    }


def error_rows(sample: Sample, method: str, error: str, k: int = 1) -> list[dict[str, Any]]:
    """One error row per completion (K of them), so a resumed run counts the sample as done."""
    return [error_row(sample, method, error, j) for j in range(k)]
