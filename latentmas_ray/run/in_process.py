"""A run in this process: the pending samples batch by batch through one Evaluator, or on
vLLM streamed through its async engine (latentmas_ray/run/streaming.py: enough samples in flight
to keep it full, no batch barriers).

What `latentmas-ray run` does without `--ray` (the Ray driver is jobs/driver.py). Each sample's
rows are written to the store the moment it finishes (inside its batch, where the method can
tell: run/batch.py `Evaluator.run(on_rows=...)`; code tasks at their batch's end, vLLM every
--generate_bs finished samples), so an interrupted run loses little of what was done.
"""

from __future__ import annotations

import time

from latentmas_ray.spec.config import RunConfig
from latentmas_ray.run.batch import Evaluator
from latentmas_ray.run.observe import RunObserver
from latentmas_ray.run.progress import progress_bar


def run_in_process(cfg: RunConfig, store, pending, model_path, prompts, console,
                   n_done: int = 0, observer: RunObserver | None = None) -> float:
    """Evaluate `pending` (Samples) and append their rows to `store`; returns the loop's wall
    seconds (model loading excluded). n_done: samples earlier sessions finished (for the
    running accuracy); observer: hears each finished batch (latentmas_ray/run/observe.py)."""
    if not pending:
        return 0.0
    if cfg.execution.torch_threads:
        import torch
        torch.set_num_threads(cfg.execution.torch_threads)
    evaluator = Evaluator.for_config(cfg, model_path, prompts)
    written, correct = store.counts() if n_done else (0, 0)   # two columns read, not the rows
    start = time.perf_counter()
    try:     # the bar counts the whole run: a resumed run starts at the samples already done
        with progress_bar(console, "samples", total=n_done + len(pending), completed=n_done,
                          extra=lambda: f"acc {correct / max(written, 1):.1%}") as advance:
            def write(rows):
                nonlocal correct, written
                store.append(rows)
                if observer:
                    observer.on_rows(rows)
                correct += sum(1 for r in rows if r["correct"])
                written += len(rows)
                advance(len({r["id"] for r in rows}))      # samples, not their K completion rows

            # vLLM streams per sample (K > 1 decodes as vLLM's `n` in the batch form)
            if cfg.engine_kind == "hf" or cfg.method.num_return_sequences > 1:
                # a sample's rows are written the moment it finishes inside its batch (an
                # interrupt loses none); code is scored after the batch, in parallel
                as_they_finish = write if pending[0].kind != "code" else None
                for i in range(0, len(pending), cfg.batch_size):
                    rest = evaluator.run(pending[i:i + cfg.batch_size], on_rows=as_they_finish)
                    if rest:
                        write(rest)
            else:
                from latentmas_ray.run.streaming import stream_in_process
                stream_in_process(cfg, evaluator.engine, pending, prompts, write)
    finally:
        close = getattr(evaluator.engine, "close", None)
        if close is not None:       # vLLM: stop its EngineCore process now, not at exit
            close()
    return time.perf_counter() - start
