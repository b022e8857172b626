"""What makes two runs the same run (issue 24, spec/identity.py): the contents behind the file
names, the resolved device kind and dtype, vLLM's extra options and the hop payload; a folder
written before any of this (by commit 958bd70's code, tests/data/run_folder_958bd70) resumes."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from jobs.evaluate import run_identity
from latentmas_ray.errors import ConfigError
from latentmas_ray.prompts import load_prompt_file
from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, RunConfig, VLLMConfig
from latentmas_ray.spec.identity import comparable_config, precision_identity, run_id
from latentmas_ray.store.run_store import RunStore
from latentmas_ray.tasks.registry import load_task

OLD = Path(__file__).parent / "data" / "run_folder_958bd70"


def cfg_for(**kw) -> RunConfig:
    kw.setdefault("method", MethodConfig(method="baseline"))
    return RunConfig(task="arc_easy", max_samples=4, generate_bs=2, **kw)


def test_a_folder_written_by_older_code_resumes_and_records_its_identity(tmp_path):
    folder = tmp_path / "old"
    shutil.copytree(OLD, folder)
    assert "identity" not in json.loads((folder / "config.json").read_text())
    # the folder's own settings: 958bd70's defaults (latent_steps 0 then; 20 since issue 25)
    cfg = cfg_for(output=str(folder), method=MethodConfig(method="baseline", latent_steps=0))
    task = load_task("arc_easy", max_samples=4)
    store = RunStore(folder)
    store.open(cfg.to_dict(), identity=run_identity(cfg, task, {}))
    assert len(store.done_ids()) == 2                       # its rows count: it resumes
    recorded = json.loads((folder / "config.json").read_text())["identity"]
    assert recorded["device"] == "cpu" and recorded["dtype"] == "float32"
    assert len(recorded["data_sha256"]) == 64
    assert run_id(cfg.to_dict()) == run_id(json.loads((folder / "config.json").read_text())["run"])


def test_a_resume_after_editing_the_data_or_prompt_file_is_refused_in_one_line(tmp_path):
    from latentmas_ray.tasks.registry import demo_path

    data = tmp_path / "arc.jsonl"
    shutil.copy(demo_path(load_task("arc_easy").spec), data)
    prompts_file = tmp_path / "prompts.json"
    prompts_file.write_text('{"system": "You answer step by step."}')
    cfg = cfg_for(data=str(data), prompt_file=str(prompts_file), output=str(tmp_path / "run"))

    def open_run():
        task = load_task("arc_easy", str(data), max_samples=4)
        RunStore(cfg.output).open(cfg.to_dict(),
                                  identity=run_identity(cfg, task, load_prompt_file(cfg.prompt_file)))

    open_run()
    open_run()                                              # unchanged: resumes
    lines = data.read_text().splitlines()
    data.write_text("\n".join([lines[1], lines[0], *lines[2:]]) + "\n")   # two rows swapped
    with pytest.raises(ConfigError) as err:
        open_run()
    assert "\n" not in str(err.value)
    assert "written with other inputs: the data file's contents (" in str(err.value)
    data.write_text("\n".join(lines) + "\n")
    open_run()                                              # restored: resumes again
    prompts_file.write_text('{"system": "You answer in one line."}')
    with pytest.raises(ConfigError, match=r"other inputs: the prompt texts \("):
        open_run()


def test_resolved_precision_and_result_changing_execution_fields_are_identity(tmp_path):
    assert precision_identity("auto", "auto", gpu=False) == {"device": "cpu", "dtype": "float32"}
    assert precision_identity("auto", "auto", gpu=True) == {"device": "cuda", "dtype": "bfloat16"}
    assert precision_identity("cpu", "auto", gpu=True)["dtype"] == "float32"
    store = RunStore(tmp_path / "run")
    store.open(cfg_for().to_dict(), identity=precision_identity("auto", "auto", gpu=False))
    with pytest.raises(ConfigError, match=r"the device kind \(cpu -> cuda\); the resolved dtype "
                                          r"\(float32 -> bfloat16\)"):
        store.check_identity(precision_identity("auto", "auto", gpu=True))
    plain = cfg_for()
    quant = cfg_for(execution=ExecutionConfig(vllm=VLLMConfig(extra={"kv_cache_dtype": "fp8"})))
    assert run_id(quant.to_dict()) != run_id(plain.to_dict())
    with pytest.raises(ConfigError, match="holds a different run .*execution"):
        store.open(quant.to_dict())
    other_threads = cfg_for(execution=ExecutionConfig(torch_threads=3, replicas=2))
    assert run_id(other_threads.to_dict()) == run_id(plain.to_dict())   # still resumable
    dis = dict(ray=True, placement="disaggregated")
    kv = cfg_for(method=MethodConfig(method="latent_mas"), execution=ExecutionConfig(**dis))
    embeds = dataclasses.replace(kv, execution=ExecutionConfig(**dis, hop_payload="embeds"))
    assert comparable_config(kv.to_dict()) == comparable_config(
        cfg_for(method=MethodConfig(method="latent_mas")).to_dict())     # kv: as before
    assert comparable_config(embeds.to_dict())["execution"] == {"hop_payload": "embeds"}
