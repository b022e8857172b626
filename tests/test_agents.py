"""Agents as data (issue 17): --agents files, the built-in topologies as files, bad input.

- Six agents (five thinking, one answering): the trace has their roles in order, and greedy
  tokens equal a batch-size-1 implementation of the same agents written here from the engine's
  forward alone; TextMAS runs the same file.
- The built-in topologies given as --agents files give the built-in run's tokens.
- Bad files fail in one line naming the file and the agent.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from latentmas_ray.spec.agents import load_agents_file
from latentmas_ray.spec.config import MethodConfig, RunConfig
from latentmas_ray.errors import ConfigError
from latentmas_ray.methods import get_method
from latentmas_ray.prompts import ANSWER_FORMAT, SYSTEM, TOPOLOGY_FILES
from latentmas_ray.tasks.base import Sample

SAMPLES = [
    Sample("a-short", "t", "2+3?", "5", "math"),
    Sample("a-long", "t", "Natalia sold 48 clips in April and half as many in May. "
           "How many clips did she sell altogether in April and May?", "72", "math"),
    Sample("a-choice", "t", "Which one?\nA. 12\nB. 24\nC. 48\nD. 72", "D", "choice"),
]

SIX = [
    {"role": f"thinker{i}", "name": f"Thinker {i}",
     "prompt": f"You are thinker {i} of five. Think about: {{question}}",
     **({"system": "You are terse."} if i % 2 else {})}
    for i in range(1, 6)
] + [{"role": "answerer", "name": "Answerer",
      "prompt": "Notes: {context}\nQuestion: {question}\n{answer_format}"}]


def _write(tmp_path, agents, name="agents.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"agents": agents}) if name.endswith(".yaml") else json.dumps(agents))
    return str(path)


def _greedy_bs1(engine, sample, agents, steps, max_new):
    """The same agents at batch size 1, from engine.forward / logits only: each thinker's
    prompt after the memory, then `steps` realigned latent thoughts; the answerer's prompt,
    then greedy decoding to a stop token."""
    from latentmas_ray.latent.cache import BatchKV

    def prompt_ids(agent):
        user = agent["prompt"].format(question=sample.question, context="",
                                      answer_format=ANSWER_FORMAT[sample.kind].format())
        msgs = [{"role": "system", "content": agent.get("system") or SYSTEM},
                {"role": "user", "content": user}]
        return torch.tensor([engine.tokenize(engine.render(msgs))])       # [1, L]

    realign = engine.realigner(False)
    kv = BatchKV.empty(1, engine.device, engine.model.config)
    one = torch.ones(1, 1, dtype=torch.long)
    for agent in agents[:-1]:
        ids = prompt_ids(agent)
        h = engine.forward(kv, torch.ones_like(ids), input_ids=ids)[:, -1]   # [1, D]
        for _ in range(steps):
            h = engine.forward(kv, one, inputs_embeds=realign(h)[:, None])[:, -1]
    ids = prompt_ids(agents[-1])
    h = engine.forward(kv, torch.ones_like(ids), input_ids=ids)[:, -1]
    out = []
    for _ in range(max_new):
        tok = int(engine.logits(h).argmax(-1))
        out.append(tok)
        if tok in engine.stop_token_ids:
            break
        h = engine.forward(kv, one, input_ids=torch.tensor([[tok]]))[:, -1]
    return out


def test_six_agents_equal_a_batch_size_1_implementation(tiny_engine, tmp_path):
    cfg = RunConfig(method=MethodConfig(method="latent_mas", latent_steps=2, temperature=0.0,
                                        max_new_tokens=10, agents=_write(tmp_path, SIX))).method
    results = get_method("latent_mas")(tiny_engine, SAMPLES, cfg, run_seed=1)
    for s, r in zip(SAMPLES, results):
        assert [a.role for a in r.agents] == [a["role"] for a in SIX]
        assert [a.name for a in r.agents] == [a["name"] for a in SIX]
        assert [a.latent_steps for a in r.agents] == [2] * 5 + [0]
        assert r.agents[-1].output_ids == _greedy_bs1(tiny_engine, s, SIX, 2, 10), s.id
    # TextMAS runs the same file: six chats in order, each reading the earlier ones' text
    text = get_method("text_mas")(tiny_engine, SAMPLES[:2], cfg, run_seed=1)
    for r in text:
        assert [a.role for a in r.agents] == [a["role"] for a in SIX]
        assert r.prediction == r.agents[-1].output


@pytest.mark.parametrize("method,topology", [("latent_mas", "sequential"),
                                             ("latent_mas", "hierarchical"),
                                             ("text_mas", "hierarchical")])
def test_builtin_topology_files_give_the_builtin_run(tiny_engine, tmp_path, method, topology):
    copy = tmp_path / f"{topology}.yaml"
    shutil.copy(TOPOLOGY_FILES[topology], copy)          # as a user's file: no longer built in
    common = dict(method=method, prompt=topology, latent_steps=2, temperature=0.0, max_new_tokens=8)
    builtin = MethodConfig(**common)
    from_file = MethodConfig(**common, agents=str(copy))
    assert from_file.agents and builtin.agents is None
    run = get_method(method)
    a = run(tiny_engine, SAMPLES, builtin, run_seed=3)
    b = run(tiny_engine, SAMPLES, from_file, run_seed=3)
    assert [[(t.role, t.name, t.input_ids, t.output_ids) for t in r.agents] for r in a] == \
        [[(t.role, t.name, t.input_ids, t.output_ids) for t in r.agents] for r in b]


def test_the_agents_are_part_of_the_run_id(tmp_path):
    from latentmas_ray.spec.identity import comparable_config, run_id

    plain = RunConfig().to_dict()
    assert "agents" not in comparable_config(plain)["method"]     # old run folders resume
    with_file = RunConfig(method=MethodConfig(agents=_write(tmp_path, SIX))).to_dict()
    assert run_id(with_file) != run_id(plain)
    assert RunConfig.from_dict(with_file).method.agents == with_file["method"]["agents"]


BAD = {
    "no_prompt": ([{"role": "a", "prompt": "{question}"}, {"role": "b"}], "agent 2 (b): no prompt"),
    "no_question": ([{"role": "a", "prompt": "Think hard."}, {"role": "b", "prompt": "{question}"}],
                    "agent 1 (a): prompt has no {question}"),
    "duplicate": ([{"role": "a", "prompt": "{question}"}, {"role": "a", "prompt": "{question}"}],
                  "agent 2 (a): duplicate role 'a'"),
    "missing_model": ([{"role": "a", "prompt": "{question}", "model": "/no/such/checkpoint"},
                       {"role": "b", "prompt": "{question}"}],
                      "agent 1 (a): model folder /no/such/checkpoint does not exist"),
    "unknown_key": ([{"role": "a", "prompt": "{question}", "temperature": 1}],
                    "agent 1 (a): unknown keys ['temperature']"),
    "bad_placeholder": ([{"role": "a", "prompt": "{question} {answer}"}],
                        "agent 1 (a): prompt uses unknown placeholders ['answer']"),
}


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("suffix", ["yaml", "json"])
def test_bad_agents_files_fail_in_one_line(tmp_path, name, suffix):
    from latentmas_ray.spec.flags import build_run_config
    from jobs.evaluate import build_parser

    agents, expected = BAD[name]
    path = _write(tmp_path, agents, f"bad.{suffix}")
    with pytest.raises(ConfigError) as e:
        build_run_config(build_parser().parse_args(["--agents", path]))
    message = str(e.value)
    assert "\n" not in message
    assert message == f"agents file {path}, {expected}" or message.startswith(
        f"agents file {path}, {expected}"), message


def test_agents_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="agents file .*nope.yaml does not exist"):
        load_agents_file(str(tmp_path / "nope.yaml"))
    broken = tmp_path / "broken.yaml"
    broken.write_text("agents: [ {role: a\n")
    with pytest.raises(ConfigError, match="broken.yaml does not parse"):
        load_agents_file(str(broken))
    with pytest.raises(ConfigError, match="--prompt_file overrides"):
        RunConfig(prompt_file="p.json", method=MethodConfig(agents=_write(tmp_path, SIX)))


def test_old_parts_without_the_agent_model_still_read(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latentmas_ray.store.schema import AGENT_TYPE, SCHEMA
    from latentmas_ray.store.run_store import RunStore

    old_agent = pa.struct([f for f in AGENT_TYPE if f.name != "model"])
    fields = [pa.field("agents", pa.list_(old_agent)) if f.name == "agents" else f for f in SCHEMA]
    row = {"id": "x", "task": "t", "method": "latent_mas", "sample_index": 0, "prediction": "5",
           "gold": "5", "correct": True, "extracted": "5", "error": None, "prompt_tokens": 3,
           "generated_tokens": 1, "latent_steps": 0, "seconds": 0.1, "hops": [],
           "agents": [{"role": "judger", "name": "Judger", "input_ids": [1], "output_ids": [2],
                       "prompt_tokens": 1, "generated_tokens": 1, "latent_steps": 0,
                       "seconds": 0.1}]}
    store = RunStore(tmp_path)
    store.parts.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([row], schema=pa.schema(fields)),
                   store.parts / "part-0.parquet")
    agents = store.read().column("agents").to_pylist()[0]
    assert agents[0]["role"] == "judger" and agents[0]["model"] is None
