"""`latentmas-ray export RUN_DIR --to DIR [--format datasets|jsonl]`: a run's samples as a
Hugging Face dataset or as lm-evaluation-harness `--log_samples` JSONL (latentmas_ray/report/export.py).
"""

from __future__ import annotations

import argparse

_DESCRIPTION = ("Export a run's samples: a Hugging Face `datasets` Dataset (save_to_disk, the "
                "run's config and summary in its info) or per-sample JSONL in the shape "
                "lm-evaluation-harness writes with --log_samples, so existing tools read them.")


def add_export_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("export", help="a run's samples as a HF dataset or lm-eval JSONL",
                       description=_DESCRIPTION)
    p.add_argument("run", metavar="RUN_DIR", help="a run folder written by `run`")
    p.add("--to", required=True, metavar="DIR", help="folder to write (must not exist or be empty)")
    p.add("--format", default="datasets", choices=["datasets", "jsonl"],
          help="datasets (default: needs pip install latentmas-ray[datasets]) or jsonl")
    p.add("--overwrite", action="store_true", help="replace a --to folder that is not empty")
    p.add("--push_to_hub", default=None, metavar="REPO",
          help="also upload the export to this Hub dataset repository (needs a token and network)")
    return p


def run_export(args: argparse.Namespace, console) -> int:
    from latentmas_ray.report.export import export_run

    out = export_run(args.run, args.to, args.format, overwrite=args.overwrite,
                     push_to_hub=args.push_to_hub)
    pushed = f", pushed to the Hub as {args.push_to_hub}" if args.push_to_hub else ""
    console.print(f"exported {args.run} as {args.format} to {out}{pushed}", highlight=False,
                  soft_wrap=True)
    return 0
