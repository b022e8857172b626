"""Tests that need the full benchmark files in ../shared/datasets: row counts, known rows by
position, every gold answer, every row's input types, and that the slices in tests/data are
upstream rows. Each uses the `full_datasets_dir` fixture, so conftest marks it `full_data`:
it runs in CI (CI=true) and wherever the files are, and is deselected, with a closing note, on a
clone alone. The same tests on the slices live beside the code they test; where a test body
is shared it is called from here with the full data, unchanged.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

import pytest

import test_answers as answer_tests
import test_code_tasks as code_tests
import test_tasks as task_tests
from latentmas_ray.tasks.answers import normalize_gold_math
from latentmas_ray.tasks.registry import TASKS, load_task

EXPECTED = task_tests.EXPECTED
SLICES = Path(__file__).resolve().parent / "data"
_value = answer_tests._value


# ------------------------------------------------------------------------------------------
# the task registry (moved from test_tasks.py)

@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_local_file_loads_with_exact_count(full_datasets_dir, name):
    spec = TASKS[name]
    loaded = load_task(name, str(full_datasets_dir / spec.local_file))
    assert len(loaded.samples) == EXPECTED[name] == spec.rows
    assert loaded.skipped == []
    ids = [s.id for s in loaded.samples]
    assert len(set(ids)) == len(ids)
    for s in loaded.samples:
        assert s.task == name and s.kind == spec.kind and s.question.strip() and s.gold
        if s.kind == "choice":
            assert s.gold in "ABCD"
            assert "\nA. " in s.question and "\nD. " in s.question


def test_full_known_rows(full_datasets_dir):
    datasets_dir = full_datasets_dir
    gsm = load_task("gsm8k", str(datasets_dir / "gsm8k.jsonl")).samples
    assert gsm[0].id == "0" and gsm[0].gold == "18" and gsm[0].question.startswith("Janet")
    # thousands separators stay in the gold; the reference's regex stopped at the comma
    comma = next(s for s in gsm if "," in s.gold)
    assert comma.meta["reference_gold"] == comma.gold.split(",")[0]

    aime25 = load_task("aime2025", str(datasets_dir / "aime2025.jsonl")).samples
    assert aime25[0].gold == "70"
    assert not any("\x0c" in s.question or "\t" in s.question for s in aime25)
    assert any("\\frac" in s.question for s in aime25 if s.id in ("18", "27"))

    aime24 = load_task("aime2024", str(datasets_dir / "aime2024.jsonl")).samples
    assert [s.id for s in aime24][:2] == ["60", "61"] and aime24[0].gold == "204"

    arc = load_task("arc_easy", str(datasets_dir / "arc_easy.jsonl")).samples
    assert arc[0].question.startswith("Which statement best explains why photosynthesis")
    assert arc[0].gold == "A"

    medqa = load_task("medqa", str(datasets_dir / "medqa.json")).samples
    assert medqa[0].gold == "C" and medqa[0].question.count("\nC. Colorectal cancer") == 1
    assert medqa[255].gold == "C"  # answer "X": exact option text, not the first substring hit


def test_full_gpqa_shuffle_is_deterministic_and_seeded(full_datasets_dir):
    task_tests.test_gpqa_shuffle_is_deterministic_and_seeded(full_datasets_dir)


@pytest.mark.parametrize("name,other", [("mbppplus", "mbppplus.jsonl"),
                                        ("humanevalplus", "humanevalplus.jsonl")])
def test_full_both_code_formats_give_the_same_ids(full_datasets_dir, name, other):
    task_tests.test_both_code_formats_give_the_same_ids(full_datasets_dir, name, other)


# ------------------------------------------------------------------------------------------
# every gold answer (test_answers.py runs the same tests on the slices)

@pytest.fixture(scope="module")
def full_gsm8k_rows(full_datasets_dir) -> list[tuple[str, str]]:
    """(gold as written after '#### ', the reference's gold) for all 1319 test rows."""
    rows = answer_tests.read_gsm8k_golds(full_datasets_dir)
    assert len(rows) == 1319
    return rows


@pytest.fixture(scope="module")
def full_aime_golds(full_datasets_dir) -> list[str]:
    golds = answer_tests.read_aime_golds(full_datasets_dir)
    assert len(golds) == 60
    return golds


def test_full_gsm8k_every_gold_right_and_wrong(full_gsm8k_rows):
    answer_tests.test_gsm8k_every_gold_right_and_wrong(full_gsm8k_rows)


def test_full_gsm8k_gold_formats_in_the_data(full_gsm8k_rows):
    golds = [g for g, _ in full_gsm8k_rows]
    with_commas = [g for g in golds if "," in g]
    # The file writes some answers >= 1000 with thousands separators, most without.
    assert len(with_commas) == 14 and "2,125" in with_commas
    assert sum(1 for g in golds if _value(g) >= 1000 and "," not in g) == 117
    assert sorted(g for g in golds if g.startswith("-")) == ["-10", "-3"]
    assert all(re.fullmatch(r"-?\d{1,3}(,\d{3})+|-?\d+", g) for g in golds)
    for g in golds:
        assert normalize_gold_math(g) == str(int(_value(g)))


def test_full_aime_every_gold_right_and_wrong(full_aime_golds):
    answer_tests.test_aime_every_gold_right_and_wrong(full_aime_golds)


def test_full_reference_mode_gsm8k(full_gsm8k_rows):
    answer_tests.test_reference_mode_gsm8k(full_gsm8k_rows)


def test_full_reference_mode_aime(full_aime_golds):
    answer_tests.test_reference_mode_aime(full_aime_golds)


# ------------------------------------------------------------------------------------------
# the code files (test_code_tasks.py runs the same tests on the slices)

@pytest.fixture(scope="module")
def full_loaded(full_datasets_dir):
    return code_tests.load_code_files(full_datasets_dir)


def test_full_both_formats_parse_to_the_same_ids_and_counts(full_loaded):
    loaded = full_loaded
    for native, hf, n in (("mbppplus.jsonl", "mbppplus_hf.jsonl", 378),
                          ("humanevalplus.jsonl", "humanevalplus_hf.jsonl", 164)):
        a, b = loaded[native][2], loaded[hf][2]
        assert len(a) == len(b) == n
        assert [s.id for s in a] == [s.id for s in b]
        assert [s.entry_point for s in a] == [s.entry_point for s in b]
        for s in a + b:
            assert s.kind == "code" and s.meta["canonical_solution"]
    assert loaded["mbppplus_hf.jsonl"][2][0].id == "Mbpp/2"
    assert loaded["humanevalplus.jsonl"][2][0].id == "HumanEval/0"


def test_full_native_inputs_get_their_python_types_back(full_loaded):
    code_tests.test_native_inputs_get_their_python_types_back(full_loaded)


# ------------------------------------------------------------------------------------------
# the slices are what tests/data/SOURCES.md says they are

def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SLICES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_slices_are_rebuilt_byte_for_byte_from_upstream(full_datasets_dir, tmp_path):
    counts = _script("make_slices").build(full_datasets_dir, tmp_path)
    assert set(counts) == {p.name for p in SLICES.iterdir() if p.suffix in (".jsonl", ".json")}
    for name in counts:
        assert (tmp_path / name).read_bytes() == (SLICES / name).read_bytes(), name
    for name in counts:
        if name.endswith(".jsonl"):        # each line is an upstream line, in upstream order
            upstream = (full_datasets_dir / name).read_text(encoding="utf-8").splitlines()
            lines = (SLICES / name).read_text(encoding="utf-8").splitlines()
            where = [upstream.index(line) for line in lines]
            assert where == sorted(where) and len(lines) == counts[name]
    medqa = json.loads((full_datasets_dir / "medqa.json").read_text(encoding="utf-8"))
    assert all(row in medqa for row in json.loads((SLICES / "medqa.json").read_text("utf-8")))


def test_full_gpqa_slice_is_synthetic_in_the_real_format(full_datasets_dir, tmp_path):
    _script("make_gpqa_synthetic").main(tmp_path / "gpqa.csv")
    assert (tmp_path / "gpqa.csv").read_bytes() == (SLICES / "gpqa_diamond.csv").read_bytes()
    with (full_datasets_dir / "gpqa_diamond.csv").open(encoding="utf-8", newline="") as f:
        real = list(csv.DictReader(f))
    with (SLICES / "gpqa_diamond.csv").open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        synthetic = list(reader)
    assert reader.fieldnames == list(real[0])                 # the same 78 columns, in order
    real_text = {r[k].strip() for r in real for k in ("Question", "Explanation", "Record ID")}
    for row in synthetic:                      # no real question, explanation or record id
        assert not {row[k].strip() for k in ("Question", "Explanation", "Record ID")} & real_text
