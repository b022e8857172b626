"""`latentmas-ray run` refuses bad input with one clear message, before any model is loaded."""

from __future__ import annotations

import json
import re

import pytest

from latentmas_ray.cli import main
from latentmas_ray.spec.flags import build_run_config
from latentmas_ray.spec.identity import run_id
from latentmas_ray.cli import build_parser


@pytest.fixture(autouse=True)
def no_model_loading(monkeypatch):
    """Any attempt to load a model fails the test: these errors must come first."""
    import latentmas_ray.run.batch as ev

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
    assert c.to_dict() == b.to_dict() and run_id(c.to_dict()) == run_id(b.to_dict())
    bad = tmp_path / "bad.yaml"
    bad.write_text("latent_step: 3\n")
    with pytest.raises(Exception, match="unknown field 'latent_step'"):
        build_run_config(parser.parse_args(["run", "--config", str(bad)]))


def test_every_spec_field_with_a_flag_reaches_its_place():
    """The parser is built from the run specification: each flag lands in its field."""
    import typing

    from latentmas_ray.spec.flags import spec_flags

    values = {int: "3", float: "0.25", str: "x"}
    parser = build_parser()
    for name, (path, f, tp) in spec_flags().items():
        base = tp
        if type(None) in typing.get_args(tp):               # `int | None` -> int
            base = next(a for a in typing.get_args(tp) if a is not type(None))
        if typing.get_origin(base) is typing.Literal:
            choice = [c for c in typing.get_args(base) if c != f.default][0]
            argv, want = [f"--{name}", choice], choice
        elif base is bool:
            argv, want = [f"--{name}"], not f.default
        else:
            argv, want = [f"--{name}", values[base]], base(values[base])
        if name in ("placement", "hop_payload"):        # disaggregated needs --ray
            argv.append("--ray")
        if name == "hop_payload":
            argv = ["--ray", f"--{name}", "kv" if want != "kv" else "auto"]
            want = argv[-1]
        if name == "vllm_max_model_len":
            argv, want = [f"--{name}", "2048"], 2048
        if name == "vllm_gpu_memory_utilization":
            argv, want = [f"--{name}", "0.5"], 0.5
        if name == "num_gpus_per_replica":
            argv, want = [f"--{name}", "2"], 2.0
        if name in ("wandb_run_name", "wandb_group"):   # name a W&B project's run
            argv += ["--wandb", "p"]
        if name == "task":                               # a known task (checked by the parser)
            argv, want = [f"--{name}", "gsm8k"], "gsm8k"
        if name == "memory_layers":                      # goes with --memory layers
            argv, want = ["--memory", "layers", f"--{name}", "1,0"], "0,1"
        if name == "memory_top_k":
            argv, want = ["--memory", "top_key_norm", f"--{name}", "3"], 3
        if name == "agents":                             # a file, stored as its agents
            from latentmas_ray.spec.agents import load_agents_file
            from latentmas_ray.prompts import TOPOLOGY_FILES
            file = str(TOPOLOGY_FILES["hierarchical"])
            argv, want = [f"--{name}", file], [a.to_dict() for a in load_agents_file(file).agents]
        cfg = build_run_config(parser.parse_args(["run", *argv]))
        got = cfg
        for part in path:
            got = getattr(got, part)
        assert got == want, (name, got, want)


def test_config_json_holds_the_execution_and_reruns_it_exactly(tmp_path):
    from latentmas_ray.store.run_store import RunStore

    parser = build_parser()
    out = tmp_path / "r"
    a = build_run_config(parser.parse_args([
        "run", "--ray", "--replicas", "3", "--placement", "disaggregated", "--hop_payload", "auto",
        "--vllm_max_model_len", "2048", "--torch_threads", "1", "--output", str(out)]))
    assert a.execution.disaggregated and a.engine_kind == "hf"
    RunStore(out).open(a.to_dict())
    b = build_run_config(parser.parse_args(["run", "--config", str(out / "config.json")]))
    assert b == a and b.execution.replicas == 3 and b.execution.vllm.max_model_len == 2048
    c = build_run_config(parser.parse_args(["run", "--config", str(out / "config.json"),
                                            "--replicas", "1"]))
    assert c.execution.replicas == 1 and run_id(c.to_dict()) == run_id(a.to_dict())
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"run": {"execution": {"replica": 2}}}))
    with pytest.raises(Exception, match="unknown config field 'execution.replica'"):
        build_run_config(parser.parse_args(["run", "--config", str(bad)]))


def test_derived_facts_and_combinations_are_checked_once():
    from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, RunConfig
    from latentmas_ray.errors import ConfigError

    assert RunConfig().engine_kind == "hf"
    assert RunConfig(use_vllm=True).engine_kind == "hybrid"
    assert RunConfig(use_vllm=True, method=MethodConfig(method="baseline")).engine_kind == "vllm"
    with pytest.raises(ConfigError, match="add --ray"):
        ExecutionConfig(placement="disaggregated")
    with pytest.raises(ConfigError, match="--replicas must be >= 1"):
        ExecutionConfig(replicas=0)


def test_no_prefix_matching_and_a_suggestion(capsys):
    """argparse would take --max_sample as --max_samples; it is refused, with the closest flag,
    by the subcommand's parser (its usage, not the top level's)."""
    for argv in (["run", "--max_sample", "5"], ["run", "--max-sample", "5"],
                 ["demo", "--generate-b", "2"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        want = "--max_samples" if "sample" in argv[1] else "--generate_bs"
        assert e.value.code == 2 and f"(did you mean {want}?)" in err, err
        assert err.startswith(f"usage: latentmas-ray {argv[0]} ")
    with pytest.raises(SystemExit):
        main(["run", "--task", "gsm9k"])
    assert "did you mean gsm8k?" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["--task", "gsm9k"], ["--data", "/no/such.jsonl"], ["--model_name", "/no/such/model"],
    ["--prompt_file", "/no/prompts.json"],
])
def test_bad_input_refused_before_heavy_imports(argv, tmp_path):
    """A fresh process refuses a bad task, data file or model folder with torch, transformers
    and Ray never imported (they cost seconds before the user learns of a typo)."""
    import subprocess
    import sys

    probe = ("import sys\nfrom latentmas_ray.cli import main\n"
             "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
             "print('exit', code, [m for m in ('torch', 'transformers', 'ray') if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", probe, "run", "--output", str(tmp_path / "o"), *argv],
                       capture_output=True, text=True, timeout=120)
    assert p.stdout.strip() == "exit 2 []", (p.stdout, p.stderr)
    assert "error:" in p.stderr and "Traceback" not in p.stderr


def test_run_help_in_groups_one_spelling_every_default(capsys):
    from latentmas_ray.spec.flags import GROUPS, spec_flags
    from latentmas_ray.tasks.registry import TASKS

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    at = [out.index(f"\n{title}:\n") for title in GROUPS]
    assert at == sorted(at)                                   # every group, in order
    for name in spec_flags():
        assert len(re.findall(rf"^  --{name}(?: |$)", out, re.M)) == 1, name   # one help entry
        if "_" in name:
            assert f"--{name.replace('_', '-')}" not in out   # the dashed twin: accepted, not shown
    assert ", ".join(TASKS) in " ".join(out.split())
    parser = build_parser()
    run = parser._subparsers._group_actions[0].choices["run"]
    for action in run._actions:
        if action.option_strings and action.dest not in ("help", "config"):
            assert "default" in action.help, action.dest
