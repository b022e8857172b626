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

import json
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from latentmas_ray.store.atomic import atomic_open, atomic_write_text
from latentmas_ray.errors import ConfigError, DataError
from latentmas_ray.store.schema import (SCHEMA, columns_in, conform, conform_column,
                                        conform_columns)
from latentmas_ray.store.summary import COMPLETION_COLUMNS, Totals, completion_scores, summarize
from latentmas_ray.spec.identity import RESUMABLE_FIELDS, comparable_config, identity_changes

# parts are gathered into row groups of samples.parquet of about this size: few groups (the
# writer keeps each one's metadata until it closes), little memory (rows carry token ids)
ROW_GROUP_BYTES = 32 << 20

__all__ = ["RunStore", "SCHEMA", "summarize"]


class RunStore:
    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        self.parts = self.dir / "parts"

    # --- config -------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    def open(self, config: dict[str, Any], identity: dict[str, Any] | None = None) -> None:
        """Create the run folder, or check that an existing one holds the same run (its config
        and, where given, `identity`: the contents and precision it was written with)."""
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
        if identity:
            self.check_identity(identity)

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Refuse (one line) a resume whose contents or resolved precision differ from what
        the folder was written with (spec/identity.py); record what the folder lacked."""
        record = self.config()
        old = record.get("identity", {})
        changed = identity_changes(old, identity)
        if changed:
            raise ConfigError(f"output folder {self.dir} was written with other inputs: "
                              f"{'; '.join(changed)}; use another --output, or the same inputs "
                              "to resume it")
        if any(k not in old for k in identity):
            record["identity"] = {**old, **identity}
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
            return conform(pq.read_table(merged)) if merged.exists() else SCHEMA.empty_table()
        table = pa.concat_tables([conform(pq.read_table(f)) for f in files])
        keys = list(zip(table.column("id").to_pylist(), table.column("sample_index").to_pylist()))
        last = {key: i for i, key in enumerate(keys)}
        if len(last) != len(keys):
            table = table.take(sorted(last.values()))
        return table

    def part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.is_dir() else []

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
                                 for c in conform_column(pq.read_table(f, columns=columns_in(f, name)),
                                                          name).chunks],
                                SCHEMA.field(name).type)

    def columns(self, names: Iterable[str], *, consolidated: bool = False) -> pa.Table:
        """Only these columns of every finished row (what W&B logs; the traces and token ids
        are never read): from the parts, or from samples.parquet, in the task's order, when
        `consolidated`."""
        names = list(names)
        merged = self.dir / "samples.parquet"
        if consolidated and merged.exists():
            return conform_columns(pq.read_table(merged, columns=[
                n for n in names if n in pq.read_schema(merged).names]), names)
        return pa.table({n: self._column(n) for n in names})

    def done_ids(self) -> set[str]:
        """Samples whose K completions are all stored, read from the id and sample_index
        columns only (a sample with some missing reruns; its completions are seeded one by one,
        so the rerun rewrites the same ones)."""
        ids, k = self._column("id"), self.completions()
        if k == 1:
            return set(ids.to_pylist())
        have = pa.table({"id": ids, "j": self._column("sample_index").fill_null(0)}).group_by(
            "id").aggregate([("j", "count_distinct")])
        return {sid for sid, n in zip(have.column("id").to_pylist(),
                                      have.column("j_count_distinct").to_pylist()) if n >= k}

    def done_mask(self, n: int):
        """`done_ids` by place: a bool array over the task's n positions (True: every
        completion stored), from two integer columns, so a resumed million-sample run holds no
        set of a million ids. None when a stored row has no position (parts older than the
        column: ask done_ids). Rows placed past n (a shorter --max_samples) are ignored."""
        import numpy as np

        pos = self._column("position")
        if pos.null_count:
            return None
        p = pos.to_numpy()
        j = self._column("sample_index").fill_null(0).to_numpy().astype(np.int64)
        inside = p < n
        p, j = p[inside], j[inside]
        width = int(j.max()) + 1 if len(j) else 1
        stored = np.unique(p * width + j) // width          # a completion written twice: once
        return np.bincount(stored, minlength=n) >= self.completions()

    def complete_samples(self) -> int:
        """How many samples have all K completions stored. After `consolidate` it streams
        samples.parquet (rows of a sample together) a batch of ids at a time: no set of the
        run's ids; before it, `done_ids`."""
        merged = self.dir / "samples.parquet"
        if not merged.exists():
            return len(self.done_ids())
        k, complete, current, rows = self.completions(), 0, None, 0
        for batch in pq.ParquetFile(merged).iter_batches(batch_size=65536, columns=["id"]):
            for sid in batch.column(0).to_pylist():
                if sid != current:
                    complete += rows >= k
                    current, rows = sid, 0
                rows += 1
        return complete + (rows >= k)

    def counts(self) -> tuple[int, int]:
        """(finished samples, correct ones), read from two columns only."""
        ids, correct = self._column("id"), self._column("correct")
        keys = pa.table({"id": ids, "j": self._column("sample_index").fill_null(0)})
        if keys.group_by(["id", "j"]).aggregate([]).num_rows != len(ids):   # written twice: rare
            table = self.read()
            ids, correct = table.column("id"), table.column("correct")
        return len(ids), int(pc.sum(correct.fill_null(False).cast(pa.int64())).as_py() or 0)

    def consolidate(self, order: Iterable[str] | None = None, *,
                    read_back: bool = True) -> pa.Table | None:
        """Rewrite samples.parquet from the parts, in the task's order (rows of a sample by
        sample_index).

        Streams, whatever K and however long the run: a first pass reads two small columns
        of every part (each file opened once) and keeps only each part's first and last
        place; a second pass reads each part whole, sorts it and appends it to the writer, so
        memory holds one part plus a few numbers per part. The place of a row is its
        `position` column (the sample's place in the task, written with every row since
        round 3); parts of older versions have none, and are placed by their ids in `order`
        (the task's ids) with ONE hash lookup. Parts hold runs of consecutive samples, so
        sorting the parts by their first sample gives the task's order; only when it does not
        (parts whose samples interleave, a completion written twice) is the whole table
        sorted in memory. Returns the table when `read_back` (a run's end passes False and
        reads it with the streaming `summary()`)."""
        files = self.part_files()
        if not files:
            return self.read() if read_back else None
        plan = self._plan_by_position(files)
        if plan is None:
            plan = self._plan(files, order)
        if plan is None:
            self._consolidate_in_memory(order)
        else:
            self._write_in_plan_order(plan)
        return conform(pq.read_table(self.dir / "samples.parquet")) if read_back else None

    def _write_in_plan_order(self, plan: list[tuple[Path, Any]]) -> None:
        """samples.parquet from `plan`: [(part, its rows' order, or None: sort it by position)]."""
        import numpy as np

        with atomic_open(self.dir / "samples.parquet", "wb") as out:
            with pq.ParquetWriter(out, SCHEMA) as writer:
                held: list[pa.Table] = []       # parts gathered into one row group: the
                size = 0                        # writer keeps every group's metadata
                for i, (f, idx) in enumerate(plan):
                    # ParquetFile.read: no dataset discovery per file (4x faster here)
                    part = conform(pq.ParquetFile(f).read())
                    if idx is None:
                        idx = pa.array(np.lexsort((
                            part.column("sample_index").fill_null(0).to_numpy(),
                            part.column("position").to_numpy())))
                    size += part.nbytes
                    held.append(part.take(idx))
                    if size >= ROW_GROUP_BYTES or i == len(plan) - 1:
                        writer.write_table(pa.concat_tables(held))
                        held, size = [], 0

    def _plan_by_position(self, files: list[Path]) -> list[tuple[Path, None]] | None:
        """The parts in the task's order by their `position` column (each part sorted when it
        is written out); None when a part lacks positions (an older part) or the parts
        cannot be streamed (interleaved, or a completion written twice)."""
        import numpy as np

        first = np.empty(len(files), np.int64)      # each part's first and last position
        last = np.empty(len(files), np.int64)
        keep = np.ones(len(files), bool)
        for i, f in enumerate(files):
            pf = pq.ParquetFile(f)
            if "position" not in pf.schema_arrow.names:
                return None
            t = pf.read(columns=[c for c in ("position", "sample_index")
                                 if c in pf.schema_arrow.names])
            if t.num_rows == 0:
                keep[i] = False
                continue
            pos = t.column("position")
            if pos.null_count:
                return None
            p = pos.to_numpy()
            j = conform_column(t, "sample_index").fill_null(0).to_numpy().astype(np.int64)
            if np.unique(p * (int(j.max()) + 1) + j).size != t.num_rows:
                return None                                  # a completion written twice
            first[i], last[i] = p.min(), p.max()
        by_first = np.argsort(first[keep], kind="stable")
        kept = np.flatnonzero(keep)[by_first]
        if (last[kept][:-1] >= first[kept][1:]).any():
            return None                                      # parts interleave
        return [(files[i], None) for i in kept]

    def _plan(self, files: list[Path], order: Iterable[str] | None):
        """Older parts, without positions: [(part, its rows' order)] with the parts in the order
        of their ids in `order`, or None when the parts cannot be streamed in that order (see
        consolidate)."""
        import numpy as np

        ids, recent, js, sizes = [], [], [], []
        for i, f in enumerate(files):
            pf = pq.ParquetFile(f)
            t = pf.read(columns=[c for c in ("id", "sample_index") if c in pf.schema_arrow.names])
            recent += conform_column(t, "id").chunks
            js.append(conform_column(t, "sample_index").fill_null(0).to_numpy())
            sizes.append(t.num_rows)
            if len(recent) >= 256 or i == len(files) - 1:
                # copied into one exact buffer: a file's column buffers are read with room
                # to spare, tens of KB each, which 10k parts would keep alive
                ids.append(pa.concat_arrays(recent) if recent else pa.array([], pa.string()))
                recent = []
        order_arr = pa.array(list(order) if order is not None else [], pa.string())
        pos = pc.index_in(pa.chunked_array(ids, pa.string()), value_set=order_arr)
        pos = pos.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)   # a copy
        unknown = pos < 0           # ids outside `order` go last, in part order
        pos[unknown] = len(order_arr) + np.arange(int(unknown.sum()))
        plan, start = [], 0
        for f, n, j in zip(files, sizes, js):
            p, start = pos[start:start + n], start + n
            if n == 0:
                continue
            idx = np.lexsort((j, p))
            if np.unique(p * (int(j.max()) + 1) + j).size != n:
                return None                                  # a completion written twice
            plan.append((int(p[idx[0]]), int(p[idx[-1]]), f, idx))
        plan.sort(key=lambda x: x[0])
        if any(a[1] >= b[0] for a, b in zip(plan, plan[1:])):
            return None                                      # parts interleave
        return [(f, pa.array(idx)) for _, _, f, idx in plan]

    def _consolidate_in_memory(self, order: Iterable[str] | None) -> None:
        table = self.read()
        if order is not None:
            pos = {sid: i for i, sid in enumerate(order)}
            ids = table.column("id").to_pylist()
            js = table.column("sample_index").to_pylist()
            table = table.take(sorted(range(len(ids)),
                                      key=lambda i: (pos.get(ids[i], len(pos) + i), js[i])))
        with atomic_open(self.dir / "samples.parquet", "wb") as f:
            pq.write_table(table, f)

    def summary(self, wall_seconds: float | None = None, *,
                from_parts: bool = False) -> dict[str, Any]:
        """`summarize` over samples.parquet, streamed batch by batch with Arrow compute (no
        row becomes a Python object but the few small columns of pass@k / maj@k, a batch at
        a time), each file read once. Over the parts when not consolidated yet, or when
        `from_parts` (a session that ended early: samples.parquet may be older; its K-section
        is left out, as it needs the task's order)."""
        from latentmas_ray.store.passk import CompletionTally

        merged = self.dir / "samples.parquet"
        totals, k = Totals(), self.completions()
        parts = self.part_files()
        consolidated = merged.exists() and not (from_parts and parts)
        tally = CompletionTally(k) if k > 1 and consolidated else None
        for f in [merged] if consolidated else parts:
            pf = pq.ParquetFile(f)
            want = set(Totals.COLUMNS) | (set(COMPLETION_COLUMNS) if tally else set())
            cols = [c for c in pf.schema_arrow.names if c in want]
            for batch in pf.iter_batches(batch_size=4096, columns=cols):
                table = pa.Table.from_batches([batch])
                totals.add(table)
                if tally:
                    tally.add(conform_columns(table, list(COMPLETION_COLUMNS)))
        out = totals.result(wall_seconds)
        scores = tally.result() if tally else None
        if scores is None and k > 1 and not from_parts:    # not consolidated, or no full K
            scores = completion_scores(self.columns(COMPLETION_COLUMNS).to_pylist())
        out.update(scores or {})
        return out

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")
