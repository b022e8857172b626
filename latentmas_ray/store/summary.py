"""summary.json's figures, computed with Arrow over tables of store rows (a part, a batch of
samples.parquet): memory a few numbers per agent role and hop kind, whatever the run's size.
K completions per question add pass@k and maj@k (latentmas_ray/store/passk.py)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from latentmas_ray.store.passk import completion_scores
from latentmas_ray.store.schema import conform_column

# what pass@k / maj@k read of each row (a few small columns, never the traces)
COMPLETION_COLUMNS = ("id", "sample_index", "correct", "extracted", "error")


def summarize(table: pa.Table, wall_seconds: float | None = None) -> dict[str, Any]:
    """Accuracy, counts and means of a table of store rows (see Totals)."""
    totals = Totals()
    totals.add(table)
    out = totals.result(wall_seconds)
    if "sample_index" in table.column_names:
        out.update(completion_scores(table.select(list(COMPLETION_COLUMNS)).to_pylist()))
    return out



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
        col = lambda name: conform_column(table, name)   # noqa: E731
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
