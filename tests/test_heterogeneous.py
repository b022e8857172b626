"""Heterogeneous LatentMAS agents (issue 17): an agent on a second checkpoint of the same KV
shape (a tiny model with another seed) shares the memory, uses its own realignment, records
its model and changes the answer; a checkpoint of another shape is refused before any load;
the disaggregated chain (each role loading its own model) equals the colocated run."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml

from latentmas_ray.spec.config import MethodConfig, ModelConfig, RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.latent.realign import Realigner
from latentmas_ray.prompts import TOPOLOGY_FILES
from latentmas_ray.tasks.base import Sample
from tiny_model import build_model, build_tokenizer

# fp32 rounding of a D-wide matmul and a norm: the tiny model's realigned vectors have norm
# ~0.6 and entries up to ~0.25; the gap measured between matmul shapes is ~6e-8, a 0.1% wrong
# matrix gives ~2e-4, so this tolerance (~3e-6 here) sits 50x from each
FP32_RTOL, FP32_ATOL = 1e-5, 1e-6

SAMPLES = [
    Sample("h-short", "t", "2+3?", "5", "math"),
    Sample("h-long", "t", "Natalia sold 48 clips in April and half as many in May. "
           "How many clips did she sell altogether?", "72", "math"),
    Sample("h-choice", "t", "Which one?\nA. 12\nB. 24\nC. 48\nD. 72", "D", "choice"),
]


@functools.lru_cache(maxsize=None)
def second_model_dir() -> str:
    """The tiny model's shape and tokenizer, other random weights."""
    folder = Path(tempfile.mkdtemp(prefix="latentmas-tiny-b-"))
    tok = build_tokenizer()
    build_model(tok, seed=4321).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _agents_file(tmp_path, critic_model: str | None) -> str:
    data = yaml.safe_load(Path(TOPOLOGY_FILES["sequential"]).read_text())
    if critic_model:
        data["agents"][1]["model"] = critic_model
    path = tmp_path / "agents.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _cfg(tmp_path, critic_model, **method) -> RunConfig:
    return RunConfig(model=ModelConfig(dtype="float32", device="cpu"), method=MethodConfig(
        method="latent_mas", latent_steps=3, latent_space_realign=True, temperature=0.0,
        max_new_tokens=10, agents=_agents_file(tmp_path, critic_model), **method))


def test_an_agent_on_a_second_checkpoint(tmp_path, tiny_model_dir):
    from latentmas_ray.run.batch import Evaluator

    other = second_model_dir()
    hetero = Evaluator(_cfg(tmp_path, other), tiny_model_dir)
    assert set(hetero.engines) == {other} and hetero.engines[other] is not hetero.engine
    mixed = hetero.generate(SAMPLES)
    same = Evaluator(_cfg(tmp_path, None), tiny_model_dir, engine=hetero.engine).generate(SAMPLES)
    for r in mixed:
        assert [a.role for a in r.agents] == ["planner", "critic", "refiner", "judger"]
        assert [a.model for a in r.agents] == [tiny_model_dir, other, tiny_model_dir, tiny_model_dir]
    # the critic's thoughts come from the other weights: the answers change
    assert [r.agents[-1].output_ids for r in mixed] != [r.agents[-1].output_ids for r in same]
    # the store row records each agent's model
    from latentmas_ray.run.rows import result_row
    from latentmas_ray.tasks.scoring import score_samples
    row = result_row(SAMPLES[0], mixed[0], score_samples(SAMPLES[:1], [mixed[0].prediction])[0],
                     "latent_mas")
    assert [a["model"] for a in row["agents"]][1] == other


def test_each_agent_realigns_with_its_own_model(tmp_path, tiny_engine):
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.methods.latent_mas import run_batch

    other = second_model_dir()
    engine_b = HFEngine.load(ModelConfig(dtype="float32", device="cpu"), other)
    cfg = _cfg(tmp_path, other).method
    results = run_batch(tiny_engine, SAMPLES[:2], cfg, 0, save_latents=True,
                        engines={other: engine_b})
    own_a, own_b = tiny_engine.realigner(True), engine_b.realigner(True)
    # The run realigned each step's [B, D] batch, the check realigns a sample's [m, D] steps: a
    # matmul of another shape may round differently (it does on Intel, not on AMD), so the
    # match is to fp32 rounding. A wrong matrix is far outside it: the other model's, or this
    # model's own with a 0.1% perturbation (a near miss the tolerance must still catch).
    near_miss = {id(r): Realigner(r.matrix + 1e-3 * r.matrix.abs().mean()
                                  * torch.randn(r.matrix.shape, generator=torch.Generator().manual_seed(0)),
                                  r.target_norm, enabled=True) for r in (own_a, own_b)}
    for r in results:
        for role, realign, foreign in (("planner", own_a, own_b), ("critic", own_b, own_a)):
            saved = r.latents[role]
            torch.testing.assert_close(realign(saved["hidden"]), saved["fed"],
                                       rtol=FP32_RTOL, atol=FP32_ATOL, msg=role)
            for wrong in (foreign, near_miss[id(realign)]):
                with pytest.raises(AssertionError):
                    torch.testing.assert_close(wrong(saved["hidden"]), saved["fed"],
                                               rtol=FP32_RTOL, atol=FP32_ATOL)


def _reshaped(tmp_path, key: str, value) -> str:
    folder = tmp_path / f"other-{key}"
    shutil.copytree(second_model_dir(), folder)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    if key == "num_hidden_layers" and "layer_types" in config:
        config["layer_types"] = config["layer_types"][:1] * value
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


@pytest.mark.parametrize("key,value,named", [("num_hidden_layers", 3, "3 layers"),
                                             ("num_key_value_heads", 4, "4 KV heads")])
def test_another_shape_is_refused_before_any_load(tmp_path, tiny_model_dir, monkeypatch,
                                                  key, value, named):
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.run.batch import Evaluator

    def no_load(*a, **k):
        raise AssertionError("a model was loaded before the shapes were checked")

    monkeypatch.setattr(HFEngine, "load", no_load)
    cfg = _cfg(tmp_path, _reshaped(tmp_path, key, value))
    with pytest.raises(ConfigError) as e:
        Evaluator(cfg, tiny_model_dir)
    assert "\n" not in str(e.value)
    assert f"agent critic: model {cfg.method.agents[1]['model']} has {named}" in str(e.value)
    # text methods exchange text only: any checkpoint will do
    from latentmas_ray.spec.models import check_agent_models
    text_cfg = RunConfig(method=MethodConfig(method="text_mas", agents=cfg.method.agents))
    assert list(check_agent_models(text_cfg, tiny_model_dir)) == [cfg.method.agents[1]["model"]]


def test_disaggregated_roles_load_their_own_models(tmp_path, tiny_model_dir, tiny_engine):
    from actors.role_actor import RoleWorker
    from latentmas_ray.methods.disaggregated import run_chain
    from latentmas_ray.run.batch import Evaluator

    other = second_model_dir()
    cfg = _cfg(tmp_path, other)
    workers = {role: RoleWorker(cfg, tiny_model_dir, {}, role,
                                engine=None if role == "critic" else tiny_engine)
               for role in ("planner", "critic", "refiner", "judger")}
    assert workers["critic"].model_path == other
    chained = run_chain(workers, SAMPLES)
    colocated = Evaluator(cfg, tiny_model_dir, engine=tiny_engine).generate(SAMPLES)
    assert [r.agents[-1].output_ids for r in chained] == [r.agents[-1].output_ids for r in colocated]
    assert [a.model for a in chained[0].agents][1] == other
