"""The run store: one folder per run, readable by other tools while it is being written.

    DIR/config.json         the RunConfig (+ resolved model and data source): enough to rerun
    DIR/parts/*.parquet     one file per finished batch, written atomically the moment it ends
    DIR/samples.parquet     all finished samples, one row each (rebuilt from parts)
    DIR/summary.json        accuracy, counts, mean tokens, wall time

A rerun of the same command opens the same folder and skips every id already in a part, so a
finished sample is never recomputed and never written twice.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .atomic import atomic_open, atomic_write_text
from .errors import ConfigError, DataError

AGENT_TYPE = pa.struct([
    ("role", pa.string()), ("name", pa.string()),
    ("input_ids", pa.list_(pa.int32())), ("output_ids", pa.list_(pa.int32())),
    ("prompt_tokens", pa.int32()), ("generated_tokens", pa.int32()),
    ("latent_steps", pa.int32()), ("seconds", pa.float64()),
])
HOP_TYPE = pa.struct([
    ("src", pa.string()), ("dst", pa.string()), ("payload", pa.string()),
    ("bytes", pa.int64()), ("ms", pa.float64()),
])
SCHEMA = pa.schema([
    ("id", pa.string()), ("task", pa.string()), ("method", pa.string()),
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
            table = table.append_column(SCHEMA.field(name), pa.nulls(len(table), SCHEMA.field(name).type))
    return table.select(SCHEMA.names).cast(SCHEMA)


# Fields added after runs were stored, with the value that reproduces the older behaviour: at
# that value they are left out of the comparison (and the run id), so an older run folder,
# whose config.json lacks them, still resumes.
LATER_FIELDS = {"use_vllm": False}


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in RESUMABLE_FIELDS
            and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}


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
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with atomic_open(self.parts / name, "wb") as f:
            pq.write_table(table, f)

    def read(self) -> pa.Table:
        """Every finished sample once (a later part wins if an id were ever written twice)."""
        files = sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []
        if not files:
            merged = self.dir / "samples.parquet"
            return _conform(pq.read_table(merged)) if merged.exists() else SCHEMA.empty_table()
        table = pa.concat_tables([_conform(pq.read_table(f)) for f in files])
        ids = table.column("id").to_pylist()
        last = {sid: i for i, sid in enumerate(ids)}
        if len(last) != len(ids):
            table = table.take(sorted(last.values()))
        return table

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

    def _column(self, name: str) -> pa.ChunkedArray:
        """One column of every finished row (Arrow column projection: the other columns, token
        ids included, are never read). Duplicates are not removed (there are none: see read)."""
        files = self.part_files()
        if not files:
            merged = self.dir / "samples.parquet"
            if not merged.exists():
                return pa.chunked_array([], SCHEMA.field(name).type)
            files = [merged]
        return pa.chunked_array([c for f in files
                                 for c in _conform_column(pq.read_table(f, columns=_have(f, name)),
                                                          name).chunks],
                                SCHEMA.field(name).type)

    def done_ids(self) -> set[str]:
        """The ids finished so far: only the id column of each part is read."""
        return set(self._column("id").to_pylist())

    def counts(self) -> tuple[int, int]:
        """(finished samples, correct ones), read from two columns only."""
        ids, correct = self._column("id"), self._column("correct")
        if pc.count_distinct(ids).as_py() != len(ids):      # an id written twice: rare, exact
            table = self.read()
            ids, correct = table.column("id"), table.column("correct")
        return len(ids), int(pc.sum(correct.fill_null(False).cast(pa.int64())).as_py() or 0)

    def consolidate(self, order: Iterable[str] | None = None, *,
                    read_back: bool = True) -> pa.Table | None:
        """Rewrite samples.parquet from the parts, in `order` (the task's sample order).

        Streams: each part is read, reordered and written on its own, so memory holds one part
        (plus the id column) however long the run. Parts hold runs of consecutive samples, so
        sorting the parts by their first sample and each part's rows gives the task's order; in
        the rare case it does not (a resumed run that changed --generate_bs, an id written
        twice) the whole table is sorted in memory as before. Returns the table when
        `read_back` (a run's end passes False and reads it with the streaming `summary()`)."""
        files = self.part_files()
        if not files:
            return self.read() if read_back else None
        order_arr = pa.array(list(order) if order is not None else [], pa.string())
        plan, seen = [], 0
        for f in files:
            ids = _conform_column(pq.read_table(f, columns=_have(f, "id")), "id")
            pos = pc.index_in(ids, value_set=order_arr).to_numpy(zero_copy_only=False)
            pos = [int(p) if p == p and p is not None else len(order_arr) + seen + i
                   for i, p in enumerate(pos)]
            seen += len(pos)
            idx = sorted(range(len(pos)), key=pos.__getitem__)
            plan.append((pos[idx[0]], pos[idx[-1]], f, idx))
        plan.sort(key=lambda p: p[0])
        n_ids = sum(len(p[3]) for p in plan)
        ordered = all(a[1] < b[0] for a, b in zip(plan, plan[1:]))
        if not ordered or pc.count_distinct(self._column("id")).as_py() != n_ids:
            self._consolidate_in_memory(order)
            return _conform(pq.read_table(self.dir / "samples.parquet")) if read_back else None
        with atomic_open(self.dir / "samples.parquet", "wb") as out:
            with pq.ParquetWriter(out, SCHEMA) as writer:
                for _, _, f, idx in plan:
                    writer.write_table(_conform(pq.read_table(f)).take(idx))
        return _conform(pq.read_table(self.dir / "samples.parquet")) if read_back else None

    def _consolidate_in_memory(self, order: Iterable[str] | None) -> None:
        table = self.read()
        if order is not None:
            pos = {sid: i for i, sid in enumerate(order)}
            ids = table.column("id").to_pylist()
            table = table.take(sorted(range(len(ids)), key=lambda i: pos.get(ids[i], len(pos) + i)))
        with atomic_open(self.dir / "samples.parquet", "wb") as f:
            pq.write_table(table, f)

    def summary(self, wall_seconds: float | None = None) -> dict[str, Any]:
        """`summarize` over samples.parquet (or the parts when not consolidated yet), streamed
        batch by batch with Arrow compute: no row becomes a Python object."""
        merged = self.dir / "samples.parquet"
        totals = Totals()
        files = [merged] if merged.exists() else self.part_files()
        for f in files:
            pf = pq.ParquetFile(f)
            cols = [c for c in Totals.COLUMNS if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=4096, columns=cols):
                totals.add(pa.Table.from_batches([batch]))
        return totals.result(wall_seconds)

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def summarize(table: pa.Table, wall_seconds: float | None = None) -> dict[str, Any]:
    """Accuracy, counts and means of a table of store rows (see Totals)."""
    totals = Totals()
    totals.add(table)
    return totals.result(wall_seconds)


def _have(f: Path, name: str) -> list[str]:
    """[name] when part file `f` has that column, else [] (an older part)."""
    return [name] if name in pq.read_schema(f).names else []


def _conform_column(table: pa.Table, name: str) -> pa.ChunkedArray:
    field = SCHEMA.field(name)
    if name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type)
    return table.column(name).cast(field.type)


class Totals:
    """Running sums for summary.json, fed table by table (a part, a batch of samples.parquet)
    with Arrow compute; `result()` gives the figures. Memory: a few numbers per agent role and
    per hop kind, whatever the number of samples."""

    COLUMNS = ("correct", "error", "generated_tokens", "prompt_tokens", "latent_steps",
               "seconds", "agents", "hops")
    MEANS = ("generated_tokens", "prompt_tokens", "latent_steps", "seconds")

    def __init__(self):
        self.n = self.correct = self.errors = 0
        self.sums = dict.fromkeys(self.MEANS, 0.0)
        self.by_role: dict[str, list[float]] = {}          # role -> [tokens, agents]
        self.hops: dict[str, list[float]] = {}             # key -> [bytes, ms, count]

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        table = table.combine_chunks()
        col = lambda name: _conform_column(table, name)   # noqa: E731
        self.n += table.num_rows
        self.correct += int(pc.sum(col("correct").fill_null(False).cast(pa.int64())).as_py() or 0)
        err = col("error")
        self.errors += int(pc.sum(pc.and_(pc.is_valid(err), pc.not_equal(err.fill_null(""), ""))
                                  .cast(pa.int64())).as_py() or 0)
        for k in self.MEANS:
            self.sums[k] += float(pc.sum(col(k)).as_py() or 0)
        agents = pc.list_flatten(col("agents"))
        if len(agents):
            grouped = pa.table({"role": pc.struct_field(agents, "role"),
                                "tok": pc.struct_field(agents, "generated_tokens").fill_null(0)
                                .cast(pa.int64())}).group_by("role").aggregate(
                                    [("tok", "sum"), ("tok", "count")])
            for role, tok, cnt in zip(*(grouped.column(c).to_pylist()
                                        for c in ("role", "tok_sum", "tok_count"))):
                acc = self.by_role.setdefault(role, [0.0, 0.0])
                acc[0] += tok
                acc[1] += cnt
        hops = pc.list_flatten(col("hops"))
        if len(hops):
            f = lambda name: pc.struct_field(hops, name)    # noqa: E731
            key = pc.binary_join_element_wise(f("src"), "->", f("dst"), " (", f("payload"), ")", "")
            grouped = pa.table({"key": key, "b": f("bytes").fill_null(0).cast(pa.float64()),
                                "ms": f("ms").fill_null(0.0)}).group_by("key").aggregate(
                                    [("b", "sum"), ("ms", "sum"), ("b", "count")])
            for k, b, ms, cnt in zip(*(grouped.column(c).to_pylist()
                                       for c in ("key", "b_sum", "ms_sum", "b_count"))):
                acc = self.hops.setdefault(k, [0.0, 0.0, 0])
                acc[0] += b
                acc[1] += ms
                acc[2] += cnt

    def result(self, wall_seconds: float | None = None) -> dict[str, Any]:
        n = self.n
        out = {
            "samples": n,
            "correct": self.correct,
            "accuracy": self.correct / n if n else 0.0,
            "errors": self.errors,
            **{f"mean_{k}" + ("_per_sample" if k == "seconds" else ""): self.sums[k] / n if n else 0.0
               for k in self.MEANS},
            "mean_generated_tokens_by_agent": {k: t / c for k, (t, c) in self.by_role.items()},
            "wall_seconds_this_session": wall_seconds,
        }
        if self.hops:   # per hop: mean bytes and milliseconds per sample
            out["hops"] = {k: {"mean_bytes": b / c, "mean_ms": ms / c, "samples": c}
                           for k, (b, ms, c) in self.hops.items()}
        return out
