"""The run store: one folder per run, readable by other tools while it is being written.

    DIR/config.json         the RunConfig (+ resolved model and data source): enough to rerun
    DIR/parts/*.parquet     one file per finished batch, written atomically the moment it ends
    DIR/parts/latents-*.pt  --save_latents: the latent steps of that part's samples (inspect)
    DIR/samples.parquet     all finished samples, one row per (id, sample_index) (from parts)
    DIR/summary.json        accuracy, counts, mean tokens, wall time (+ pass@k, maj@k when K > 1)

A rerun of the same command opens the same folder and skips every sample whose K completions
(--num_return_sequences; row key (id, sample_index)) are all in parts, so a finished sample is
never recomputed; a completion written twice is read once.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_open, atomic_write_text
from .errors import ConfigError, DataError
from .passk import completion_scores

AGENT_TYPE = pa.struct([
    ("role", pa.string()), ("name", pa.string()),
    ("input_ids", pa.list_(pa.int32())), ("output_ids", pa.list_(pa.int32())),
    ("prompt_tokens", pa.int32()), ("generated_tokens", pa.int32()),
    ("latent_steps", pa.int32()), ("seconds", pa.float64()),
    ("model", pa.string()),                 # the agent's checkpoint (null in older parts)
    ("memory_bytes", pa.int64()),           # KV bytes a latent agent passes on (null: older)
])
HOP_TYPE = pa.struct([
    ("src", pa.string()), ("dst", pa.string()), ("payload", pa.string()),
    ("bytes", pa.int64()), ("ms", pa.float64()),
])
SCHEMA = pa.schema([
    ("id", pa.string()), ("task", pa.string()), ("method", pa.string()),
    ("sample_index", pa.int32()),           # completion 0..K-1 of the sample (0 before K existed)
    ("prediction", pa.string()), ("gold", pa.string()), ("correct", pa.bool_()),
    ("extracted", pa.string()), ("error", pa.string()),
    ("prompt_tokens", pa.int32()), ("generated_tokens", pa.int32()),
    ("latent_steps", pa.int32()), ("seconds", pa.float64()),
    ("agents", pa.list_(AGENT_TYPE)),
    ("hops", pa.list_(HOP_TYPE)),           # transfers between actors (empty in one process)
])
# Fields of config.json that may change between a run and its resumption: they do not change
# any sample's result (batches are padded so results are batch-invariant; where and how a run
# executes, `execution`, never changes a result; on_bad_row only which rows load).
RESUMABLE_FIELDS = ("output", "max_samples", "generate_bs", "execution", "on_bad_row")


def _conform(table: pa.Table) -> pa.Table:
    """A table in SCHEMA: columns a part written by an older version lacks are added empty
    (null), so a run started before a column existed still resumes and reports."""
    for name in SCHEMA.names:
        if name not in table.column_names:
            # a part from before K completions holds completion 0 of each sample
            fill = (pa.array([0] * len(table), pa.int32()) if name == "sample_index"
                    else pa.nulls(len(table), SCHEMA.field(name).type))
            table = table.append_column(SCHEMA.field(name), fill)
    return table.select(SCHEMA.names).cast(SCHEMA)


# Fields added after runs were stored, with the value that reproduces the older behaviour: at
# that value they are left out of the comparison (and the run id), so an older run folder,
# whose config.json lacks them, still resumes.
# A dotted name is a field of a section ("model.packed_linear").
LATER_FIELDS = {"use_vllm": False, "model.packed_linear": False,
                "method.num_return_sequences": 1, "method.agents": None,
                "method.memory_layers": None, "method.memory_top_k": None}


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()
           if k not in RESUMABLE_FIELDS}
    for name, default in LATER_FIELDS.items():
        *section, key = name.split(".")
        where = out[section[0]] if section and isinstance(out.get(section[0]), dict) else out
        if key in where and where[key] == default:
            del where[key]
    return out


def run_id(config: dict[str, Any]) -> str:
    """A stable folder name for a RunConfig dict: the same command maps to the same folder, so
    it resumes (fields that cannot change a result are left out of the hash)."""
    digest = hashlib.sha256(json.dumps(comparable_config(config), sort_keys=True).encode())
    name = config.get("model", {}).get("name_or_path")
    model = Path(name).name if name else "smollm2-135m"
    return f"{config['task']}-{config['method']['method']}-{model}-{digest.hexdigest()[:8]}"


class RunStore:
    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        self.parts = self.dir / "parts"

    # --- config -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    def open(self, config: dict[str, Any]) -> None:
        """Create the run folder, or check that an existing one holds the same run."""
        if self.config_path.exists():
            try:
                old = json.loads(self.config_path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                raise ConfigError(f"{self.config_path} is not readable JSON ({e}); "
                                  "choose another --output") from None
            was, now = comparable_config(old["run"]), comparable_config(config)
            diff = sorted(k for k in set(was) | set(now) if was.get(k) != now.get(k))
            if diff:
                shown = ", ".join(f"{k}: {old['run'].get(k)!r} -> {config.get(k)!r}" for k in diff[:4])
                raise ConfigError(f"output folder {self.dir} holds a different run ({shown}); "
                                  "use another --output, or the same settings to resume it")
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise ConfigError(f"output folder {self.dir} is not empty and holds no run; "
                              "choose another --output")
        self.parts.mkdir(parents=True, exist_ok=True)
        record = {"run": config, "format": 1}
        if self.config_path.exists():
            record = json.loads(self.config_path.read_text())
            record["run"].update({k: config[k] for k in RESUMABLE_FIELDS if k in config})
        atomic_write_text(self.config_path, json.dumps(record, indent=2, sort_keys=True) + "\n")

    def config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise DataError("not a run folder (no config.json)", str(self.dir))
        return json.loads(self.config_path.read_text())

    # --- samples ------------------------------------------------------------------------
    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write one finished batch as its own part file (atomically)."""
        if not rows:
            return
        latents = {(r["id"], r.get("sample_index", 0)): r.pop("latents")
                   for r in rows if r.get("latents")}
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        stem = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        if latents:             # the side file first: a part never points at a missing one
            self._write_latents(self.parts / f"latents-{stem}.pt",
                                {sid: v for (sid, _), v in latents.items()})
        with atomic_open(self.parts / f"part-{stem}.parquet", "wb") as f:
            pq.write_table(table, f)

    def read(self) -> pa.Table:
        """Every finished sample once (a later part wins if an id were ever written twice)."""
        files = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        if not files:
            merged = self.dir / "samples.parquet"
            return _conform(pq.read_table(merged)) if merged.exists() else SCHEMA.empty_table()
        table = pa.concat_tables([_conform(pq.read_table(f)) for f in files])
        keys = list(zip(table.column("id").to_pylist(), table.column("sample_index").to_pylist()))
        last = {key: i for i, key in enumerate(keys)}
        if len(last) != len(keys):
            table = table.take(sorted(last.values()))
        return table

    def completions(self) -> int:
        """K, the run's completions per sample (1 without a config or before K existed)."""
        if not self.config_path.exists():
            return 1
        return int(self.config()["run"].get("method", {}).get("num_return_sequences", 1))

    @staticmethod
    def _write_latents(path: Path, latents: dict[str, Any]) -> None:
        """{sample id: {role: {"hidden": [m, D], "fed": [m, D]}}} as one torch file."""
        import torch

        with atomic_open(path, "wb") as f:
            torch.save(latents, f)

    def latents(self) -> dict[str, Any]:
        """Every saved sample's latent steps (--save_latents): {id: {role: {"hidden", "fed"}}}."""
        import torch

        out: dict[str, Any] = {}
        for f in sorted(self.parts.glob("latents-*.pt")) if self.parts.is_dir() else []:
            out.update(torch.load(f, map_location="cpu", weights_only=True))
        return out

    def done_ids(self) -> set[str]:
        """Samples whose K completions are all stored (a sample with some missing reruns; its
        completions are seeded one by one, so the rerun rewrites the same ones)."""
        table, k = self.read(), self.completions()
        if k == 1:
            return set(table.column("id").to_pylist())
        have: dict[str, set[int]] = {}
        for sid, j in zip(table.column("id").to_pylist(), table.column("sample_index").to_pylist()):
            have.setdefault(sid, set()).add(j)
        return {sid for sid, js in have.items() if js.issuperset(range(k))}

    def consolidate(self, order: Iterable[str] | None = None) -> pa.Table:
        """Rewrite samples.parquet from the parts, in `order` (the task's sample order)."""
        table = self.read()
        if order is not None:
            pos = {sid: i for i, sid in enumerate(order)}
            ids = table.column("id").to_pylist()
            js = table.column("sample_index").to_pylist()
            table = table.take(sorted(range(len(ids)),
                                      key=lambda i: (pos.get(ids[i], len(pos) + i), js[i])))
        with atomic_open(self.dir / "samples.parquet", "wb") as f:
            pq.write_table(table, f)
        return table

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def summarize(table: pa.Table, wall_seconds: float | None = None) -> dict[str, Any]:
    rows = table.to_pylist()
    n = len(rows)
    correct = sum(bool(r["correct"]) for r in rows)
    mean = (lambda key: sum(r[key] or 0 for r in rows) / n) if n else (lambda key: 0.0)
    by_role: dict[str, list[int]] = {}
    hops: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        for a in r["agents"] or []:
            by_role.setdefault(a["role"], []).append(a["generated_tokens"] or 0)
        for h in r.get("hops") or []:
            hops.setdefault(f"{h['src']}->{h['dst']} ({h['payload']})", []).append(
                (h["bytes"] or 0, h["ms"] or 0.0))
    out = {
        "samples": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "errors": sum(1 for r in rows if r["error"]),
        "mean_generated_tokens": mean("generated_tokens"),
        "mean_prompt_tokens": mean("prompt_tokens"),
        "mean_latent_steps": mean("latent_steps"),
        "mean_seconds_per_sample": mean("seconds"),
        "mean_generated_tokens_by_agent": {k: sum(v) / len(v) for k, v in by_role.items()},
        "wall_seconds_this_session": wall_seconds,
    }
    out.update(completion_scores(rows))       # K > 1: pass@k, maj@k (latentmas_ray/passk.py)
    if hops:   # per hop: mean bytes and milliseconds per sample
        out["hops"] = {k: {"mean_bytes": sum(b for b, _ in v) / len(v),
                           "mean_ms": sum(t for _, t in v) / len(v), "samples": len(v)}
                       for k, v in hops.items()}
    return out
