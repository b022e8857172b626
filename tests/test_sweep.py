"""Sweeps without Ray: the grid (parsing, refusals, identity merging), the dev/test split, the
selection, and an in-process sweep on the tiny model (one model load, each point's rows equal
the point run alone, a killed sweep resumes with nothing recomputed, the chosen point is the
dev winner reported on test). The Ray fleet is tests/test_sweep_ray.py."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from latentmas_ray.errors import ConfigError
from latentmas_ray.report.selection import PointRows, select, split_ids
from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
from latentmas_ray.spec.grid import expand, parse_grid
from latentmas_ray.spec.identity import run_id
from latentmas_ray.store.run_store import RunStore

N = 6
TIMING = {"seconds"}
GRID = ["method=baseline,latent_mas", "latent_steps=1,2", "latent_space_realign=false,true"]


def base_cfg(model_dir: str, out: Path | None = None, bs: int = 2) -> RunConfig:
    return RunConfig(task="arc_easy", max_samples=N, generate_bs=bs,
                     output=str(out) if out else None,
                     model=ModelConfig(name_or_path=model_dir, dtype="float32", device="cpu"),
                     method=MethodConfig(max_new_tokens=8, temperature=0))


def comparable(row: dict) -> dict:
    out = {k: v for k, v in row.items() if k not in TIMING}
    out["agents"] = [{k: v for k, v in a.items() if k not in TIMING} for a in row["agents"] or []]
    return out


# ----- the grid ---------------------------------------------------------------------------------

def test_grid_values_are_typed_from_the_field():
    axes = parse_grid(["latent_steps=0, 10,20", "latent_space_realign=false,true",
                       "temperature=0,0.6", "memory=full,last_agent", "method=baseline,latent_mas",
                       "top_k=none,20", "memory_layers=0,1;2"])
    assert axes == [("latent_steps", [0, 10, 20]), ("latent_space_realign", [False, True]),
                    ("temperature", [0.0, 0.6]), ("memory", ["full", "last_agent"]),
                    ("method", ["baseline", "latent_mas"]), ("top_k", [None, 20]),
                    ("memory_layers", ["0,1", "2"])]


@pytest.mark.parametrize("item, message", [
    ("latent_stepz=1,2", "--grid latent_stepz: not a method field"),
    ("generate_bs=1,2", "--grid generate_bs: not a method field"),
    ("task=gsm8k,arc_easy", "--grid task: not a method field"),
    ("latent_steps=1,two", "--grid latent_steps: 'two' is not an int"),
    ("latent_space_realign=maybe", "is not a boolean"),
    ("method=baseline,latentmas", "'latentmas' is not one of baseline, text_mas, latent_mas"),
    ("latent_steps=", "no values"),
    ("latent_steps", "write FIELD=V1,V2"),
    ("latent_steps=1,1", "listed twice"),
])
def test_bad_grid_is_one_line(item, message):
    with pytest.raises(ConfigError, match=message) as e:
        parse_grid([item])
    assert "\n" not in str(e.value)


def test_a_combination_the_spec_refuses_names_the_point():
    with pytest.raises(ConfigError, match=r"grid point memory=layers: --memory layers goes with "):
        expand(RunConfig(), parse_grid(["memory=full,layers"]), run_id)
    with pytest.raises(ConfigError, match="grid point latent_steps=-1: --latent_steps must be >= 0"):
        expand(RunConfig(), parse_grid(["latent_steps=0,-1"]), run_id)


def test_baseline_under_every_latent_setting_is_one_run():
    points = expand(RunConfig(), parse_grid(GRID), run_id)
    assert len(points) == 5                            # 1 baseline + 2 x 2 LatentMAS
    (baseline,) = [p for p in points if p.cfg.method.method == "baseline"]
    assert len(baseline.settings) == 4 and baseline.label == "method=baseline"
    # ... and it is the run `latentmas-ray run --method baseline` makes (same identity)
    assert run_id(baseline.cfg.to_dict()) == run_id(RunConfig(
        method=MethodConfig(method="baseline")).to_dict())
    # TextMAS ignores realignment but not the topology
    points = expand(RunConfig(), parse_grid(["method=text_mas", "latent_space_realign=false,true",
                                             "prompt=sequential,hierarchical"]), run_id)
    assert len(points) == 2


def test_bad_grid_fails_before_any_model_load(tmp_path):
    from latentmas_ray.cli import main

    out = tmp_path / "sweep"
    # a model folder that does not exist: the grid is refused before the model is even looked up
    code = main(["sweep", "--model_name", str(tmp_path / "no-model"), "--output", str(out),
                 "--grid", "latent_steps=1,x"])
    assert code == 2 and not out.exists()


# ----- the split and the selection --------------------------------------------------------------

def test_an_empty_split_is_refused_before_any_load(tiny_model_dir, tmp_path, count_loads):
    code, log = run_sweep(tiny_model_dir, tmp_path, "--dev_fraction", "0.001")
    assert code == 2 and "leaves the dev split empty" in log and not count_loads
    assert not (tmp_path / "sweep").exists()


def test_split_is_fixed_by_id_and_seed_and_disjoint():
    ids = [f"q{i}" for i in range(2000)]
    dev, test = split_ids(ids, seed=42, dev_fraction=0.3)
    assert dev.isdisjoint(test) and dev | test == set(ids)
    assert 0.25 < len(dev) / len(ids) < 0.35
    assert split_ids(list(reversed(ids)), 42, 0.3) == (dev, test)       # order does not matter
    assert split_ids(ids[:500], 42, 0.3)[0] == dev & set(ids[:500])     # a subset: same labels
    assert split_ids(ids, 43, 0.3)[0] != dev                             # the seed changes it


def rows_of(key, method, correct: dict[str, bool], tokens: float = 10.0):
    rows = [{"id": i, "sample_index": 0, "correct": c, "generated_tokens": tokens, "seconds": 0.1}
            for i, c in correct.items()]
    return PointRows.from_rows(key, key, method, [{"method": method}], rows)


def test_chosen_on_dev_reported_on_test():
    ids = [f"q{i}" for i in range(200)]
    dev, test = split_ids(ids, 0, 0.5)
    # A is perfect on dev and useless on test; B the other way round: choosing on test would
    # pick B, the honest choice is A, and A's reported accuracy is its test accuracy (0)
    a = rows_of("A", "latent_mas", {i: i in dev for i in ids})
    b = rows_of("B", "latent_mas", {i: i in test for i in ids})
    base = rows_of("base", "baseline", {i: False for i in ids})
    sel = select([b, base, a], dev, test)
    assert sel.chosen.key == "A" and sel.runner_up.key in ("B", "base")
    assert sel.dev["A"].accuracy == 1.0 and sel.test["A"].accuracy == 0.0
    assert sel.test["B"].accuracy == 1.0 and sel.test["A"].n == len(test)
    assert sel.vs_baseline is not None and sel.vs_baseline.shared == len(test)


def test_ties_go_to_fewer_tokens_and_noise_is_said():
    ids = [f"q{i}" for i in range(40)]
    dev, test = split_ids(ids, 0, 0.5)
    same = {i: int(i[1:]) % 2 == 0 for i in ids}
    long = rows_of("long", "latent_mas", same, tokens=50)
    short = rows_of("short", "latent_mas", same, tokens=20)
    sel = select([long, short], dev, test)
    assert sel.chosen.key == "short"
    assert "within noise" in sel.noise and "tie" in sel.noise
    # a clear winner: right on everything against wrong on everything
    good = rows_of("good", "latent_mas", {i: True for i in ids})
    bad = rows_of("bad", "latent_mas", {i: False for i in ids})
    sel = select([bad, good], dev, test)
    assert sel.chosen.key == "good" and "beats the runner-up" in sel.noise


# ----- an in-process sweep on the tiny model ----------------------------------------------------

def run_sweep(model_dir, folder: Path, *extra: str) -> tuple[int, str]:
    from latentmas_ray.cli import build_parser

    buf = io.StringIO()
    args = build_parser().parse_args([
        "sweep", "--model_name", model_dir, "--dtype", "float32", "--device", "cpu",
        "--task", "arc_easy", "--max_samples", str(N), "--generate_bs", "2",
        "--max_new_tokens", "8", "--temperature", "0", "--torch_threads", "1",
        "--output", str(folder / "sweep"), *[a for g in GRID for a in ("--grid", g)], *extra])
    console = Console(file=buf, width=200)
    return execute_with(args, console), buf.getvalue()


def execute_with(args, console) -> int:
    from jobs.sweep import run_from_args
    from latentmas_ray.errors import exit_status

    return exit_status(lambda: run_from_args(args, console), console)


def part_ids(folder: Path) -> list[str]:
    return [i for f in sorted((folder / "parts").glob("part-*.parquet"))
            for i in pq.read_table(f).column("id").to_pylist()]


@pytest.fixture
def count_loads(monkeypatch):
    from latentmas_ray.engines.hf import HFEngine

    loads = []
    original = HFEngine.load.__func__

    def load(cls, *a, **kw):
        loads.append(a)
        return original(cls, *a, **kw)
    monkeypatch.setattr(HFEngine, "load", classmethod(load))
    return loads


def test_in_process_sweep(tiny_model_dir, tmp_path, count_loads, monkeypatch):
    import torch

    from latentmas_ray.run import sweep as run_sweep_mod
    from latentmas_ray.run.batch import Evaluator
    from latentmas_ray.tasks.registry import load_task

    # 1. killed after its third batch (an exception out of the loop, as a Ctrl-C)
    calls = []
    real_run = Evaluator.run

    def dying_run(self, samples):
        calls.append(len(samples))
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_run(self, samples)
    monkeypatch.setattr(run_sweep_mod.Evaluator, "run", dying_run)
    code, log = run_sweep(tiny_model_dir, tmp_path)
    assert code != 0 and len(calls) == 4, log
    assert len(count_loads) == 1
    sweep = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    folders = [Path(p["path"]) for p in sweep["points"]]
    assert len(folders) == 5                                # the baseline once
    before = {f: part_ids(f) for f in folders}
    assert sum(map(len, before.values())) == 6              # three batches of two

    # 2. rerun: every point finishes, nothing is recomputed, still one load in this session
    monkeypatch.setattr(run_sweep_mod.Evaluator, "run", real_run)
    count_loads.clear()
    code, log = run_sweep(tiny_model_dir, tmp_path)
    assert code == 0, log
    assert len(count_loads) == 1
    task = load_task("arc_easy", max_samples=N)
    for f in folders:
        after = part_ids(f)
        assert sorted(after) == sorted(s.id for s in task.samples), f      # each once
        assert after[:len(before[f])] == before[f]                         # untouched
        assert (tmp_path / "sweep" / "points" / f.name).resolve() == f.resolve()

    # 3. each point's rows are the point run alone (one batch of all samples, own engine)
    torch.set_num_threads(1)
    for p in sweep["points"]:
        cfg = RunConfig.from_dict(json.loads((Path(p["path"]) / "config.json").read_text())["run"])
        alone = {r["id"]: comparable(r) for r in Evaluator(cfg, tiny_model_dir).run(task.samples)}
        got = {r["id"]: comparable(r) for r in RunStore(p["path"]).read().to_pylist()}
        assert got == alone, p["run"]

    # 4. the chosen point is the dev winner, its numbers are on test
    chosen = json.loads((tmp_path / "sweep" / "selection.json").read_text())
    dev, test = split_ids([s.id for s in task.samples], 42, 0.5)
    acc = {}
    for p in sweep["points"]:
        rows = RunStore(p["path"]).read().to_pylist()
        acc[p["run"]] = (sum(r["correct"] for r in rows if r["id"] in dev),
                         -sum(r["generated_tokens"] for r in rows if r["id"] in dev))
    best = max(acc.values())
    first_best = next(p["run"] for p in sweep["points"] if acc[p["run"]] == best)
    assert chosen["chosen"] == first_best
    assert chosen["ranking"][0]["test"]["n"] == len(test)
    report = (tmp_path / "sweep" / "report.md").read_text()
    assert "**Chosen setting:" in report and "curve-latent_steps.png" in report
    for axis in ("method", "latent_steps", "latent_space_realign"):
        assert (tmp_path / "sweep" / f"curve-{axis}.png").stat().st_size > 1000

    # 5. a point is an ordinary run: it reports and exports as any run does ...
    from latentmas_ray.cli import main
    assert main(["report", *map(str, folders), "--output", str(tmp_path / "report"),
                 "--no_plots"]) == 0
    assert "LatentMAS" in (tmp_path / "report" / "report.md").read_text()
    assert main(["export", str(folders[0]), "--to", str(tmp_path / "export")]) == 0
    # ... and `latentmas-ray run` with its settings resumes its folder: `latentmas-ray run` with its settings resumes its folder
    from latentmas_ray.cli import main
    base_run = next(Path(p["path"]) for p in sweep["points"] if "baseline" in p["run"])
    parts = part_ids(base_run)
    assert main(["run", "--model_name", tiny_model_dir, "--dtype", "float32", "--device", "cpu",
                 "--task", "arc_easy", "--max_samples", str(N), "--max_new_tokens", "8",
                 "--temperature", "0", "--method", "baseline", "--output", str(base_run)]) == 0
    assert part_ids(base_run) == parts                   # found finished: nothing recomputed


def test_curves_one_line_per_other_setting_and_the_baseline_once():
    from latentmas_ray.report.sweep import axis_curves

    axes = parse_grid(GRID)
    points = expand(RunConfig(), axes, run_id)
    ids = [f"q{i}" for i in range(10)]
    rows = [PointRows.from_rows(run_id(p.cfg.to_dict()), p.label, p.cfg.method.method, p.settings,
                                [{"id": i, "sample_index": 0, "correct": True,
                                  "generated_tokens": 1, "seconds": 0.1} for i in ids])
            for p in points]
    dev, test = split_ids(ids, 0, 0.5)
    sel = select(rows, dev, test)
    curves = axis_curves(sel, axes, 1)                   # against latent_steps
    legends = [c[0] for c in curves]
    assert legends == ["method=baseline",
                       "method=latent_mas latent_space_realign=False",
                       "method=latent_mas latent_space_realign=True"]
    assert [c[1] for c in curves] == [[1, 2]] * 3
    assert len(set(curves[0][2])) == 1                   # the baseline: one run at every x
    assert len(set(curves[1][2])) == 2
