"""Task registry: every local file loads with the right counts, ids, questions and golds; bad
input gives one clear error naming the file and line."""

from __future__ import annotations

import json

import pytest

from latentmas_ray.errors import ConfigError, DataError
from latentmas_ray.tasks.choice_tasks import gpqa_permutation
from latentmas_ray.tasks.registry import TASKS, load_task

EXPECTED = {"gsm8k": 1319, "aime2024": 30, "aime2025": 30, "gpqa": 198, "arc_easy": 2376,
            "arc_challenge": 1172, "mbppplus": 378, "humanevalplus": 164, "medqa": 300}
# The slices in tests/data (tests/data/SOURCES.md); gpqa's rows there are synthetic.
SLICE_ROWS = {"gsm8k": 36, "aime2024": 8, "aime2025": 13, "gpqa": 20, "arc_easy": 31,
              "arc_challenge": 31, "mbppplus": 16, "humanevalplus": 11, "medqa": 11}


def test_registry_has_the_nine_tasks():
    assert set(TASKS) == set(EXPECTED)


def test_registry_knows_the_full_row_counts():
    assert {name: spec.rows for name, spec in TASKS.items()} == EXPECTED


@pytest.mark.parametrize("name", sorted(SLICE_ROWS))
def test_slice_loads_with_exact_count(datasets_dir, name):
    # test_full_datasets.py::test_full_local_file_loads_with_exact_count: the full files
    spec = TASKS[name]
    loaded = load_task(name, str(datasets_dir / spec.local_file))
    assert len(loaded.samples) == SLICE_ROWS[name]
    assert loaded.skipped == []
    ids = [s.id for s in loaded.samples]
    assert len(set(ids)) == len(ids)
    for s in loaded.samples:
        assert s.task == name and s.kind == spec.kind and s.question.strip() and s.gold
        if s.kind == "choice":
            assert s.gold in "ABCD"
            assert "\nA. " in s.question and "\nD. " in s.question


@pytest.mark.parametrize("name,other", [("mbppplus", "mbppplus.jsonl"),
                                        ("humanevalplus", "humanevalplus.jsonl")])
def test_both_code_formats_give_the_same_ids(datasets_dir, name, other):
    hf = load_task(name, str(datasets_dir / TASKS[name].local_file)).samples
    native = load_task(name, str(datasets_dir / other)).samples
    assert [s.id for s in hf] == [s.id for s in native]
    assert all(s.entry_point for s in hf + native)


def test_known_rows(datasets_dir):
    # test_full_datasets.py::test_full_known_rows: the same rows by position in the full files
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
    # upstream row 255, answer "X": exact option text, not the first substring hit
    x = next(s for s in medqa if s.meta["options"] == ["VII", "VIIa", "X", "XII"])
    assert x.gold == "C"


def test_gpqa_shuffle_is_deterministic_and_seeded(datasets_dir):
    path = str(datasets_dir / "gpqa_diamond.csv")
    a = load_task("gpqa", path, seed=42).samples
    b = load_task("gpqa", path, seed=42).samples
    c = load_task("gpqa", path, seed=7).samples
    assert [(s.question, s.gold) for s in a] == [(s.question, s.gold) for s in b]
    assert [s.question for s in a] != [s.question for s in c]
    # the correct answer text sits behind the gold letter
    import csv
    rows = {r["Record ID"]: r for r in csv.DictReader(open(path, encoding="utf-8"))}
    for s in a:
        assert f"\n{s.gold}. {rows[s.id]['Correct Answer'].strip()}" in s.question
    # letters are spread, not always A
    assert len({s.gold for s in a}) == 4
    assert gpqa_permutation(42, "x") == gpqa_permutation(42, "x")


def test_demo_sample_is_shipped_and_default():
    loaded = load_task("arc_easy")
    assert loaded.source.startswith("demo:") and len(loaded.samples) == 50
    assert loaded.samples[0].id == "0"


def test_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'gsm9k'.*gsm8k"):
        load_task("gsm9k")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task("gsm8k", str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match="is a folder"):
        load_task("gsm8k", str(tmp_path))


def test_hub_offline_names_the_local_file_option():
    with pytest.raises(DataError, match="--data FILE"):
        load_task("gsm8k", "hub")


def _write(tmp_path, lines, name="data.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(p)


def test_malformed_rows_name_file_and_line(tmp_path):
    good = json.dumps({"question": "1+1?", "answer": "so #### 2"})
    path = _write(tmp_path, [good, "{not json", good])
    with pytest.raises(DataError, match=r"data.jsonl:2: not valid JSON.*--on-bad-row skip"):
        load_task("gsm8k", path)
    loaded = load_task("gsm8k", path, on_bad_row="skip")
    assert len(loaded.samples) == 2 and [s.line for s in loaded.skipped] == [2]

    missing = _write(tmp_path, [good, json.dumps({"question": "q"})], "m.jsonl")
    with pytest.raises(DataError, match=r"m.jsonl:2: missing field 'answer'"):
        load_task("gsm8k", missing)

    no_final = _write(tmp_path, [json.dumps({"question": "q", "answer": "no final"})], "f.jsonl")
    with pytest.raises(DataError, match=r"f.jsonl:1: .*####"):
        load_task("gsm8k", no_final)

    bad_gold = _write(tmp_path, [json.dumps({"question": "q", "answer": "#### ???"})], "g.jsonl")
    with pytest.raises(DataError, match=r"g.jsonl:1: unparseable gold answer"):
        load_task("gsm8k", bad_gold)

    aime = _write(tmp_path, [json.dumps({"problem": "p", "answer": "x1"})], "a.jsonl")
    with pytest.raises(DataError, match=r"a.jsonl:1: unparseable gold answer"):
        load_task("aime2024", aime)

    arc = _write(tmp_path, [json.dumps({"query": "Question: q", "choices": ["a", "b"], "gold": 5})])
    with pytest.raises(DataError, match="out of range"):
        load_task("arc_easy", arc)

    med = _write(tmp_path, [json.dumps([{"question": "q", "options": ["A. x", "B. y"],
                                         "answer": "z"}])], "med.json")
    with pytest.raises(DataError, match="unparseable gold answer"):
        load_task("medqa", med)


def test_empty_file_and_duplicate_ids(tmp_path):
    with pytest.raises(DataError, match="no rows"):
        load_task("gsm8k", _write(tmp_path, [""]))
    row = json.dumps({"id": 1, "problem": "p", "answer": "5"})
    with pytest.raises(DataError, match="appears twice"):
        load_task("aime2024", _write(tmp_path, [row, row]))


def test_max_samples_takes_the_first_rows(datasets_dir):
    loaded = load_task("gsm8k", str(datasets_dir / "gsm8k.jsonl"), max_samples=5)
    assert [s.id for s in loaded.samples] == ["0", "1", "2", "3", "4"]


def test_a_duplicate_past_max_samples_is_still_an_error(tmp_path):
    """Every row is checked, the rows past --max_samples too (ids by hash, then exactly)."""
    rows = [json.dumps({"id": i, "problem": "p", "answer": "5"}) for i in (1, 2, 3, 2)]
    with pytest.raises(DataError, match="sample id '2' appears twice"):
        load_task("aime2024", _write(tmp_path, rows), max_samples=2)


def test_samples_are_numbered_and_behave_as_a_list(datasets_dir):
    """load_task's samples (kept on disk) index, slice, iterate, compare and pickle as the
    list of the same samples; each carries its place in the task."""
    import pickle

    task = load_task("gsm8k", str(datasets_dir / "gsm8k.jsonl"), max_samples=30)
    eager = list(task.samples)
    assert len(task.samples) == 30 and [s.position for s in eager] == list(range(30))
    assert task.samples[7] == eager[7] and task.samples[-1] == eager[-1]
    assert task.samples[10:20] == eager[10:20] and task.samples[::7] == eager[::7]
    assert task.samples[25:400] == eager[25:] and task.samples[5:5] == []
    assert task.samples == eager and pickle.loads(pickle.dumps(task.samples)) == eager
    with pytest.raises(IndexError):
        task.samples[30]


def test_loading_holds_bytes_per_sample_not_the_samples(tmp_path):
    """A task of 20k rows is read a row at a time into a file: the Python memory allocated
    while loading peaks at a few tens of bytes a sample (an offset and an id hash), where the
    list of Samples it used to be costs ~2 KB a sample (issue 24: a 1M-sample driver)."""
    import tracemalloc

    from latentmas_ray.tasks.registry import demo_path

    demo = [json.loads(line) for line in demo_path(TASKS["arc_easy"]).read_text().splitlines()]
    n = 20_000
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({**demo[i % len(demo)], "id": f"q{i}"}) + "\n"
                            for i in range(n)))
    tracemalloc.start()
    task = load_task("arc_easy", str(path))
    _, peak = tracemalloc.get_traced_memory()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(task.samples) == n and task.samples[n - 1].id == "q19999"
    assert peak < 64 * n + (2 << 20), f"{peak / n:.0f} bytes a sample at the peak"
    assert held < 24 * n + (1 << 20), f"{held / n:.0f} bytes a sample held"
