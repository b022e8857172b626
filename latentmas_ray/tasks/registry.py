"""The nine benchmark tasks: where each comes from, how its rows parse, how it is scored.

`load_task(name, data=...)` is the one entry point. `data` is a local file (any of the formats in
../shared/datasets, plus the hub's own formats), "hub" for the dataset id the reference uses,
"demo" for the sample shipped in the package, or None: the demo sample when the task has one,
else the hub.
"""

from __future__ import annotations

import dataclasses
import hashlib
from array import array
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import ConfigError, DataError
from .base import Kind, Sample
from .choice_tasks import make_parse_arc, make_parse_gpqa, parse_medqa
from .files import ON_BAD_ROW, SkippedRow, iter_parsed, iter_rows
from .math_tasks import make_parse_aime, parse_gsm8k
from .sample_file import SampleFile

# rows, path, seed, on_bad_row, skipped (appended to) -> samples, one at a time
Parser = Callable[[Iterable[tuple[int, dict]], str, int, str, list[SkippedRow]], Iterator[Sample]]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: Kind
    hub: tuple[str, str | None, str]   # (dataset id, config, split) the reference loads
    local_file: str                    # its file name in ../shared/datasets
    rows: int                          # rows in that full file
    parse: Parser = field(repr=False, compare=False)
    demo_file: str | None = None       # shipped in latentmas_ray/data


def _rowwise(make: Callable[[int], Callable[[int, dict], Sample]]) -> Parser:
    """Adapt a per-row parser (row ordinal, row) -> Sample to the Parser signature. Rows without
    an id field get their ordinal position in the file as id."""
    def parse(rows, path, seed, on_bad_row, skipped):
        row_parser = make(seed)
        ordinal = 0

        def numbered(line: int, row: dict) -> Sample:   # the row's ordinal among the file's rows
            return row_parser(ordinal, row)

        for line, row in rows:
            yield from iter_parsed([(line, row)], path, on_bad_row, numbered, skipped)
            ordinal += 1
    return parse


def _code(name: str) -> Parser:
    def parse(rows, path, seed, on_bad_row, skipped):   # a few hundred rows: parsed as a list
        from . import code_tasks
        fn = code_tasks.parse_mbppplus if name == "mbppplus" else code_tasks.parse_humanevalplus
        samples, bad = fn(list(rows), path, on_bad_row)
        skipped += [s if isinstance(s, SkippedRow) else SkippedRow(path, *s) for s in bad]
        yield from samples
    return parse


TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    TaskSpec("gsm8k", "math", ("gsm8k", "main", "test"), "gsm8k.jsonl", 1319,
             _rowwise(lambda seed: parse_gsm8k)),
    TaskSpec("aime2024", "math", ("HuggingFaceH4/aime_2024", None, "train"), "aime2024.jsonl", 30,
             _rowwise(lambda seed: make_parse_aime("aime2024"))),
    TaskSpec("aime2025", "math", ("yentinglin/aime_2025", None, "train"), "aime2025.jsonl", 30,
             _rowwise(lambda seed: make_parse_aime("aime2025"))),
    TaskSpec("gpqa", "choice", ("fingertap/GPQA-Diamond", None, "test"), "gpqa_diamond.csv", 198,
             _rowwise(make_parse_gpqa)),
    TaskSpec("arc_easy", "choice", ("allenai/ai2_arc", "ARC-Easy", "test"), "arc_easy.jsonl", 2376,
             _rowwise(lambda seed: make_parse_arc("arc_easy")), demo_file="arc_easy_demo.jsonl"),
    TaskSpec("arc_challenge", "choice", ("allenai/ai2_arc", "ARC-Challenge", "test"),
             "arc_challenge.jsonl", 1172, _rowwise(lambda seed: make_parse_arc("arc_challenge"))),
    TaskSpec("mbppplus", "code", ("evalplus/mbppplus", None, "test"), "mbppplus_hf.jsonl", 378,
             _code("mbppplus")),
    TaskSpec("humanevalplus", "code", ("evalplus/humanevalplus", None, "test"),
             "humanevalplus_hf.jsonl", 164, _code("humanevalplus")),
    # MedQA has no hub id: the reference reads its own 300-question file (from AgentFlow).
    TaskSpec("medqa", "choice", ("(the reference's data/medqa.json)", None, "train"), "medqa.json",
             300, _rowwise(lambda seed: parse_medqa)),
]}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}") from None


@dataclass
class LoadedTask:
    spec: TaskSpec
    samples: Sequence[Sample]      # a SampleFile (on disk) from load_task; any sequence works
    skipped: list[SkippedRow]
    source: str   # a path, "hub:<id>" or "demo:<file>"


def demo_path(spec: TaskSpec) -> Path:
    assert spec.demo_file, spec.name
    return Path(str(resources.files("latentmas_ray") / "data" / spec.demo_file))


def load_task(name: str, data: str | None = None, *, seed: int = 42, on_bad_row: str = "error",
              max_samples: int = -1) -> LoadedTask:
    """Load a task's samples; `max_samples` takes the first N (in file order) after parsing
    (every row is still parsed and checked, ids included). The file is read and parsed one
    row at a time into a SampleFile (tasks/sample_file.py), each sample numbered with its
    `position`, so memory does not grow with the task."""
    spec = get_task(name)
    if on_bad_row not in ON_BAD_ROW:
        raise ConfigError(f"--on-bad-row must be one of {ON_BAD_ROW}, got {on_bad_row!r}")
    if data is None:
        data = "demo" if spec.demo_file else "hub"
    if data == "demo":
        if not spec.demo_file:
            raise ConfigError(f"task {name!r} ships no demo sample; pass --data FILE "
                              f"(a local copy of {spec.local_file})")
        path, source = demo_path(spec), f"demo:{spec.demo_file}"
    elif data == "hub":
        path, source = Path(f"hub:{spec.hub[0]}"), f"hub:{spec.hub[0]}"
    else:
        path = Path(data)
        source = str(path)

    def parse(skipped: list[SkippedRow], counter: list[int]) -> Iterator[Sample]:
        rows = iter(_hub_rows(spec)) if data == "hub" else iter_rows(path, on_bad_row, skipped)
        return spec.parse(_counting(rows, counter), str(path), seed, on_bad_row, skipped)

    skipped: list[SkippedRow] = []
    rows_read, hashes = [0], array("q")
    parsed = parse(skipped, rows_read)
    keep = max_samples if max_samples > 0 else None
    samples = SampleFile(dataclasses.replace(s, position=i)
                         for i, s in enumerate(_hashing_ids(parsed, hashes))
                         if keep is None or i < keep)
    if not rows_read[0] and not skipped:
        raise DataError("the file holds no rows", str(path))
    if _has_repeats(hashes):    # rare: find the repeated id exactly (a second parse)
        _check_unique(parse([], [0]), str(path))
    return LoadedTask(spec, samples, skipped, source)


def _counting(rows: Iterator[tuple[int, dict]], counter: list[int]) -> Iterator[tuple[int, dict]]:
    for row in rows:
        counter[0] += 1
        yield row


def _id_hash(sample_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sample_id.encode(), digest_size=8).digest(), "little",
                          signed=True)


def _hashing_ids(samples: Iterable[Sample], hashes: array) -> Iterator[Sample]:
    """The samples as they come, each id's 64-bit hash appended to `hashes` (8 bytes a
    sample, where a set of the ids would hold every string)."""
    for s in samples:
        hashes.append(_id_hash(s.id))
        yield s


def _has_repeats(hashes: array) -> bool:
    import numpy as np

    h = np.sort(np.frombuffer(hashes, dtype=np.int64))
    return bool((h[1:] == h[:-1]).any())


def _check_unique(samples: Iterable[Sample], path: str) -> None:
    """A DataError naming the first id that appears twice (none: the hashes collided)."""
    seen: set[str] = set()
    for s in samples:
        if s.id in seen:
            raise DataError(f"sample id {s.id!r} appears twice", path,
                            hint="ids must be unique within a task")
        seen.add(s.id)


def _hub_rows(spec: TaskSpec) -> list[tuple[int, dict]]:
    hub_id, config, split = spec.hub
    hint = (f"pass --data FILE with a local copy of the data (e.g. {spec.local_file}, "
            "see ../shared/datasets/SOURCES.md)")
    if spec.name == "medqa":
        raise DataError("MedQA is not on the hub; the reference ships it as data/medqa.json",
                        None, hint=hint)
    try:
        import datasets  # optional: only for hub loading
    except ImportError:
        raise DataError(f"loading {spec.name} from the Hugging Face hub ({hub_id}) needs the "
                        "`datasets` package and network access", None, hint=hint) from None
    try:
        ds = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline, unknown id, auth: all end the same way for the user
        raise DataError(f"could not load {hub_id!r} from the Hugging Face hub "
                        f"({type(e).__name__}: {str(e).splitlines()[0][:200]})", None,
                        hint=hint) from None
    return [(i + 1, dict(row)) for i, row in enumerate(ds)]
