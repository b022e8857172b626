"""`latentmas-ray sweep`: a grid of method settings on one model load, the best chosen on a dev
split and every point reported on test. The work is jobs/sweep.py's, the same code
`ray job submit ... -- python -m jobs.sweep` runs, so both take the same flags."""

from __future__ import annotations

import argparse


def add_sweep_parser(sub) -> None:
    from jobs.sweep import DESCRIPTION, add_sweep_arguments

    p = sub.add_parser("sweep", help="evaluate a grid of method settings and choose one",
                       description=DESCRIPTION)
    add_sweep_arguments(p)


def run_sweep(args: argparse.Namespace, console) -> int:
    from jobs.sweep import run_from_args

    return run_from_args(args, console)
