"""`latentmas-ray run --wandb PROJECT`: offline W&B runs written by the in-process loop and by
the Ray driver, read back from the run's transaction log (.wandb) and its table file.

No network: every test runs with WANDB_MODE=offline, as a user without a W&B account would.
"""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from latentmas_ray.cli import main
from latentmas_ray.spec.flags import build_run_config
from latentmas_ray.cli import build_parser
from latentmas_ray.spec.identity import run_id
from latentmas_ray.store.run_store import RunStore

wandb = pytest.importorskip("wandb")
from wandb.proto import wandb_internal_pb2  # noqa: E402

N = 5          # samples; with --generate_bs 2: batches of 2, 2 and 1


def tiny_run(model_dir: str, out: Path, *extra: str, n: int = N) -> list[str]:
    return ["run", "--model_name", model_dir, "--dtype", "float32", "--device", "cpu",
            "--task", "arc_easy", "--max_samples", str(n), "--generate_bs", "2",
            "--latent_steps", "2", "--max_new_tokens", "8", "--temperature", "0",
            "--output", str(out), *extra]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


# ----- reading an offline run ------------------------------------------------------------------

def wandb_records(path: Path):
    """The protobuf records of a .wandb file: a 7-byte header (":W&B", magic, version), then
    LevelDB-log framing: 32 KiB blocks of [crc32 u32, length u16, type u8, data] chunks."""
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, buf = 32768, 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:            # a block's tail too short for a header: padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):       # a record still being written
            return
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 0:
            continue
        buf = chunk if kind in (1, 2) else buf + chunk     # FULL/FIRST start, MIDDLE/LAST add
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(buf)
            yield record


def flat_items(items) -> dict:
    """History or summary items as {"a/b": value}: wandb sends a nested value either as
    nested_key ["samples_table", "path"] or as key "samples_table" with a JSON object."""
    out: dict = {}

    def put(key: str, value) -> None:
        out[key] = value
        if isinstance(value, dict):
            for k, v in value.items():
                put(f"{key}/{k}", v)

    for i in items:
        put(i.key or "/".join(i.nested_key), json.loads(i.value_json))
    return out


def read_offline_run(folder: Path) -> dict:
    """run (project, name, group, config), history rows and the final summary of the one
    offline run under folder/wandb/, plus its per-sample table."""
    runs = sorted((folder / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one W&B run, found {runs}"
    (log,) = runs[0].glob("run-*.wandb")
    # wandb's service process (shared by the whole pytest process) may still be writing the
    # log's last records after run.finish() returned, on a busy machine: wait for its exit record
    deadline = time.monotonic() + 60
    while not any(r.WhichOneof("record_type") == "exit" for r in wandb_records(log)):
        assert time.monotonic() < deadline, f"{log} has no exit record after 60 s"
        time.sleep(0.5)
    out: dict = {"history": [], "summary": {}, "config": {}, "exit": None}
    for r in wandb_records(log):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out.update(project=r.run.project, name=r.run.display_name, group=r.run.run_group)
            out["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            out["history"].append(flat_items(r.history.item))
        elif kind == "summary":
            out["summary"].update(flat_items(r.summary.update))
        elif kind == "exit":
            out["exit"] = r.exit.exit_code
    table_file = out["summary"]["samples_table/path"]
    out["table"] = json.loads((runs[0] / "files" / table_file).read_text())
    return out


def check_run(folder: Path, *, n: int, batches: list[int]) -> dict:
    """What every logged run must hold, checked against the run folder's own files."""
    w = read_offline_run(folder)
    summary = json.loads((folder / "summary.json").read_text())
    rows = RunStore(folder).read().to_pylist()
    assert w["exit"] == 0
    # the config: the run's own config.json, sections nested as they are there
    assert w["config"]["task"] == "arc_easy" and w["config"]["max_samples"] == n
    assert w["config"]["method"]["latent_steps"] == 2
    assert w["config"]["output"] == str(folder)
    # while it ran: one history row per batch, samples done as the x axis
    history = [h for h in w["history"] if "accuracy" in h]
    assert [h["samples"] for h in history] == batches
    assert history[-1]["accuracy"] == pytest.approx(summary["accuracy"])
    assert history[-1]["generated_tokens_per_sample"] == pytest.approx(
        summary["mean_generated_tokens"])
    assert all(h["samples_per_s"] > 0 for h in history)
    # the end: summary.json's numbers, and a table with one row per sample
    for key in ("accuracy", "samples", "correct", "mean_generated_tokens", "errors"):
        assert w["summary"][key] == pytest.approx(summary[key]), key
    assert w["summary"]["samples"] == n
    table = w["table"]
    assert table["columns"][:2] == ["id", "correct"] and len(table["data"]) == n
    by_id = {r["id"]: r for r in rows}
    for line in table["data"]:
        cells = dict(zip(table["columns"], line))
        row = by_id[cells["id"]]
        for col in ("correct", "prediction", "generated_tokens", "latent_steps"):
            assert cells[col] == row[col], (cells["id"], col)
    assert {line[0] for line in table["data"]} == set(by_id)
    return w


# ----- in process --------------------------------------------------------------------------------

def test_offline_run_in_process(tiny_model_dir, tmp_path, offline):
    out = tmp_path / "run"
    assert main(tiny_run(tiny_model_dir, out, "--wandb", "latentmas-test", "--wandb_run_name",
                         "tiny", "--wandb_group", "g1")) == 0
    w = check_run(out, n=N, batches=[2, 4, 5])
    assert (w["project"], w["name"], w["group"]) == ("latentmas-test", "tiny", "g1")


def test_resumed_run_counts_earlier_samples(tiny_model_dir, tmp_path, offline, monkeypatch):
    out = tmp_path / "run"
    assert main(tiny_run(tiny_model_dir, out, n=3)) == 0            # no W&B the first time
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))           # $WANDB_DIR wins
    assert main(tiny_run(tiny_model_dir, out, "--wandb", "p", n=N)) == 0
    assert not (out / "wandb").exists()
    w = read_offline_run(tmp_path / "wb")
    summary = json.loads((out / "summary.json").read_text())
    # the running numbers start from the 3 samples done before: this session ran 2
    (last,) = [h for h in w["history"] if "accuracy" in h]
    assert last["samples"] == N and last["accuracy"] == pytest.approx(summary["accuracy"])
    assert w["name"] == "run"                                       # default: the folder name
    assert w["summary"]["samples"] == N and len(w["table"]["data"]) == N


# ----- on Ray: the driver logs, actors never do -------------------------------------------------

@pytest.mark.ray
def test_offline_run_on_ray(tiny_model_dir, tmp_path, offline):
    pytest.importorskip("ray")
    out = tmp_path / "run"
    assert main(tiny_run(tiny_model_dir, out, "--ray", "--replicas", "1", "--torch_threads",
                         "1", "--wandb", "latentmas-test")) == 0
    w = check_run(out, n=N, batches=[2, 4, 5])
    assert w["config"]["execution"]["ray"] is True and w["project"] == "latentmas-test"


# ----- bad input, one line each ----------------------------------------------------------------

def test_missing_wandb_is_one_line_before_anything_is_written(tiny_model_dir, tmp_path,
                                                              monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)      # `import wandb` raises ImportError
    out = tmp_path / "run"
    assert main(tiny_run(tiny_model_dir, out, "--wandb", "p")) == 2
    err = capsys.readouterr().err
    assert "--wandb needs the wandb package: pip install latentmas-ray[wandb]" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["--wandb_group", "g"], "--wandb_run_name and --wandb_group need --wandb PROJECT"),
    (["--wandb_run_name", "n"], "--wandb_run_name and --wandb_group need --wandb PROJECT"),
    (["--wandb", " "], "--wandb needs a project name"),
])
def test_wandb_flag_combinations(argv, message, tmp_path, capsys):
    assert main(["run", "--output", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_wandb_is_how_a_run_is_watched_not_what_it_is():
    parser = build_parser()
    plain = build_run_config(parser.parse_args(["run", "--task", "gsm8k"]))
    logged = build_run_config(parser.parse_args(["run", "--task", "gsm8k", "--wandb", "p",
                                                 "--wandb-run-name", "n", "--wandb_group", "g"]))
    assert (logged.execution.wandb, logged.execution.wandb_run_name,
            logged.execution.wandb_group) == ("p", "n", "g")
    assert run_id(plain.to_dict()) == run_id(logged.to_dict())   # same folder: it resumes
