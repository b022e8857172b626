"""Reading benchmark and predictions files into (line, row) pairs.

Every row keeps the 1-based position it came from (the line in a JSONL or CSV file, the item
number in a JSON array), so an error can point a user at the exact row.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

from ..errors import DataError

T = TypeVar("T")
ON_BAD_ROW = ("error", "skip")


class BadRow(ValueError):
    """Raised by a row parser for a row it cannot use; the reason names the field."""


@dataclass(frozen=True)
class SkippedRow:
    path: str
    line: int
    reason: str


def _check_readable(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} does not exist", str(path),
                        hint="check the path, or download the file and pass it with --data")
    if path.is_dir():
        raise DataError(f"{what} is a folder, expected a file", str(path))
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as e:
        raise DataError(f"{what} cannot be read: {e.strerror}", str(path)) from None


def read_rows(path: str | Path, on_bad_row: str = "error", what: str = "data file"
              ) -> tuple[list[tuple[int, dict]], list[SkippedRow]]:
    """Rows of a .jsonl, .json (array of objects) or .csv file as (line, dict) pairs.

    A line that is not a JSON object is an error naming the line, or with on_bad_row="skip" a
    SkippedRow. Blank lines in JSONL are ignored.
    """
    skipped: list[SkippedRow] = []
    return list(iter_rows(path, on_bad_row, skipped, what)), skipped


def iter_rows(path: str | Path, on_bad_row: str, skipped: list[SkippedRow],
              what: str = "data file") -> Iterator[tuple[int, dict]]:
    """`read_rows` one row at a time (a JSONL file of a million rows is never a list of a
    million dicts); skipped rows are appended to `skipped` as they are met. The file is
    checked at the call, before the first row is asked for."""
    path = Path(path)
    _check_readable(path, what)
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json", ".csv"):
        raise DataError(f"unsupported file type {suffix or '(none)'}", str(path),
                        hint="use .jsonl, .json or .csv")
    return _rows(path, suffix, on_bad_row, skipped)


def _rows(path: Path, suffix: str, on_bad_row: str, skipped: list[SkippedRow]
          ) -> Iterator[tuple[int, dict]]:
    def bad(line: int, reason: str) -> None:
        if on_bad_row == "skip":
            skipped.append(SkippedRow(str(path), line, reason))
        else:
            raise DataError(reason, str(path), line,
                            hint="fix the row, or pass --on-bad-row skip to record it and go on")

    try:
        if suffix in (".jsonl", ".ndjson"):
            with path.open(encoding="utf-8") as f:
                for i, text in enumerate(f, 1):
                    if not text.strip():
                        continue
                    try:
                        obj = json.loads(text)
                    except json.JSONDecodeError as e:
                        bad(i, f"not valid JSON ({e.msg} at column {e.colno})")
                        continue
                    if not isinstance(obj, dict):
                        bad(i, f"expected a JSON object, got {type(obj).__name__}")
                        continue
                    yield i, obj
        elif suffix == ".json":
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise DataError(f"not valid JSON ({e.msg})", str(path), e.lineno) from None
            if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
                data = next(iter(data.values()))  # {"data": [...]} wrappers
            if not isinstance(data, list):
                raise DataError("expected a JSON array of objects", str(path))
            for i, obj in enumerate(data, 1):
                if isinstance(obj, dict):
                    yield i, obj
                else:
                    bad(i, f"item {i} is not a JSON object")
        else:   # .csv
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                # csv rows may span lines (quoted newlines): report the line the row starts on.
                start = reader.line_num + 1
                for obj in reader:
                    yield start, dict(obj)
                    start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text ({e.reason})", str(path)) from None


def parse_each(rows: Iterable[tuple[int, dict]], path: str, on_bad_row: str,
               parse: Callable[[int, dict], T]) -> tuple[list[T], list[SkippedRow]]:
    """Apply `parse(line, row)` to each row; a BadRow becomes a DataError or a SkippedRow."""
    skipped: list[SkippedRow] = []
    return list(iter_parsed(rows, path, on_bad_row, parse, skipped)), skipped


def iter_parsed(rows: Iterable[tuple[int, dict]], path: str, on_bad_row: str,
                parse: Callable[[int, dict], T], skipped: list[SkippedRow]) -> Iterator[T]:
    """`parse_each` one row at a time; skipped rows are appended to `skipped`."""
    for line, row in rows:
        try:
            yield parse(line, row)
        except BadRow as e:
            if on_bad_row == "skip":
                skipped.append(SkippedRow(path, line, str(e)))
            else:
                raise DataError(str(e), path, line,
                                hint="fix the row, or pass --on-bad-row skip to record it and go on") from None


def field(row: dict, name: str, types: type | tuple[type, ...] = str, *, nonempty: bool = True):
    """row[name], checked: missing, wrong type or empty is a BadRow naming the field."""
    if name not in row or row[name] is None:
        raise BadRow(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, types):
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise BadRow(f"field {name!r} should be {want}, got {type(value).__name__}")
    if nonempty and isinstance(value, (str, list)) and not value:
        raise BadRow(f"field {name!r} is empty")
    return value
