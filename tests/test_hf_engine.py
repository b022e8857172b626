"""HFEngine: loading, vocab truncation, which hidden state, prompts, padding, stop tokens and
token accounting, the judger-cache quirk, and the BatchKV memory helpers."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM

from latentmas_ray.spec.config import MethodConfig, ModelConfig
from latentmas_ray.engines.hf import HFEngine, SamplingParams
from latentmas_ray.errors import ConfigError
from latentmas_ray.methods import get_method
from latentmas_ray.prompts import build_messages
from latentmas_ray.spec.seeding import sample_generator, sample_seed
from latentmas_ray.tasks.base import Sample
from tiny_model import MODEL_VOCAB

SAMPLES = [
    Sample("a", "t", "2+3?", "5", "math"),
    Sample("b", "t", "Natalia sold 48 clips in April and half as many in May. " * 3, "72", "math"),
    Sample("c", "t", "Pick one.\nA. x\nB. y\nC. z\nD. w", "A", "choice"),
]


# ----------------------------------------------------------------------------- loading
def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=str(missing)):
        HFEngine.load(ModelConfig(), str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty"):
        HFEngine.load(ModelConfig(dtype="float32", device="cpu"), str(tmp_path / "empty"))


def test_load_fp32_on_cpu_eval_and_vocab_truncated(tiny_engine, tiny_model_dir):  # noqa: F811
    n = len(tiny_engine.tokenizer)
    assert tiny_engine.dtype == torch.float32 and tiny_engine.device.type == "cpu"
    assert not tiny_engine.model.training
    assert tiny_engine.model.get_input_embeddings().weight.shape[0] == n < MODEL_VOCAB
    assert tiny_engine.lm_head.weight.shape[0] == n
    raw = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True)
    assert torch.equal(tiny_engine.model.get_input_embeddings().weight, raw.get_input_embeddings().weight[:n])
    assert torch.equal(tiny_engine.lm_head.weight, raw.get_output_embeddings().weight[:n])


# --------------------------------------------------------------------- the hidden state
def test_head_check_refuses_post_processed_logits_and_accepts_bf16(tiny_model_dir):  # noqa: F811
    """Start-up check: logits must be lm_head(final hidden state). A model that scales its
    logits (soft-capping) is refused in one line; a bf16 model, whose matmuls round
    coarsely, is not refused for its rounding."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    forward = model.forward

    def scaled(*args, **kw):
        out = forward(*args, **kw)
        out.logits = torch.tanh(out.logits / 1e-3) * 1e-3      # soft-capping at 1e-3
        return out
    model.forward = scaled
    with pytest.raises(ConfigError, match="post-processes logits"):
        HFEngine(model, tok)
    bf16 = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    assert HFEngine(bf16, tok).dtype == torch.bfloat16


def test_decode_attention_auto_is_matmul_in_half_precision_only(tiny_model_dir):  # noqa: F811
    """auto: grouped matmuls in bf16 (the GPU default), the exact sdpa in fp32; matmul on a
    model without sdpa attention is refused; bf16 decodes through both agree on the tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    engines = {}
    for dtype, mode, impl in ((torch.float32, "auto", "gqa_sdpa"), (torch.bfloat16, "auto", "gqa_matmul"),
                              (torch.bfloat16, "sdpa", "gqa_sdpa")):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=dtype)
        engines[dtype, mode] = HFEngine(model, tok, decode_attention=mode)
        assert engines[dtype, mode].model.config._attn_implementation == impl
    eager = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    with pytest.raises(ConfigError, match="needs the model's sdpa attention"):
        HFEngine(eager, tok, decode_attention="matmul")
    outs = []
    for key in ((torch.bfloat16, "auto"), (torch.bfloat16, "sdpa")):
        e = engines[key]
        ids, mask = e.pad_left([[5, 6, 7, 9], [8, 20]])
        outs.append(e.generate(e.new_memory(2), ids, mask, 10, SamplingParams(0.0)))
    differ = sum(a != b for x, y in zip(*outs) for a, b in zip(x, y))
    print(f"\nbf16 matmul vs sdpa: {differ} of {sum(map(len, outs[1]))} greedy tokens differ")
    assert differ <= 5, outs


def test_hidden_states_last_is_the_final_normed_state(tiny_engine):  # noqa: F811
    """transformers 5.19: hidden_states has n_layers+1 entries and the last one IS the
    decoder's last_hidden_state, i.e. after the final RMSNorm (not the raw last layer)."""
    model, dec = tiny_engine.model, tiny_engine.decoder
    ids = torch.tensor([tiny_engine.tokenize("hello there, plan the answer")])
    raw_last_layer = {}
    hook = dec.layers[-1].register_forward_hook(
        lambda mod, inp, out: raw_last_layer.setdefault("h", out[0] if isinstance(out, tuple) else out))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
            last = dec(input_ids=ids).last_hidden_state
    finally:
        hook.remove()
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    torch.testing.assert_close(out.hidden_states[-1], last, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(dec.norm(raw_last_layer["h"]), last)
    assert not torch.allclose(raw_last_layer["h"], last)           # the norm does something
    torch.testing.assert_close(tiny_engine.logits(last[:, -1]), out.logits[:, -1].float())


# ----------------------------------------------------------------- prompts and padding
def test_render_tokenize_pad_left(tiny_engine):  # noqa: F811
    msgs = build_messages("latent_mas", "sequential", "planner", "math", "2+3?")
    text = tiny_engine.render(msgs)
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert tiny_engine.render(msgs, think=True) == text + "<think>"
    short, long_ = tiny_engine.tokenize("hi"), tiny_engine.tokenize(text)
    assert tiny_engine.tokenizer.decode(long_) == text                      # no BOS/EOS added
    ids, mask = tiny_engine.encode(["hi", text])
    assert ids.shape == mask.shape == (2, len(long_))
    pad = len(long_) - len(short)
    assert mask[0].tolist() == [0] * pad + [1] * len(short)
    assert ids[0, :pad].eq(tiny_engine.pad_token_id).all() and ids[0, pad:].tolist() == short
    assert mask[1].all() and ids[1].tolist() == long_


def test_stop_tokens_are_generation_config_union_tokenizer_eos(tiny_engine):  # noqa: F811
    tok = tiny_engine.tokenizer
    expected = {tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")}
    assert tiny_engine.stop_token_ids == frozenset(expected)
    assert tok.eos_token_id in tiny_engine.stop_token_ids
    assert tiny_engine.pad_token_id == tok.convert_tokens_to_ids("<|endoftext|>")


# ------------------------------------------------------------------------ sampling
def test_pick_greedy_and_degenerate_sampling_agree(tiny_engine):  # noqa: F811
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    greedy = tiny_engine.pick(logits, SamplingParams(0.0), [None] * 3)
    gens = [torch.Generator().manual_seed(i) for i in range(3)]
    assert torch.equal(tiny_engine.pick(logits, SamplingParams(1.0, 1.0, 1), gens), greedy)      # top_k 1
    assert torch.equal(tiny_engine.pick(logits, SamplingParams(1.0, 1e-6, None), gens), greedy)  # top_p ~0
    # top_k keeps only the k best: many draws never leave them
    draws = {int(tiny_engine.pick(logits[:1], SamplingParams(5.0, 1.0, 3), [gens[0]])) for _ in range(200)}
    assert draws <= set(torch.topk(logits[0], 3).indices.tolist()) and len(draws) > 1


def test_sample_seeds_depend_on_run_seed_and_id_only():
    assert sample_seed(42, "x") == sample_seed(42, "x")
    assert len({sample_seed(42, "x"), sample_seed(43, "x"), sample_seed(42, "y")}) == 3
    a, b = sample_generator(1, "s", "cpu"), sample_generator(1, "s", "cpu")
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_top_k_default_comes_from_generation_config(tiny_engine, monkeypatch):  # noqa: F811
    assert tiny_engine.sampling(0.6, 0.95, None).top_k is None        # tiny model sets none
    monkeypatch.setattr(tiny_engine, "default_top_k", 20)              # Qwen3's config: 20
    assert tiny_engine.sampling(0.6, 0.95, None).top_k == 20
    assert tiny_engine.sampling(0.6, 0.95, 5).top_k == 5


# ------------------------------------------------------------------- token accounting
def _cfg(method, **kw):
    return MethodConfig(method=method, temperature=0.0, max_new_tokens=10, **kw)


@pytest.mark.parametrize("method", ["baseline", "text_mas", "latent_mas"])
def test_prompt_tokens_are_unpadded_lengths(tiny_engine, method):  # noqa: F811
    cfg = _cfg(method, latent_steps=2)
    results = get_method(method)(tiny_engine, SAMPLES, cfg, run_seed=0)
    lengths = set()
    for s, r in zip(SAMPLES, results):
        for a in r.agents:
            assert a.prompt_tokens == len(a.input_ids)
            assert tiny_engine.pad_token_id not in a.input_ids            # no pads recorded
            assert a.input_ids[0] == tiny_engine.tokenizer.convert_tokens_to_ids("<|im_start|>")
            assert a.generated_tokens == len(a.output_ids)
            lengths.add(a.prompt_tokens)
        assert r.prompt_tokens == sum(a.prompt_tokens for a in r.agents)
        assert r.generated_tokens == sum(a.generated_tokens for a in r.agents)
        assert r.latent_steps == (3 * cfg.latent_steps if method == "latent_mas" else 0)
        assert r.seconds == pytest.approx(sum(a.seconds for a in r.agents))
        assert r.to_dict()["agents"][0]["role"] == r.agents[0].role
    assert len(lengths) >= len(SAMPLES)                                  # really different lengths
    # the judger's prompt matches an independent render of the same messages
    judger = results[0].agents[-1]
    role = "single" if method == "baseline" else "judger"
    if method != "text_mas":
        msgs = build_messages(method, "sequential", role, "math", SAMPLES[0].question)
        assert judger.input_ids == tiny_engine.tokenize(tiny_engine.render(msgs))


def test_stop_token_ends_and_is_counted(tiny_engine, monkeypatch):  # noqa: F811
    """Make the 4th greedy token of sample 'b' a stop token: 'b' then ends with it (counted,
    length 4, text without it), while its batch neighbours run to max_new_tokens unchanged."""
    cfg = _cfg("baseline")
    free = get_method("baseline")(tiny_engine, SAMPLES, cfg, run_seed=0)
    stop = free[1].agents[0].output_ids[3]
    assert stop not in free[1].agents[0].output_ids[:3], "pick a sample whose 4th token is new"
    monkeypatch.setattr(tiny_engine, "stop_token_ids", tiny_engine.stop_token_ids | {stop})
    stopped = get_method("baseline")(tiny_engine, SAMPLES, cfg, run_seed=0)
    assert stopped[1].agents[0].output_ids == free[1].agents[0].output_ids[:4]
    assert stopped[1].generated_tokens == 4                              # the stop token counts
    for i in (0, 2):
        out = free[i].agents[0].output_ids
        cut = out.index(stop) + 1 if stop in out else len(out)
        assert stopped[i].agents[0].output_ids == out[:cut]


# ------------------------------------------------------------------- reference quirks
def _judger_memory(engine, monkeypatch, cfg):
    seen = []
    original = engine.generate

    def spy(kv, ids, mask, *args, **kwargs):
        seen.append((kv.length, kv.real_lengths().tolist(), mask.sum(1).tolist()))
        return original(kv, ids, mask, *args, **kwargs)

    monkeypatch.setattr(engine, "generate", spy)
    results = get_method("latent_mas")(engine, SAMPLES, cfg, run_seed=0)
    monkeypatch.undo()
    return seen[0], results


def test_judger_drops_cache_at_zero_steps_by_default(tiny_engine, monkeypatch):  # noqa: F811
    dropped, r_drop = _judger_memory(tiny_engine, monkeypatch, _cfg("latent_mas", latent_steps=0))
    kept, r_keep = _judger_memory(tiny_engine, monkeypatch,
                                  _cfg("latent_mas", latent_steps=0, judger_drops_cache_at_zero_steps=False))
    assert dropped[0] == 0 and dropped[1] == [0, 0, 0]                  # judger reads nothing
    # kept: the judger reads the 3 agents' real prompt tokens (m = 0 latents)
    expected = [sum(a.prompt_tokens for a in r.agents[:3]) for r in r_keep]
    assert kept[1] == expected and kept[0] > 0
    assert [r.agents[-1].output_ids for r in r_drop] != [r.agents[-1].output_ids for r in r_keep]
    # dropped == the judger prompt decoded alone, from an empty memory
    ids, mask = tiny_engine.pad_left([r.agents[-1].input_ids for r in r_drop])
    alone = tiny_engine.generate(tiny_engine.new_memory(3), ids, mask, 10, SamplingParams(0.0))
    assert alone == [r.agents[-1].output_ids for r in r_drop]
    # with m > 0 the cache is always passed, flag or not
    m2, _ = _judger_memory(tiny_engine, monkeypatch, _cfg("latent_mas", latent_steps=2))
    assert m2[1] == [e + 3 * 2 for e in expected]


@pytest.mark.parametrize("mode,expect", [("full", "all"), ("last_agent", "refiner"), ("latent_only", "latents")])
def test_memory_modes_pass_the_right_part(tiny_engine, monkeypatch, mode, expect):  # noqa: F811
    m = 3
    (length, real, _), results = _judger_memory(tiny_engine, monkeypatch,
                                                _cfg("latent_mas", latent_steps=m, memory=mode))
    for r, n in zip(results, real):
        prompts = [a.prompt_tokens for a in r.agents[:3]]
        want = {"all": sum(prompts) + 3 * m, "refiner": prompts[2] + m, "latents": m}[expect]
        assert n == want


# ------------------------------------------------------------------------- BatchKV
def test_batchkv_extend_slice_rows_and_transport(tiny_engine):  # noqa: F811
    e = tiny_engine
    kv = e.new_memory(2)
    ids, mask = e.pad_left([[5, 6, 7], [8]])
    start = kv.begin_segment()
    h = e.forward(kv, mask, input_ids=ids)                               # [2, 3, D]
    assert h.shape == (2, 3, e.hidden_size)
    kv.end_segment(start, latent=0)
    assert kv.mask.tolist() == [[1, 1, 1], [0, 0, 1]] and kv.next_pos.tolist() == [3, 1]
    # a second chunk: positions continue per row from the real count
    _, pos = kv.extend(torch.tensor([[0, 1], [1, 1]]))
    assert pos.tolist() == [[3, 3], [1, 2]]
    kv.mask, kv.next_pos = kv.mask[:, :3], torch.tensor([3, 1])          # undo the probe
    kv.check()
    layer = kv.cache.layers[0]
    cfg = e.model.config
    assert layer.keys.shape == (2, cfg.num_key_value_heads, 3, cfg.hidden_size // cfg.num_attention_heads)
    per_col = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads) * 4
    assert kv.nbytes() == 2 * 3 * per_col
    moved = kv.to("cpu")
    assert moved is not kv and moved.nbytes() == kv.nbytes()
    assert torch.equal(moved.cache.layers[1].values, kv.cache.layers[1].values)
    assert moved.segments == kv.segments
    kv.select_rows(torch.tensor([1]))
    assert kv.batch_size == 1 and kv.mask.tolist() == [[0, 0, 1]] and kv.cache.layers[0].keys.shape[0] == 1
    kv.keep_columns(2)
    assert kv.length == 1 and kv.cache.get_seq_length() == 1 and kv.segments[0] == dataclasses.replace(
        kv.segments[0], start=0, end=1)
    kv.check()


def test_user_prompt_templates_reach_the_model(tiny_engine):  # noqa: F811
    cfg = MethodConfig(method="baseline", temperature=0.0, max_new_tokens=2)
    r = get_method("baseline")(tiny_engine, SAMPLES[:1], cfg, run_seed=0,
                               prompts={"single": "Q: {question}\nA:"})[0]
    text = tiny_engine.tokenizer.decode(r.agents[0].input_ids)
    assert "<|im_start|>user\nQ: 2+3?\nA:<|im_end|>" in text
