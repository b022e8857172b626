"""One batch of samples in, store rows out: generation by the method, then the rows
(latentmas_ray/run/rows.py, the one row builder every placement calls).

A plain class, so the in-process CLI, the Ray actors and the tests all drive the same code.
`Evaluator.for_config` picks the engine and the method from the run's `engine_kind`: the HF
engine, vLLM (baseline / TextMAS) or the hybrid (LatentMAS: HF latent agents, vLLM judger).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Sequence

from latentmas_ray.methods.result import OnResults
from latentmas_ray.run.rows import rows_for
from latentmas_ray.spec.config import RunConfig
from latentmas_ray.tasks.base import Sample


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
        from latentmas_ray.engines.vllm_fit import typical_seq_tokens

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

    @property
    def streams(self) -> bool:
        """Whether the method tells samples as they finish (`on_results`): the HF methods do;
        the hybrid (HF agents, vLLM judger) returns its batch whole."""
        return "on_results" in inspect.signature(self.method).parameters

    def generate(self, samples: Sequence[Sample], on_results: OnResults | None = None):
        """B samples -> B x K SampleResults (K = --num_return_sequences), sample-major.
        on_results (methods that `stream`): hears each sample's K results as it finishes."""
        extra: dict[str, Any] = {"save_latents": True} if self.cfg.execution.save_latents else {}
        if self.engines:
            extra["engines"] = self.engines
        if on_results is not None:
            extra["on_results"] = on_results
        return self.method(self.engine, list(samples), self.cfg.method, self.cfg.seed,
                           prompts=self.prompts, **extra)

    def run(self, samples: Sequence[Sample],
            on_rows: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """The batch's store rows. on_rows: hears the scored rows of samples as they finish
        (where the method `streams`); the rows it heard are not returned, so each sample's
        rows come exactly once, through on_rows or the return value."""
        samples = list(samples)
        if on_rows is None or not self.streams:
            return rows_for(self.cfg, samples, self.generate(samples))
        by_id = {s.id: s for s in samples}
        told: set[str] = set()

        def heard(results) -> None:
            ids = list(dict.fromkeys(r.id for r in results))          # samples, in order
            rows = rows_for(self.cfg, [by_id[i] for i in ids], results)
            told.update(ids)
            on_rows(rows)

        results = [r for r in self.generate(samples, heard) if r.id not in told]
        rest = [s for s in samples if s.id not in told]
        return rows_for(self.cfg, rest, results) if rest else []
