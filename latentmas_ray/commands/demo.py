"""`latentmas-ray demo`: the main job (scripts/demo.sh). Baseline, TextMAS and LatentMAS on the
same questions, then the comparison: accuracy with its interval, generated tokens and seconds
per sample, LatentMAS's token reduction and speed-up, and the paths of report.md and the plots.

    latentmas-ray demo [--output DIR] [run flags]     DIR/{baseline,text_mas,latent_mas}, DIR/report

Each method is an ordinary run (jobs/evaluate.py) in its own folder, so a second call resumes
all three (nothing is recomputed) and only redraws the report. The run flags apply to all three
runs (`--method` is the demo's to set); settings that change results need another --output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

METHODS = ("baseline", "text_mas", "latent_mas")
DEFAULT_OUTPUT = "results/demo"
# Sized so a fresh clone installs (~2 min) and runs all three in under 5 minutes on an idle
# 2-core CPU (docs/benchmarks.md "The demo": ~100 CPU-seconds for the three runs and the
# model's one-time conversion ~30 s): 8 questions, one batch each; 48 new tokens per text call
# is room for SmolLM2 to state its choice (its baseline answers average ~38 tokens); 4 latent
# steps per agent, as in the 20-question report of docs/benchmarks.md.
DEFAULTS = {"task": "arc_easy", "max_samples": 8, "generate_bs": 8, "latent_steps": 4,
            "max_new_tokens": 48, "temperature": 0.0}

_DESCRIPTION = ("The main job: baseline, TextMAS and LatentMAS on the same questions (default: "
                "8 of the shipped ARC-Easy sample with the embedded SmolLM2-135M, greedy), then "
                "their comparison. Resumable: a second call reuses every finished sample.")


def add_demo_parser(sub) -> argparse.ArgumentParser:
    from latentmas_ray.spec.flags import RUN_USAGE, add_run_arguments
    from latentmas_ray.tasks.registry import TASKS

    p = sub.add_parser("demo", help="the main job: three methods on the same questions, compared",
                       description=_DESCRIPTION, usage=RUN_USAGE)
    add_run_arguments(p, list(TASKS))
    return p


def demo_configs(args: argparse.Namespace):
    """The three runs' RunConfigs: the demo's defaults, then the flags given; output per method."""
    from latentmas_ray.spec.flags import build_run_config, spec_flags

    given = {k: v for k, v in vars(args).items() if k in spec_flags()}
    folder = Path(given.pop("output", None) or DEFAULT_OUTPUT)
    given.pop("method", None)
    config_file = getattr(args, "config", None)
    defaults = {} if config_file else DEFAULTS       # a config file states its own settings
    merged = argparse.Namespace(**{**defaults, **given, "config": config_file})
    return folder, [build_run_config(merged, method=m, output=str(folder / m)) for m in METHODS]


def run_demo(args: argparse.Namespace, console) -> int:
    from jobs.evaluate import evaluate

    from .report import write_report

    folder, configs = demo_configs(args)     # all three validated before the first one runs
    for cfg in configs:
        code = evaluate(cfg, console)
        if code:
            return code
    console.rule("[bold]baseline, TextMAS and LatentMAS on the same questions")
    return write_report([c.output for c in configs], folder / "report", console, brief=True)
