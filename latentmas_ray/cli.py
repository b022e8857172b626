"""`latentmas-ray`: run, sweep, score, report, inspect, export, and the demo (the main job).

Flag names follow the reference's run.py (`--max_new_tokens`, `--latent_steps`, ...); the dashed
spelling (`--max-new-tokens`) is accepted for every flag. Errors a user can fix are printed as
one line, `error: ...`, with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import exit_status
from latentmas_ray.spec.parser import Parser


def _score_parser(sub) -> None:
    p = sub.add_parser("score", help="score saved completions against a task",
                       description="Score JSONL rows {\"id\": ..., \"completion\": \"...\"} against "
                                   "a task; prints 'N passed, M failed'.")
    from .tasks.registry import TASKS
    p.add("--task", required=True, metavar="TASK", help=", ".join(TASKS))
    p.add("--data", default=None, help="local data file (default: the shipped demo sample where "
          "the task has one, else the hub dataset the reference uses; 'hub' forces the hub)")
    p.add("--predictions", required=True, help="JSONL with id and completion per row")
    p.add("--output", default=None, help="write one result row per id to this JSONL file")
    p.add("--scoring", default="standard", choices=["standard", "reference"],
          help="standard (default) or the reference's exact string match")
    p.add("--on_bad_row", default="error", choices=["error", "skip"],
          help="stop at the first malformed row (default) or record it and go on")
    p.add("--seed", type=int, default=42, help="run seed (fixes GPQA's option order)")
    p.add("--workers", type=int, default=None, help="parallel sandboxes for code (default: cores)")
    p.add("--sandbox_level", default="standard", choices=["strict", "standard", "rlimits-only"],
          help="code: the isolation the sandbox must give, or scoring refuses: strict, standard "
          "(default) or rlimits-only (see `latentmas-ray run --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="latentmas-ray", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    _score_parser(sub)
    from .commands.inspect import add_inspect_parser
    from .commands.demo import add_demo_parser
    from .commands.export import add_export_parser
    from .commands.report import add_report_parser
    from .commands.run import add_run_parser
    from .commands.sweep import add_sweep_parser
    add_run_parser(sub)
    add_sweep_parser(sub)
    add_report_parser(sub)
    add_inspect_parser(sub)
    add_export_parser(sub)
    add_demo_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from latentmas_ray.run.progress import quiet_library_bars

    quiet_library_bars()
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    """Run a parsed command; a LatentMASError becomes one `error:` line and exit status 2."""
    from rich.console import Console

    console = Console(stderr=True)

    def command() -> int:
        if args.command == "score":
            from .commands.score import run_score
            return run_score(args, console)
        if args.command == "run":
            from .commands.run import run_run
            return run_run(args, console)
        if args.command == "sweep":
            from .commands.sweep import run_sweep
            return run_sweep(args, console)
        if args.command == "inspect":
            from .commands.inspect import run_inspect
            return run_inspect(args, console)
        if args.command == "demo":
            from .commands.demo import run_demo
            return run_demo(args, console)
        if args.command == "export":
            from .commands.export import run_export
            return run_export(args, console)
        from .commands.report import run_report
        return run_report(args, console)

    return exit_status(command, console)


if __name__ == "__main__":
    sys.exit(main())
