"""Run observers: who else hears about a run while it runs, besides its store and progress bar.

    with open_observer(cfg) as observer:   # WandbObserver for --wandb PROJECT, else a no-op
        observer.on_start(config, prior)   # the run folder is open; prior: rows done earlier
        observer.on_rows(rows)             # each finished batch (the in-process loop, the Ray
                                           # Driver: the process that writes the store)
        observer.on_end(summary, rows)     # summary.json's numbers and every sample's row
    # leaving the block finishes the observer (a failed run is marked failed)

Only the process that runs the loop calls an observer, never a Ray actor, so a run has one
W&B run however many replicas it has. Observers only read rows; a run's results never depend
on them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from latentmas_ray.spec.config import RunConfig
from latentmas_ray.errors import ConfigError

WANDB_EXTRA = "pip install latentmas-ray[wandb]"
# The per-sample table: what a reader scans to see which samples went wrong and at what cost
# (the full rows, with each agent's token ids, stay in samples.parquet).
TABLE_COLUMNS = ("id", "correct", "prediction", "gold", "extracted", "generated_tokens",
                 "prompt_tokens", "latent_steps", "seconds", "error")


class RunObserver:
    """Does nothing: the observer of a run nobody watches. Subclasses override the hooks."""

    # whether on_start / on_end need the run's rows (reading them costs memory in a long run)
    wants_rows = False

    def on_start(self, config: dict[str, Any], prior: list[dict[str, Any]]) -> None:
        """config: RunConfig.to_dict() (output set); prior: rows finished in earlier sessions
        (at least `correct` and `generated_tokens`), so running numbers cover the whole run."""

    def on_rows(self, rows: list[dict[str, Any]]) -> None:
        """A finished batch's store rows, just written."""

    def on_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        """The run's summary (summary.json) and all its rows, in the task's order."""

    def close(self, failed: bool) -> None:
        """The run ended (failed: by an exception)."""

    def __enter__(self) -> "RunObserver":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(failed=exc_type is not None)


def require_wandb():
    """The wandb module, or one ConfigError naming the extra to install."""
    try:
        import wandb
    except ImportError:
        raise ConfigError(f"--wandb needs the wandb package: {WANDB_EXTRA}") from None
    return wandb


def open_observer(cfg: RunConfig) -> RunObserver:
    ex = cfg.execution
    if ex.wandb:
        require_wandb()
        return WandbObserver(ex.wandb, run_name=ex.wandb_run_name, group=ex.wandb_group)
    return RunObserver()


class WandbObserver(RunObserver):
    """Logs to Weights & Biases: the run's config at the start; after each batch the running
    accuracy, samples/s and tokens per sample (x axis: samples done); at the end the summary
    and a per-sample table. WANDB_MODE=offline (or `disabled`) is honoured as wandb does it;
    the run's files go to $WANDB_DIR, else into the run folder (RUN_DIR/wandb/, where
    `wandb sync` uploads an offline run later)."""

    wants_rows = True

    def __init__(self, project: str, *, run_name: str | None = None, group: str | None = None):
        self.project, self.run_name, self.group = project, run_name, group
        self.run = None
        self.correct = self.written = self.tokens = self.session = 0
        self.start = 0.0

    def on_start(self, config: dict[str, Any], prior: list[dict[str, Any]]) -> None:
        wandb = require_wandb()
        folder = Path(config["output"])
        settings = wandb.Settings(console="off",          # our progress bar is not a log
                                  x_disable_stats=True,   # no system-metrics sampler thread
                                  quiet=True)
        try:
            self.run = wandb.init(project=self.project, name=self.run_name or folder.name,
                                  group=self.group, job_type="eval", config=config,
                                  dir=os.environ.get("WANDB_DIR") or str(folder),
                                  settings=settings)
        except Exception as e:   # no login, no network, a bad project name, ...
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ConfigError(f"--wandb {self.project}: W&B did not start ({first}); run "
                              "`wandb login`, or set WANDB_MODE=offline to log locally") from None
        self.run.define_metric("samples")
        self.run.define_metric("*", step_metric="samples")
        self.correct = sum(1 for r in prior if r["correct"])
        self.written = len(prior)
        self.tokens = sum(r["generated_tokens"] or 0 for r in prior)
        self.session, self.start = 0, time.perf_counter()

    def on_rows(self, rows: list[dict[str, Any]]) -> None:
        if self.run is None or not rows:
            return
        self.correct += sum(1 for r in rows if r["correct"])
        self.written += len(rows)
        self.session += len(rows)
        batch_tokens = sum(r["generated_tokens"] or 0 for r in rows)
        self.tokens += batch_tokens
        elapsed = time.perf_counter() - self.start
        self.run.log({
            "samples": self.written,
            "accuracy": self.correct / self.written,
            # this session's samples over its wall time, model loading included
            "samples_per_s": self.session / elapsed if elapsed > 0 else 0.0,
            "generated_tokens_per_sample": self.tokens / self.written,
            "batch/generated_tokens_per_sample": batch_tokens / len(rows),
            "batch/errors": sum(1 for r in rows if r["error"]),
        })

    def on_end(self, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
        if self.run is None:
            return
        wandb = require_wandb()
        table = wandb.Table(columns=list(TABLE_COLUMNS),
                            data=[[r.get(c) for c in TABLE_COLUMNS] for r in rows])
        self.run.log({"samples_table": table})
        self.run.summary.update(summary)

    def close(self, failed: bool) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None
