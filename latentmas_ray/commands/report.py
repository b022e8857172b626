"""`latentmas-ray report RUN_DIR [RUN_DIR ...]`: compare runs of one task.

Writes `report.md` and three PNG plots into the output folder and prints the main tables. It
reads whatever samples the runs have finished, so it also works as a progress report on a job
that is still running.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError

_DESCRIPTION = ("Compare runs of one task: accuracy with bootstrap intervals, tokens and time per "
                "sample, LatentMAS's token reduction and speed-up, paired tests on shared "
                "samples, and the paper's published numbers where model and task match.")


def add_report_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("report", help="compare runs: tables, plots, paired tests",
                       description=_DESCRIPTION)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by `run`")
    p.add_argument("--output", default=None,
                   help="folder for report.md and the plots (default: the run folder for one run, "
                        "report-<task>/ beside the first run folder for several)")
    p.add_argument("--resamples", type=int, default=10_000,
                   help="bootstrap resamples (default 10000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--no_plots", "--no-plots", dest="no_plots", action="store_true",
                   help="write report.md only")
    p.add_argument("--brief", action="store_true",
                   help="print only the accuracy-and-cost and LatentMAS tables (report.md still "
                        "holds every table)")
    return p


def default_output(runs) -> Path:
    if len(runs) == 1:
        return runs[0].path
    return runs[0].path.parent / f"report-{runs[0].task}"


def run_report(args, console) -> int:
    return write_report(args.runs, args.output, console, resamples=args.resamples,
                        seed=args.seed, plots=not args.no_plots, brief=args.brief)


def write_report(folders, output, console, *, resamples: int = 10_000, seed: int = 0,
                 plots: bool = True, brief: bool = False) -> int:
    """report.md and the plots of the runs in `folders` into `output` (None: the default
    place); prints the tables and the path of every file written."""
    from latentmas_ray.store.atomic import atomic_write_text
    from ..report import build_report, load_runs
    from ..report.tables import print_rich, to_markdown

    if resamples < 100:
        raise ConfigError(f"--resamples must be >= 100, got {resamples}")
    runs = load_runs(folders)
    out = Path(output) if output else default_output(runs)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file; pass a folder")
    rep = build_report(runs, resamples=resamples, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    if plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            console.print("[yellow]warning:[/] matplotlib is not installed, so no plots "
                          "(pip install matplotlib)", highlight=False)
        else:
            from ..report.plots import write_plots
            written = write_plots(rep, out)
    atomic_write_text(out / "report.md", to_markdown(rep, written))
    print_rich(rep, console, brief=brief)
    console.print("wrote", highlight=False)
    for name in ["report.md"] + written:      # one path a line: to open or to paste
        console.print(f"  {out / name}", highlight=False, soft_wrap=True)
    return 0
