"""`latentmas-ray run`: evaluate one method on one task, in process or on Ray (--ray).

The flags are built from the run specification (latentmas_ray/spec/flags.py); the run itself is
jobs/evaluate.py's `evaluate`, the same code `ray job submit ... -- python -m jobs.evaluate`
runs, so both take the same flags and write the same run folder.
"""

from __future__ import annotations

import argparse

from latentmas_ray.spec.flags import RUN_USAGE, add_run_arguments, build_run_config
from latentmas_ray.tasks.registry import TASKS


def add_run_parser(sub) -> None:
    from jobs.evaluate import DESCRIPTION

    p = sub.add_parser("run", help="evaluate a method on a task", description=DESCRIPTION,
                       usage=RUN_USAGE)
    add_run_arguments(p, list(TASKS))


def run_run(args: argparse.Namespace, console) -> int:
    from jobs.evaluate import evaluate

    return evaluate(build_run_config(args), console)
