"""The progress figures of a Ray run (jobs/monitor.py): the whole run's done/total, accuracy
over those same samples, and the work still inside batches."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console

from jobs.monitor import Monitor
from latentmas_ray.store.run_store import RunStore
from latentmas_ray.spec.config import RunConfig


def _monitor(tmp_path, **kw) -> tuple[Monitor, io.StringIO, RunStore]:
    store = RunStore(tmp_path / "run")
    store.open(RunConfig(task="gsm8k").to_dict())
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return Monitor(console, store, every_s=0.0, **kw), out, store


def test_a_resumed_run_counts_the_whole_run(tmp_path):
    """24 of 40 samples done by an earlier session (1 correct): the line counts 40, not the 16
    left, and the accuracy is over the samples it counts as done."""
    mon, out, store = _monitor(tmp_path, total=40, prior=(24, 1), replicas=2)
    with mon.running():
        mon.add(4, 3)
        mon.tick(2, (8, 2, 75.0))
    lines = [ln for ln in out.getvalue().splitlines() if ln.startswith("progress")]
    assert lines and all(ln.startswith("progress 28/40 (70.0%)") for ln in lines), lines
    assert all("acc 14.3%" in ln for ln in lines)                      # (1 + 3) / 28
    assert "replicas 2/2 in flight 8 (2 batches, oldest 1m15s)" in lines[0]
    progress = json.loads((tmp_path / "run" / "summary.json").read_text())["progress"]
    assert (progress["done"], progress["total"], progress["done_this_session"]) == (28, 40, 4)
    assert progress["in_flight_samples"] == 8 and progress["oldest_batch_seconds"] == 75.0


def test_a_slow_first_batch_shows_as_running_work(tmp_path):
    mon, out, _ = _monitor(tmp_path, total=40, replicas=2)
    with mon.running():
        mon.tick(2, (8, 2, 61.0))
    first = next(ln for ln in out.getvalue().splitlines() if ln.startswith("progress"))
    assert re.match(r"progress 0/40 \(0\.0%\) .* in flight 8 \(2 batches, oldest 1m01s\)", first)
