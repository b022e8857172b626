"""A model replica as a Ray actor: a thin shell over the core library's `Evaluator`.

One actor = one model copy, pinned to a GPU (`num_gpus`) or, on machines without one, to a CPU
slot (`num_cpus`). All logic lives in `latentmas_ray.run.batch.Evaluator` (generation with the
method, then the one row builder, latentmas_ray/run/rows.py); this module only adds what a
remote process needs: where to find the model on its own node, how many torch threads to use,
and a `ready()` call that reports where it landed.
`run_stream` is `run` as a Ray streaming generator: the rows of each sample as it finishes,
so the driver writes them at once and a stop or a dead replica loses no finished sample.
An audit for that claim: with LATENTMAS_FINISHED_LOG set in a replica's environment, it
appends "<unix time> <sample id>" to that file for each sample the moment it finished
(bench/first_progress.sh compares it with the rows on disk after `ray job stop`).
Code tasks are scored elsewhere: the driver runs `actors.common.score_task` on a CPU worker.
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator, Sequence

from actors.common import local_model_path, quiet_progress_bars, where
from latentmas_ray.spec.config import RunConfig


class HFReplica:
    """Plain class (tested and benchmarked without Ray); `remote_form(HFReplica)` is its actor."""

    def __init__(self, cfg: RunConfig, model_path: str | None, prompts: dict[str, str] | None,
                 torch_threads: int | None = None, engine=None):
        """`engine` (tests): an already loaded HFEngine."""
        import torch

        from latentmas_ray.run.batch import Evaluator

        if torch_threads:
            torch.set_num_threads(int(torch_threads))
        quiet_progress_bars()
        self.cfg = cfg
        path = model_path if engine is not None else local_model_path(cfg, model_path)
        self.model_path = str(path)
        self.evaluator = Evaluator(cfg, path, prompts, engine)
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

    def run_stream(self, samples: Sequence) -> Iterator[list[dict[str, Any]]]:
        """`run`, yielding store rows as samples finish (each sample's rows exactly once, in
        one of the lists): a streaming generator on Ray (`num_returns="streaming"`, see
        ActorGroup.single). The batch runs in a thread feeding a queue, since the rows are
        handed out from inside the decode loop; its error, if any, is raised here."""
        import queue
        import threading

        self.batches += 1
        out: queue.Queue = queue.Queue()
        end = object()

        def finished(rows: list[dict[str, Any]]) -> None:
            audit_finished(rows)
            out.put(rows)

        def work() -> None:
            try:
                rest = self.evaluator.run(list(samples), on_rows=finished)
                if rest:
                    finished(rest)
                out.put(end)
            except BaseException as e:  # noqa: BLE001 - re-raised below, in the caller
                out.put(_Failed(e))

        worker = threading.Thread(target=work, name="batch", daemon=True)
        worker.start()
        try:
            while (item := out.get()) is not end:
                if isinstance(item, _Failed):
                    raise item.error
                if item:
                    yield item
        finally:
            worker.join()


FINISHED_LOG = "LATENTMAS_FINISHED_LOG"


def audit_finished(rows: list[dict[str, Any]]) -> None:
    """Append "<unix time> <id>" per finished sample to $LATENTMAS_FINISHED_LOG, if set."""
    path = os.environ.get(FINISHED_LOG)
    if path and rows:
        now = time.time()
        with open(path, "a") as f:
            f.write("".join(f"{now:.3f} {i}\n" for i in dict.fromkeys(r["id"] for r in rows)))


class _Failed:
    """The batch thread's exception, carried to the generator."""

    def __init__(self, error: BaseException):
        self.error = error
