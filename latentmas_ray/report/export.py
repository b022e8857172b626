"""A run's samples where evaluation users keep results: a Hugging Face dataset, or per-sample
JSONL in the shape lm-evaluation-harness writes with `--log_samples`.

    export_run(run_dir, to, fmt="datasets" | "jsonl", overwrite=False, push_to_hub=None)

datasets: `Dataset.save_to_disk(to)`, one row per sample with samples.parquet's columns and
    types (each agent's trace and the hops included), in sample-id order;
    `datasets.load_from_disk(to)[i]` equals the store's row. The run's config.json and
    summary.json ride in the dataset's info: `json.loads(ds.info.description)["latentmas_ray"]`
    -> {"config": ..., "summary": ...}.
jsonl: `to/samples_<task>.jsonl`, one line per sample: doc_id, doc, target, resps,
    filtered_resps, filter, metrics and the metric's value (`exact_match`, `pass@1` for code),
    doc_hash, target_hash, as lm-evaluation-harness's log_samples; our own numbers (method,
    tokens, latent steps, seconds, error) under "latentmas_ray". `to/results.json`: the task's
    score as lm-eval's results file keys it ("exact_match,extract": 0.25), config and summary.
push_to_hub REPO: after writing `to`, upload it to the Hub as a dataset repository (needs a
    token, `huggingface-cli login` or $HF_TOKEN, and network; not exercised by the tests).

The target folder is written whole or not at all (a temporary sibling, then renamed).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import uuid
from pathlib import Path
from typing import Any

from latentmas_ray.errors import ConfigError

FORMATS = ("datasets", "jsonl")
DATASETS_EXTRA = "pip install latentmas-ray[datasets]"
FILTER = "extract"      # our answer extraction plays lm-eval's filter: resps -> filtered_resps


def export_run(run_dir: str | Path, to: str | Path, fmt: str = "datasets", *,
               overwrite: bool = False, push_to_hub: str | None = None) -> Path:
    """Write the run's samples to `to` in `fmt`; returns `to`. Bad input is one ConfigError or
    DataError each: not a run folder, a target that exists and is not empty (without
    `overwrite`), a missing `datasets` package."""
    from latentmas_ray.report.load import load_run

    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; use datasets or jsonl")
    run = load_run(run_dir)        # DataError: no such folder, no config.json, no samples
    out = Path(to)
    check_target(out, run.path, overwrite)
    datasets = require_datasets() if fmt == "datasets" else None
    record = json.loads((run.path / "config.json").read_text(encoding="utf-8"))
    summary_path = run.path / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "datasets":
            as_dataset(datasets, run.rows, record, summary, run.name).save_to_disk(str(tmp))
        else:
            write_lm_eval(tmp, run.task, run.rows, record, summary)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if push_to_hub:
        push(out, fmt, push_to_hub)
    return out


def check_target(out: Path, run_dir: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"export target {out} is a file; pass a folder to --to")
    target, run = out.resolve(), run_dir.resolve()
    if target == run or target in run.parents:
        raise ConfigError(f"export target {out} holds the run folder {run_dir}; export elsewhere")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export target {out} exists and is not empty; pass --overwrite to "
                          "replace it, or choose another --to")


def require_datasets():
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"--format datasets needs the datasets package: {DATASETS_EXTRA} "
                          "(or use --format jsonl)") from None
    return datasets


def as_dataset(datasets, rows: list[dict[str, Any]], record: dict[str, Any],
               summary: dict[str, Any] | None, name: str):
    """A datasets.Dataset of the store's rows with their arrow types (samples.parquet's schema)."""
    import pyarrow as pa

    from latentmas_ray.store.run_store import SCHEMA

    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    description = json.dumps({"latentmas_ray": {"config": record, "summary": summary}},
                             sort_keys=True)
    info = datasets.DatasetInfo(description=description, builder_name="latentmas-ray",
                                dataset_name=name, config_name=str(record["run"]["task"]))
    return datasets.Dataset(table, info=info)


def metric_name(task: str) -> str:
    """lm-eval's name for a task's per-sample score: pass@1 for code, exact_match otherwise."""
    from latentmas_ray.tasks.registry import get_task

    return "pass@1" if get_task(task).kind == "code" else "exact_match"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def lm_eval_sample(doc_id: int, row: dict[str, Any], metric: str) -> dict[str, Any]:
    """One store row as one line of lm-eval's samples_<task>.jsonl."""
    doc = {"id": row["id"], "task": row["task"], "gold": row["gold"]}
    target = row["gold"] or ""
    return {
        "doc_id": doc_id,
        "doc": doc,
        "target": target,
        "resps": [[row["prediction"] or ""]],           # one request, one response
        "filtered_resps": [row["extracted"] or ""],
        "filter": FILTER,
        "metrics": [metric],
        metric: 1.0 if row["correct"] else 0.0,
        "doc_hash": sha256(json.dumps(doc, indent=2, ensure_ascii=False)),
        "target_hash": sha256(target),
        "latentmas_ray": {k: row[k] for k in ("method", "prompt_tokens", "generated_tokens",
                                               "latent_steps", "seconds", "error")},
    }


def write_lm_eval(folder: Path, task: str, rows: list[dict[str, Any]], record: dict[str, Any],
                  summary: dict[str, Any] | None) -> None:
    metric = metric_name(task)
    folder.mkdir(parents=True)
    with open(folder / f"samples_{task}.jsonl", "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            f.write(json.dumps(lm_eval_sample(i, row, metric), ensure_ascii=False) + "\n")
    n = len(rows)
    acc = sum(1 for r in rows if r["correct"]) / n
    stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else 0.0   # lm-eval's mean stderr
    results = {"results": {task: {"alias": task, f"{metric},{FILTER}": acc,
                                  f"{metric}_stderr,{FILTER}": stderr}},
               "n-samples": {task: {"original": n, "effective": n}},
               "config": {"model": "latentmas-ray", "latentmas_ray": record},
               "latentmas_ray_summary": summary}
    (folder / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n",
                                         encoding="utf-8")


def push(out: Path, fmt: str, repo: str) -> None:
    """Upload the exported folder to the Hub as a dataset repository (network and a token)."""
    try:
        if fmt == "datasets":
            require_datasets().load_from_disk(str(out)).push_to_hub(repo)
        else:
            from huggingface_hub import HfApi
            HfApi().upload_folder(folder_path=str(out), repo_id=repo, repo_type="dataset")
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ConfigError(f"--push_to_hub {repo}: the upload failed ({first}); the export in "
                          f"{out} is complete (log in with `huggingface-cli login`)") from None
