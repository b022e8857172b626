"""The store's row schema: one row per (sample id, completion), with each agent's trace and
each hop between actors; and how tables written by older versions are read into it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

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
    ("max_new_tokens", pa.int32()),         # null, or the budget cut to fit vLLM (issue 14)
    ("position", pa.int64()),               # the sample's place in its task (null: older parts,
                                            # samples made by hand): the run's end sorts by it
])

def conform(table: pa.Table) -> pa.Table:
    """A table in SCHEMA: columns a part written by an older version lacks are added empty
    (null), so a run started before a column existed still resumes and reports."""
    for name in SCHEMA.names:
        if name not in table.column_names:
            # a part from before K completions holds completion 0 of each sample
            fill = (pa.array([0] * len(table), pa.int32()) if name == "sample_index"
                    else pa.nulls(len(table), SCHEMA.field(name).type))
            table = table.append_column(SCHEMA.field(name), fill)
    return table.select(SCHEMA.names).cast(SCHEMA)


def columns_in(f: Path, name: str) -> list[str]:
    """[name] when part file `f` has that column, else [] (an older part)."""
    return [name] if name in pq.read_schema(f).names else []


def conform_column(table: pa.Table, name: str) -> pa.ChunkedArray:
    field = SCHEMA.field(name)
    if name not in table.column_names:
        return pa.chunked_array([pa.nulls(table.num_rows, field.type)], field.type)
    return table.column(name).cast(field.type)


def conform_columns(table: pa.Table, names: list[str]) -> pa.Table:
    """`names` of SCHEMA from `table` (a column it lacks: nulls), in that order."""
    return pa.table({n: conform_column(table, n) for n in names})
