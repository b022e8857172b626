"""`latentmas-ray score` end to end: JSONL predictions in, result rows and a closing line out."""

from __future__ import annotations

import json

import pytest

from latentmas_ray.cli import main


def _preds(tmp_path, rows, name="preds.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(p)


def test_scores_math_predictions(tmp_path, datasets_dir, capsys):
    data = str(datasets_dir / "gsm8k.jsonl")
    preds = _preds(tmp_path, [
        {"id": "0", "completion": "16-3-4=9 eggs, 9*2 = 18. \\boxed{18}"},
        {"id": 1, "completion": "The answer is \\boxed{3.0}"},        # int ids are fine
        {"id": "2", "completion": "I think \\boxed{7}"},               # wrong
        {"id": "3", "completion": ""},                                  # empty
    ])
    out = tmp_path / "scored.jsonl"
    assert main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds,
                 "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "2 passed, 2 failed"
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"]
    assert [r["correct"] for r in rows] == [True, True, False, False]
    assert rows[0]["extracted"] is not None and rows[3]["error"]


def test_reference_scoring_mode_is_strict(tmp_path, datasets_dir, capsys):
    data = str(datasets_dir / "gsm8k.jsonl")
    preds = _preds(tmp_path, [{"id": "0", "completion": "\\boxed{18.0}"}])
    main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds])
    assert capsys.readouterr().out.strip().endswith("1 passed, 0 failed")
    main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds, "--scoring", "reference"])
    assert capsys.readouterr().out.strip().endswith("0 passed, 1 failed")


def test_multiple_choice_demo_default(tmp_path, capsys):
    # no --data: the shipped ARC-Easy demo sample; row 0's gold is A
    preds = _preds(tmp_path, [{"id": "0", "completion": "So the answer is \\boxed{A}."},
                              {"id": "1", "completion": "\\boxed{Z}"}])
    assert main(["score", "--task", "arc_easy", "--predictions", preds]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 1 failed")


def test_unknown_id_is_an_error_naming_the_line(tmp_path, datasets_dir, capsys):
    data = str(datasets_dir / "gsm8k.jsonl")
    preds = _preds(tmp_path, [{"id": "0", "completion": "\\boxed{18}"},
                              {"id": "nope", "completion": "x"}])
    out = tmp_path / "out.jsonl"
    assert main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds,
                 "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "preds.jsonl:2" in err and "'nope'" in err and "not a sample of gsm8k" in err
    assert not out.exists()  # nothing half-written
    assert list(tmp_path.iterdir()) == [tmp_path / "preds.jsonl"]


def test_bad_rows_skip_mode_records_them(tmp_path, datasets_dir, capsys):
    data = str(datasets_dir / "gsm8k.jsonl")
    preds = _preds(tmp_path, [{"id": "0", "completion": "\\boxed{18}"}, "{broken",
                              {"id": "1"}, {"id": "0", "completion": "dup"},
                              {"id": "zz", "completion": "x"}])
    assert main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds]) == 2
    assert "preds.jsonl:2: not valid JSON" in capsys.readouterr().err
    out = tmp_path / "out.jsonl"
    assert main(["score", "--task", "gsm8k", "--data", data, "--predictions", preds,
                 "--on-bad-row", "skip", "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 0 failed")
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    skipped = sorted(r["line"] for r in rows if r.get("skipped"))
    assert skipped == [2, 3, 4, 5]


@pytest.mark.parametrize("argv,message", [
    (["--task", "nope"], "unknown task 'nope'"),
    (["--task", "gsm8k", "--data", "/does/not/exist.jsonl"], "does not exist"),
])
def test_bad_input_one_clear_error(tmp_path, argv, message, capsys):
    preds = _preds(tmp_path, [{"id": "0", "completion": "x"}])
    assert main(["score", *argv, "--predictions", preds]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_predictions_file(tmp_path, capsys):
    assert main(["score", "--task", "arc_easy", "--predictions", str(tmp_path / "p.jsonl")]) == 2
    assert "predictions file does not exist" in capsys.readouterr().err


def test_code_task_runs_the_plus_tests(tmp_path, datasets_dir, capsys):
    data = str(datasets_dir / "humanevalplus_hf.jsonl")
    rows = [json.loads(l) for l in open(data)][:2]
    preds = _preds(tmp_path, [
        {"id": rows[0]["task_id"],
         "completion": "```python\n" + rows[0]["prompt"] + rows[0]["canonical_solution"] + "\n```"},
        {"id": rows[1]["task_id"],
         "completion": "```python\ndef " + rows[1]["entry_point"] + "(*a):\n    return []\n```"},
    ])
    out = tmp_path / "o.jsonl"
    assert main(["score", "--task", "humanevalplus", "--data", data, "--predictions", preds,
                 "--output", str(out)]) == 0
    assert capsys.readouterr().out.strip().endswith("1 passed, 1 failed")
