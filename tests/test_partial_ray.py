"""A stop keeps every finished sample (issue 25), on a local Ray with the tiny model: the HF
replica streams the rows of samples as they finish inside a batch, the driver writes them at
once; a SIGTERM while the batch's slower rows still decode leaves the finished ones on disk,
and the rerun finishes the rest, equal to a clean run."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from rich.console import Console  # noqa: E402

from latentmas_ray.errors import Stopped  # noqa: E402
from latentmas_ray.spec.config import ExecutionConfig, MethodConfig, ModelConfig, RunConfig  # noqa: E402
from latentmas_ray.store.run_store import RunStore  # noqa: E402
from latentmas_ray.tasks.registry import load_task  # noqa: E402
from test_partial_rows import comparable, staggered_stop  # noqa: E402
from test_ray_driver import part_ids  # noqa: E402
from tiny_model import build_tiny_model_dir  # noqa: E402

N = 6               # one batch of N samples
LONG = 400          # the budget the slow rows decode to (the stop comes while they do)


def cfg_for(model_dir: str, out: Path, execution: ExecutionConfig | None = None) -> RunConfig:
    return RunConfig(task="arc_easy", max_samples=N, generate_bs=N, output=str(out),
                     model=ModelConfig(name_or_path=model_dir, dtype="float32", device="cpu"),
                     method=MethodConfig(method="latent_mas", latent_steps=2,
                                         max_new_tokens=LONG, temperature=0),
                     execution=execution or ExecutionConfig())


@pytest.fixture(scope="module")
def staggered(tmp_path_factory):
    """The tiny model with one more stop token in its generation_config, chosen so that this
    batch's rows end at different steps and some run to the budget; and the clean in-process
    rows of that model (one batch), by id."""
    import torch

    from latentmas_ray.run.batch import Evaluator

    folder = tmp_path_factory.mktemp("staggered") / "model"
    shutil.copytree(build_tiny_model_dir(), folder)
    samples = load_task("arc_easy", max_samples=N).samples
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                # as the replica (--torch_threads 1)
    try:
        ev = Evaluator(cfg_for(str(folder), Path("unused")), folder)
        free = [r.agents[-1].output_ids for r in ev.generate(samples)]
        stop = staggered_stop(free, ev.engine)
        ends = {o.index(stop) if stop in o else None for o in free}
        assert None in ends and len(ends) >= 2, ends       # some end early, some run on
        gen = json.loads((folder / "generation_config.json").read_text())
        eos = gen["eos_token_id"]
        gen["eos_token_id"] = (eos if isinstance(eos, list) else [eos]) + [stop]
        (folder / "generation_config.json").write_text(json.dumps(gen))
        clean = Evaluator(cfg_for(str(folder), Path("unused")), folder).run(samples)
    finally:
        torch.set_num_threads(threads)
    return str(folder), {r["id"]: comparable(r) for r in clean}


def drive(cfg: RunConfig, on_event=None, stop=None):
    from jobs.driver import run_on_ray
    from jobs.stop import NO_STOP

    task = load_task(cfg.task, max_samples=cfg.max_samples)
    store = RunStore(cfg.output)
    store.open(cfg.to_dict())
    events: list[tuple[str, dict]] = []

    def hook(kind, info):
        events.append((kind, info))
        if on_event:
            on_event(kind, info)

    run_on_ray(cfg, task, store, cfg.model.name_or_path, {}, on_event=hook,
               console=Console(file=io.StringIO(), width=200), stop=stop or NO_STOP)
    return store, events


@pytest.mark.ray
def test_a_stop_keeps_the_finished_samples_of_a_running_batch(staggered, tmp_path,
                                                             monkeypatch):
    from jobs.stop import StopSignal

    # The driver starts a local Ray in this process; left unset, ray.init turns token auth on
    # in os.environ for good (RAY_AUTH_MODE=token), and the clusters later tests start in
    # this process would then refuse their token-less driver subprocesses.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")

    model_dir, clean = staggered
    out = tmp_path / "run"
    cfg = cfg_for(model_dir, out, ExecutionConfig(ray=True, replicas=1, num_gpus_per_replica=0,
                                                  torch_threads=1))
    streamed: list[str] = []

    def sigterm_at_the_first_partial_rows(kind, info):
        if kind == "batch" and info.get("partial") and not streamed:
            streamed.extend(info["ids"])
            os.kill(os.getpid(), signal.SIGTERM)      # as `ray job stop` does to the driver

    stop = StopSignal()
    with stop.installed(), pytest.raises(Stopped, match="SIGTERM"):
        drive(cfg, sigterm_at_the_first_partial_rows, stop)
    assert streamed, "no rows came before the batch ended"
    kept = part_ids(out)
    assert len(kept) == len(set(kept)) and set(streamed) <= set(kept)
    assert 0 < len(kept) < N, "the stop came after the batch ended: the test says nothing"
    for r in RunStore(out).read().to_pylist():
        assert comparable(r) == clean[r["id"]]

    store, events = drive(dataclasses.replace(cfg))          # the rerun: the rest only
    after = part_ids(out)
    assert after[:len(kept)] == kept                          # the first session's parts stay
    assert sorted(after) == sorted(clean), "every sample exactly once"
    assert sorted(i for kind, info in events if kind == "batch" for i in info["ids"]) == \
        sorted(set(clean) - set(kept))
    for r in store.read().to_pylist():
        assert comparable(r) == clean[r["id"]]
