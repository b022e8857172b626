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
    return p


def default_output(runs) -> Path:
    if len(runs) == 1:
        return runs[0].path
    return runs[0].path.parent / f"report-{runs[0].task}"


def run_report(args, console) -> int:
    from ..atomic import atomic_write_text
    from ..report import build_report, load_runs
    from ..report.tables import print_rich, to_markdown

    if args.resamples < 100:
        raise ConfigError(f"--resamples must be >= 100, got {args.resamples}")
    runs = load_runs(args.runs)
    out = Path(args.output) if args.output else default_output(runs)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file; pass a folder")
    rep = build_report(runs, resamples=args.resamples, seed=args.seed)
    out.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            console.print("[yellow]warning:[/] matplotlib is not installed, so no plots "
                          "(pip install matplotlib)", highlight=False)
        else:
            from ..report.plots import write_plots
            plots = write_plots(rep, out)
    atomic_write_text(out / "report.md", to_markdown(rep, plots))
    print_rich(rep, console)
    written = ", ".join(["report.md"] + plots)
    console.print(f"wrote {written} to {out}", highlight=False)
    return 0
