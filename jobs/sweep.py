"""A sweep from start to end: what `latentmas-ray sweep` and `ray job submit ... -- python -m
jobs.sweep` execute.

    python -m jobs.sweep [run flags] --grid latent_steps=0,10,20 --grid method=baseline,latent_mas \
        --select_on dev --dev_fraction 0.3         (--ray is implied)

1. Before anything loads: the grid is parsed and expanded (a bad field, value or combination
   is one `error:` line), points that are the same run merged (latentmas_ray/spec/grid.py),
   and the run checks of `latentmas-ray run` made (task, data, model, Ray address, ...).
2. Every point is an ordinary run folder, named by its own identity (results/<run id>, or
   --runs_dir): it resumes, reports and exports like any run, and a later `latentmas-ray run`
   with the same settings finds it. The sweep folder (--output, default
   results/sweep-<task>-<model>-<hash>) holds sweep.json (the grid and its points),
   points/<run id> links, the selection (selection.json), report.md and one curve PNG per axis.
3. The pending samples of every point run on one model load: in this process
   (latentmas_ray/run/sweep.py) or on one Ray fleet whose replicas each load the model once
   (jobs/sweep_ray.py). A killed sweep resumes every point from its store.
4. Each point's summary is written; the best point is chosen on the dev split and every point
   is reported on test (latentmas_ray/report/selection.py, report/sweep.py); --wandb logs the
   table and the curves.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from jobs.evaluate import check_before_start
from jobs.sweep_ray import run_sweep_on_ray     # a module global, so a test can wrap it
from latentmas_ray.errors import ConfigError
from latentmas_ray.spec.config import RunConfig

DESCRIPTION = ("Evaluate a grid of method settings (--grid FIELD=V1,V2,..., repeatable) on one "
               "model load per replica; choose the best on a dev split, report every point on "
               "test. Takes every flag of `latentmas-ray run`; --output is the sweep folder.")


def add_sweep_arguments(p) -> None:
    from latentmas_ray.spec.flags import add_run_arguments

    add_run_arguments(p)
    p.add("--grid", action="append", default=None, metavar="FIELD=V1,V2,...",
          help="a method field and its values (repeatable; the points are every combination), "
               "e.g. --grid latent_steps=0,10,20 --grid latent_space_realign=false,true "
               "--grid method=baseline,latent_mas; separate values with ';' when one holds commas "
               "(--grid 'memory_layers=0,1;2,3')")
    p.add("--select_on", default="dev", choices=["dev", "all"],
          help="dev (default): choose on a dev split and report on the rest; all: choose and "
               "report on every sample (optimistic, said so in the report)")
    # 0.5: half to choose, half to report; small tasks (AIME: 30) are noisy either way, and
    # the report says when the top points are within noise
    p.add("--dev_fraction", type=float, default=0.5,
          help="share of the samples in the dev split (default 0.5), by a hash of the sample id "
               "and --seed: the same split for every point and every rerun")
    p.add("--runs_dir", default=None,
          help="where the points' run folders go (default: the sweep folder's parent, results/)")


def check_sweep(base: RunConfig, select_on: str, dev_fraction: float) -> None:
    """What a sweep does not support, refused in one line before anything starts."""
    if base.use_vllm:
        raise ConfigError("sweep runs every point on HF engines for now (one engine shared by "
                          "every point); drop --use_vllm, or run the vLLM points with "
                          "`latentmas-ray run`")
    if base.execution.disaggregated:
        raise ConfigError("sweep runs colocated replicas (--placement colocated); "
                          "--placement disaggregated is not supported")
    if base.execution.autoscale:
        raise ConfigError("sweep does not ask an autoscaler for nodes yet; start the nodes first "
                          "and drop --autoscale")
    if select_on == "dev" and not 0 < dev_fraction < 1:
        raise ConfigError(f"--dev_fraction must be in (0, 1), got {dev_fraction}")


def check_split(task, seed: int, select_on: str, dev_fraction: float) -> None:
    """Both splits hold samples (a tiny --max_samples with an extreme fraction may not)."""
    from latentmas_ray.report.selection import split_ids

    if select_on != "dev":
        return
    dev, test = split_ids([s.id for s in task.samples], seed, dev_fraction)
    if not dev or not test:
        raise ConfigError(f"--dev_fraction {dev_fraction} of {len(task.samples)} samples leaves the "
                          f"{'dev' if not dev else 'test'} split empty; use more samples or "
                          "another fraction (or --select_on all)")


def open_sweep(folder: Path, record: dict[str, Any]) -> None:
    """Create the sweep folder, or check that it holds this sweep; link the points."""
    from latentmas_ray.store.atomic import atomic_write_text

    path = folder / "sweep.json"
    if path.exists():
        old = json.loads(path.read_text())
        if sorted(p["run"] for p in old["points"]) != sorted(p["run"] for p in record["points"]):
            raise ConfigError(f"sweep folder {folder} holds a different sweep (other points); "
                              "use another --output, or the same settings to resume it")
    elif folder.exists() and any(folder.iterdir()):
        raise ConfigError(f"sweep folder {folder} is not empty and holds no sweep; choose "
                          "another --output")
    links = folder / "points"
    links.mkdir(parents=True, exist_ok=True)
    for p in record["points"]:
        link = links / p["run"]
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(p["path"], links), target_is_directory=True)
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")


def prepare(base: RunConfig, axes, runs_dir: str | None, console):
    """Checks, the task, the points' stores: everything before the model loads."""
    from latentmas_ray.prompts import load_prompt_file
    from latentmas_ray.spec.grid import expand, grid_id
    from latentmas_ray.spec.models import check_agent_models, resolve_model
    from latentmas_ray.spec.identity import run_id
    from latentmas_ray.tasks.registry import load_task

    points = expand(base, axes, run_id)
    check_before_start(base)
    prompts = load_prompt_file(base.prompt_file)
    task = load_task(base.task, base.data, seed=base.seed, on_bad_row=base.on_bad_row,
                     max_samples=base.max_samples)
    model_path = resolve_model(base.model.name_or_path)
    for p in points:
        check_agent_models(p.cfg, model_path)
    keys = [run_id(p.cfg.to_dict()) for p in points]
    folder = Path(base.output or Path("results") / grid_id(base, axes, keys))
    runs = Path(runs_dir) if runs_dir else folder.parent
    for p, key in zip(points, keys):
        p.cfg.output = str(runs / key)
    return points, keys, task, model_path, prompts, folder


def open_points(points, keys, task) -> list:
    """Each point's run folder opened (created, or checked to hold that run) and its pending
    samples: those its store does not hold yet."""
    from latentmas_ray.run.sweep import PointWork
    from latentmas_ray.store.run_store import RunStore

    works = []
    for p, key in zip(points, keys):
        store = RunStore(p.cfg.output)
        store.open(p.cfg.to_dict())
        done = store.done_ids()
        pending = [s for s in task.samples if s.id not in done]
        works.append(PointWork(key, p.cfg, store, pending, len(task.samples) - len(pending),
                               len(task.samples)))
    return works


def finish_point(w, task, model_path, wall: float | None) -> dict[str, Any]:
    """Consolidate a point's folder and write its summary.json, as a run's end does."""
    w.store.consolidate(order=[s.id for s in task.samples], read_back=False)
    ex = w.cfg.execution
    summary = {"task": w.cfg.task, "method": w.cfg.method.method, "model": str(model_path),
               "data": task.source, "replicas": ex.replicas if ex.ray else 1,
               **w.store.summary(wall)}
    w.store.write_summary(summary)
    return summary


def choose(points, works, task, base: RunConfig, select_on: str, dev_fraction: float):
    """The selection over the finished points (dev split by sample id and --seed)."""
    from latentmas_ray.report.selection import PointRows, select, split_ids

    cols = ["id", "sample_index", "correct", "generated_tokens", "seconds"]
    rows = [PointRows.from_rows(w.key, p.label, w.cfg.method.method, p.settings,
                                w.store.read().select(cols).to_pylist())
            for p, w in zip(points, works)]
    dev, test = split_ids([s.id for s in task.samples], base.seed, dev_fraction)
    return select(rows, dev, test, select_on=select_on, seed=0)


def selection_record(sel) -> dict[str, Any]:
    def stats(s):
        return None if s is None else {"n": s.n, "accuracy": s.accuracy, "accuracy_ci": s.acc_ci,
                                       "generated_tokens": s.tokens, "seconds": s.seconds}
    pair = lambda p: None if p is None else {"diff": p.diff, "ci": p.ci, "p_value": p.p_value,
                                             "shared": p.shared, "significant": p.significant}
    return {"chosen": sel.chosen.key, "chosen_setting": sel.chosen.settings[0],
            "select_on": sel.select_on, "n_dev": sel.n_dev, "n_test": sel.n_test,
            "ranking": [{"run": p.key, "setting": p.settings[0], "dev": stats(sel.dev[p.key]),
                         "test": stats(sel.test[p.key])} for p in sel.points],
            "vs_runner_up": pair(sel.vs_runner_up), "vs_baseline": pair(sel.vs_baseline),
            "noise": sel.noise}


def sweep(base: RunConfig, axes, console, *, select_on: str = "dev", dev_fraction: float = 0.5,
          runs_dir: str | None = None) -> int:
    """Run the grid to the end (resuming what the points' folders hold); write the report."""
    from latentmas_ray.store.atomic import atomic_write_text

    check_sweep(base, select_on, dev_fraction)
    points, keys, task, model_path, prompts, folder = prepare(base, axes, runs_dir, console)
    record = {"format": 1, "task": base.task, "grid": [[n, v] for n, v in axes],
              "select_on": select_on, "dev_fraction": dev_fraction, "seed": base.seed,
              "base": base.to_dict(),
              "points": [{"run": k, "path": str(Path(p.cfg.output).resolve()),
                          "settings": p.settings} for p, k in zip(points, keys)]}
    check_split(task, base.seed, select_on, dev_fraction)
    open_sweep(folder, record)
    works = open_points(points, keys, task)
    merged = sum(len(p.settings) for p in points) - len(points)
    console.print(f"sweep of {len(points)} runs on {base.task} ({task.source}), "
                  f"{len(task.samples)} samples each" + (f"; {merged} grid settings are the "
                  "same run as another and run once" if merged else "") + f"; sweep in "
                  f"{folder.resolve()}", highlight=False)
    for n, (p, w) in enumerate(zip(points, works), 1):
        console.print(f"  point {n}/{len(points)} {p.label}: {w.done}/{w.total} done -> "
                      f"{w.cfg.output}", highlight=False)
    if base.execution.ray:
        wall = run_sweep_on_ray(base, works, model_path, prompts, console=console,
                                progress_path=folder / "progress.json")
        walls = {w.key: None for w in works}
    else:
        from latentmas_ray.run.sweep import run_sweep_in_process
        walls = run_sweep_in_process(base, works, model_path, prompts, console)
        wall = sum(walls.values())
    for w in works:
        finish_point(w, task, model_path, walls.get(w.key))
    sel = choose(points, works, task, base, select_on, dev_fraction)
    atomic_write_text(folder / "selection.json",
                      json.dumps({**selection_record(sel), "wall_seconds": wall}, indent=2,
                                 default=str) + "\n")
    from latentmas_ray.report.sweep import write_sweep_report
    report, plots = write_sweep_report(folder, sel, axes, f"{base.task}",
                                       {"dev_fraction": dev_fraction, "seed": base.seed})
    if base.execution.wandb:
        log_to_wandb(base, folder, sel, plots)
    t = sel.test[sel.chosen.key]
    console.print(f"chosen: {sel.chosen.label} ({sel.chosen.key})"
                  + (f", test accuracy {t.accuracy:.1%} on {t.n} samples" if t else ""),
                  highlight=False)
    console.print(sel.noise, highlight=False)
    console.print(f"report: {report}", highlight=False)
    return 0


def log_to_wandb(base: RunConfig, folder: Path, sel, plots: list[str]) -> None:
    """The points table, the chosen setting and the curves, as one W&B run of the sweep."""
    from latentmas_ray.run.observe import require_wandb

    wandb = require_wandb()
    ex = base.execution
    run = wandb.init(project=ex.wandb, name=ex.wandb_run_name or folder.name, group=ex.wandb_group,
                     job_type="sweep", dir=os.environ.get("WANDB_DIR") or str(folder),
                     config=json.loads((folder / "sweep.json").read_text()),
                     settings=wandb.Settings(console="off", x_disable_stats=True, quiet=True))
    try:
        cols = ["rank", "setting", "run", "dev_accuracy", "test_accuracy", "test_tokens",
                "test_seconds"]
        data = [[i, p.label, p.key, getattr(sel.dev[p.key], "accuracy", None),
                 getattr(sel.test[p.key], "accuracy", None), getattr(sel.test[p.key], "tokens", None),
                 getattr(sel.test[p.key], "seconds", None)] for i, p in enumerate(sel.points, 1)]
        run.log({"points": wandb.Table(columns=cols, data=data),
                 **{f"curve/{Path(p).stem}": wandb.Image(str(folder / p)) for p in plots}})
        run.summary.update(selection_record(sel))
    finally:
        run.finish()


def build_parser():
    from latentmas_ray.spec.flags import Parser

    p = Parser(prog="python -m jobs.sweep", description=DESCRIPTION)
    add_sweep_arguments(p)
    p.set_defaults(command="sweep")
    return p


def run_from_args(args, console, **forced) -> int:
    """Parse the grid first (one line for a bad one), then the run flags, then sweep."""
    from latentmas_ray.spec.flags import build_run_config
    from latentmas_ray.spec.grid import parse_grid

    axes = parse_grid(args.grid)
    base = build_run_config(args, **forced)
    return sweep(base, axes, console, select_on=args.select_on, dev_fraction=args.dev_fraction,
                 runs_dir=args.runs_dir)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    from latentmas_ray.errors import exit_status

    console = Console(stderr=True)
    args = build_parser().parse_args(argv)
    return exit_status(lambda: run_from_args(args, console, ray=True), console)


if __name__ == "__main__":
    sys.exit(main())
