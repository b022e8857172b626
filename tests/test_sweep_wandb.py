"""`latentmas-ray sweep --wandb PROJECT`: one offline W&B run of the sweep, holding the points
table, the chosen setting and the curves, read back from its transaction log."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("wandb")

from test_sweep import run_sweep  # noqa: E402
from test_wandb import flat_items, offline, wandb_records  # noqa: E402,F401 (fixture)


def test_sweep_logs_table_choice_and_curves(tiny_model_dir, tmp_path, offline):  # noqa: F811
    code, log = run_sweep(tiny_model_dir, tmp_path, "--wandb", "latentmas-test")
    assert code == 0, log
    folder = tmp_path / "sweep"
    (run,) = sorted((folder / "wandb").glob("offline-run-*"))
    (path,) = run.glob("run-*.wandb")
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(path)):
        assert time.monotonic() < deadline, "no exit record"
        time.sleep(0.5)
    summary, history = {}, {}
    for r in wandb_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "summary":
            summary.update(flat_items(r.summary.update))
        elif kind == "history":
            history.update(flat_items(r.history.item))
    selection = json.loads((folder / "selection.json").read_text())
    assert summary["chosen"] == selection["chosen"]
    assert summary["noise"] == selection["noise"]
    table = json.loads((run / "files" / history["points/path"]).read_text())
    assert len(table["data"]) == 5 and table["data"][0][2] == selection["chosen"]
    assert {k.split("/")[1] for k in history if k.startswith("curve/")} >= {
        "curve-method", "curve-latent_steps", "curve-latent_space_realign"}
