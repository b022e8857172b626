"""`latentmas-ray run` refuses bad input with one clear message, before any model is loaded."""

from __future__ import annotations

import json

import pytest

from latentmas_ray.cli import main
from latentmas_ray.commands.run import build_run_config, run_id
from latentmas_ray.cli import build_parser


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Any attempt to load a model fails the test: these errors must come first."""
    import latentmas_ray.evaluate as ev

    def boom(*a, **k):
        raise AssertionError("a model was loaded before the bad input was reported")
    monkeypatch.setattr(ev.Evaluator, "__init__", boom)


@pytest.mark.parametrize("argv,message", [
    (["--method", "latent_mass"], "invalid choice: 'latent_mass'"),
    (["--task", "gsm9k"], "unknown task 'gsm9k'"),
    (["--latent_steps", "-1"], "--latent_steps must be >= 0"),
    (["--generate_bs", "0"], "--generate_bs must be >= 1"),
    (["--max_new_tokens", "0"], "--max_new_tokens must be >= 1"),
    (["--model_name", "/no/such/model"], "model folder /no/such/model does not exist"),
    (["--model_name", "Org/NotCached-1B"], "neither a local folder nor in the Hugging Face cache"),
    (["--data", "/no/such.jsonl"], "does not exist"),
    (["--prompt_file", "/no/prompts.json"], "prompt file /no/prompts.json does not exist"),
    (["--config", "/no/cfg.yaml"], "config file /no/cfg.yaml does not exist"),
])
def test_bad_input(argv, message, capsys, tmp_path):
    try:
        code = main(["run", "--output", str(tmp_path / "out"), *argv])
    except SystemExit as e:  # argparse's own choice errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err


def test_model_folder_without_config(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    assert main(["run", "--model_name", str(tmp_path / "m"), "--output", str(tmp_path / "o")]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_output_folder_of_a_different_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    cfg = {"run": {"task": "arc_easy", "method": {"method": "text_mas"}}, "format": 1}
    (out / "config.json").write_text(json.dumps(cfg))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert main(["run", "--model_name", str(model), "--output", str(out)]) == 2
    assert "holds a different run" in capsys.readouterr().err


def test_dashes_and_underscores_and_config_file(tmp_path):
    parser = build_parser()
    a = build_run_config(parser.parse_args(["run", "--max-new-tokens", "7", "--latent_steps", "2"]))
    assert a.method.max_new_tokens == 7 and a.method.latent_steps == 2
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: gsm8k\nlatent_steps: 5\nmax_new_tokens: 9\n")
    b = build_run_config(parser.parse_args(["run", "--config", str(cfg), "--max_new_tokens", "11"]))
    assert (b.task, b.method.latent_steps, b.method.max_new_tokens) == ("gsm8k", 5, 11)
    # a run's own config.json reruns it
    saved = tmp_path / "config.json"
    saved.write_text(json.dumps({"run": b.to_dict(), "format": 1}))
    c = build_run_config(parser.parse_args(["run", "--config", str(saved)]))
    assert c.to_dict() == b.to_dict() and run_id(c) == run_id(b)
    bad = tmp_path / "bad.yaml"
    bad.write_text("latent_step: 3\n")
    with pytest.raises(Exception, match="unknown field 'latent_step'"):
        build_run_config(parser.parse_args(["run", "--config", str(bad)]))
