"""The fast HF engine (issue 13): the in-place memory, the grouped-head attention, the host
syncs per step, the vectorized sampling draw, and the opt-in packed matmuls.

What must not change is covered by test_latent_parity / test_batching / test_hf_engine; here
the pieces are checked on their own, with the reason each is exact (or by how much not)."""

from __future__ import annotations

import pytest
import torch

from latentmas_ray.spec.config import MethodConfig
from latentmas_ray.engines.attention import gqa_sdpa_attention
from latentmas_ray.engines.hf import SamplingParams
from latentmas_ray.latent.rollout import latent_steps, prefill
from latentmas_ray.methods import get_method
from latentmas_ray.tasks.base import Sample
from tiny_model import build_tiny_model_dir


# ------------------------------------------------------------------------ attention
def test_grouped_attention_is_bit_identical_to_transformers_sdpa():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    class Attn:   # what the attention functions read from the module
        num_key_value_groups, is_causal, training = 3, True, False

    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 9, 1, 64, generator=g)                       # [B, H, 1, Dh]
    k, v = torch.randn(2, 4, 3, 50, 64, generator=g)                # [B, H_kv, T, Dh] each
    mask = torch.ones(4, 1, 1, 50, dtype=torch.bool)
    mask[0, ..., :20] = False                                       # a left-padded row
    ours, _ = gqa_sdpa_attention(Attn(), q, k, v, mask, scaling=0.125)
    ref, _ = sdpa_attention_forward(Attn(), q, k, v, mask, scaling=0.125)
    assert ours.shape == (4, 1, 9, 64)
    assert torch.equal(ours, ref)
    # a view of a larger buffer (what the slab cache hands over) gives the same numbers
    buf = torch.zeros(2, 4, 3, 80, 64)
    buf[:, :, :, :50] = torch.stack([k, v])
    view, _ = gqa_sdpa_attention(Attn(), q, buf[0, :, :, :50], buf[1, :, :, :50], mask, scaling=0.125)
    assert torch.equal(view, ref)


def test_engine_uses_grouped_attention_and_matches_stock(tiny_engine):  # noqa: F811
    from latentmas_ray.engines.hf import HFEngine
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert tiny_engine.model.config._attn_implementation == "gqa_sdpa"
    folder = build_tiny_model_dir()
    stock = HFEngine(AutoModelForCausalLM.from_pretrained(folder, local_files_only=True),
                     AutoTokenizer.from_pretrained(folder), grouped_attention=False)
    assert stock.model.config._attn_implementation == "sdpa"
    ids, mask = tiny_engine.pad_left([[5, 6, 7, 9, 11], [8], [12, 13]])
    a = tiny_engine.generate(tiny_engine.new_memory(3), ids, mask, 12, SamplingParams(0.0))
    b = stock.generate(stock.new_memory(3), ids, mask, 12, SamplingParams(0.0))
    assert a == b


# ------------------------------------------------------------------------ the memory
def test_memory_grows_in_place_and_exports_only_its_columns(tiny_engine):  # noqa: F811
    e = tiny_engine
    kv = e.new_memory(2)
    ids, mask = e.pad_left([[5, 6, 7], [8]])
    kv.reserve(3 + 4)
    e.forward(kv, mask, input_ids=ids)
    layer = kv.cache.layers[0]
    buf = layer.k_buf.data_ptr()
    one = torch.ones(2, 1, dtype=torch.long)
    for t in (9, 10, 11, 12):                                     # within the reserve: in place
        e.forward(kv, one, input_ids=torch.tensor([[t], [t]]))
    assert layer.k_buf.data_ptr() == buf and kv.length == 7 and layer.capacity == 7
    before = [x.clone() for x in (layer.keys, layer.values, kv.mask)]
    e.forward(kv, one, input_ids=torch.tensor([[1], [1]]))        # past it: grows, keeps data
    assert layer.capacity >= 7 + 256 and kv.length == 8
    assert torch.equal(layer.keys[:, :, :7], before[0]) and torch.equal(kv.mask[:, :7], before[2])
    state = kv.to_state("cpu")
    k0 = state["layers"][0][0]
    assert k0.shape[2] == 8 and k0.untyped_storage().nbytes() == k0.numel() * 4   # no reserve
    assert k0.data_ptr() != layer.keys.data_ptr()                  # a copy, not a view
    assert kv.reserved_nbytes() > kv.nbytes() == sum(
        t.numel() * 4 for pair in state["layers"] for t in pair)
    # rows and columns are cut in place and stay consistent with a fresh export
    kv.select_rows(torch.tensor([1]))
    assert torch.equal(kv.cache.layers[0].keys[0], k0[1]) and kv.mask.tolist() == [state["mask"][1].tolist()]
    kv.keep_columns(2, 6)
    assert torch.equal(kv.cache.layers[0].keys[0], k0[1, :, 2:6]) and kv.length == 4
    kv.check()


# ------------------------------------------------------------------------ host syncs
class SyncCounter:
    """Counts the tensor -> host reads (item, tolist, bool, int, float) while active."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__")

    def __init__(self, monkeypatch):
        self.n = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def spy(t, *a, _orig=original, **k):
                self.n += 1
                return _orig(t, *a, **k)
            monkeypatch.setattr(torch.Tensor, name, spy)


def test_no_host_sync_in_latent_steps_and_one_per_decode_step(tiny_engine, monkeypatch):  # noqa: F811
    e = tiny_engine
    ids, mask = e.pad_left([[5, 6, 7], [8]])
    kv = e.new_memory(2)
    h = prefill(e, kv, ids, mask)
    realign = e.realigner(True)                     # built (and checked) once per engine
    counter = SyncCounter(monkeypatch)
    latent_steps(e, kv, h, 6, realign)
    assert counter.n == 0
    steps = 10
    gen = e.generate(kv, ids, mask, steps, SamplingParams(0.0))
    monkeypatch.undo()
    n_steps = max(len(r) for r in gen)
    # the prompt's prefill checks its padding (a few reads), then one read per decode step
    # and one final transfer of the tokens
    assert counter.n <= (n_steps - 1) + 1 + 4, counter.n


# ------------------------------------------------------------------------ sampling
def test_vectorized_draw_is_torch_multinomial_per_row(tiny_engine):  # noqa: F811
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(3)) * 3
    for sp in (SamplingParams(0.8, 0.9, 40), SamplingParams(1.3, 1.0, None), SamplingParams(0.5, 0.5, 5)):
        for seed in range(4):
            gens = [torch.Generator().manual_seed(seed * 10 + i) for i in range(6)]
            ref_gens = [torch.Generator().manual_seed(seed * 10 + i) for i in range(6)]
            ours = [tiny_engine.pick(logits, sp, gens).tolist() for _ in range(3)]
            # the old per-row draw, on the same warped distribution
            x = logits / sp.temperature
            if sp.top_k:
                x = x.masked_fill(x < torch.topk(x, sp.top_k, dim=-1).values[:, -1:], float("-inf"))
            if sp.top_p < 1.0:
                srt, order = torch.sort(x, dim=-1, descending=True)
                p = srt.softmax(-1)
                drop = torch.zeros_like(p, dtype=torch.bool).scatter(-1, order, (p.cumsum(-1) - p) >= sp.top_p)
                x = x.masked_fill(drop, float("-inf"))
            probs = x.softmax(-1)
            ref = [[int(torch.multinomial(probs[i], 1, generator=g)[0]) for i, g in enumerate(ref_gens)]
                   for _ in range(3)]
            assert ours == ref
    # a finished row draws nothing: its generator is where it was
    gens = [torch.Generator().manual_seed(i) for i in range(6)]
    tiny_engine.pick(logits, SamplingParams(0.8), gens, finished=[True] + [False] * 5)
    assert torch.equal(gens[0].get_state(), torch.Generator().manual_seed(0).get_state())
    assert not torch.equal(gens[1].get_state(), torch.Generator().manual_seed(1).get_state())


# ------------------------------------------------------------------------ packed matmuls
PARITY = [
    Sample("p0", "t", "Natalia sold 48 clips in April and half as many in May. How many in all?", "72", "math"),
    Sample("p1", "t", "Which is a plan?\nA. 1\nB. 2\nC. 3\nD. 4", "A", "choice"),
]


@pytest.fixture(scope="module")
def packed_engine():
    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine
    from latentmas_ray.engines.packed_linear import PackedLinear

    e = HFEngine.load(ModelConfig(dtype="float32", device="cpu"), build_tiny_model_dir(),
                      packed_linear=True)
    assert isinstance(e.lm_head, PackedLinear)
    return e


def parity_token_differences(exact, fast) -> tuple[int, int]:
    """(greedy judger tokens that differ, tokens compared) between two engines over
    test_latent_parity's cases: m = 0 / 1 / 4 latent steps, both topologies."""
    differ = total = 0
    for steps in (0, 1, 4):
        for topo in ("sequential", "hierarchical"):
            cfg = MethodConfig(method="latent_mas", prompt=topo, latent_steps=steps,
                               latent_space_realign=True, max_new_tokens=12, temperature=0.0)
            a_runs = get_method("latent_mas")(exact, PARITY, cfg, run_seed=0)
            b_runs = get_method("latent_mas")(fast, PARITY, cfg, run_seed=0)
            for a, b in zip(a_runs, b_runs):
                x, y = a.agents[-1].output_ids, b.agents[-1].output_ids
                total += max(len(x), len(y))
                differ += sum(p != q for p, q in zip(x, y)) + abs(len(x) - len(y))
    return differ, total


def test_packed_linear_token_differences_on_the_parity_cases(tiny_engine, packed_engine):  # noqa: F811
    """Not bit-identical by design: report how many greedy tokens differ from the exact path
    on test_latent_parity's cases, and require the states to agree to rounding."""
    ids, mask = tiny_engine.pad_left([[5, 6, 7, 9, 11], [8]])
    h_exact = prefill(tiny_engine, tiny_engine.new_memory(2), ids, mask)
    h_packed = prefill(packed_engine, packed_engine.new_memory(2), ids, mask)
    torch.testing.assert_close(h_packed, h_exact, rtol=1e-4, atol=1e-4)
    differ, total = parity_token_differences(tiny_engine, packed_engine)
    print(f"\npacked_linear: {differ} of {total} greedy tokens differ from the exact path")
    assert differ <= total // 4, (differ, total)


# ------------------------------------------------------------------------ torch.compile
@pytest.fixture(scope="module")
def compiled_engine():
    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine

    return HFEngine.load(ModelConfig(dtype="float32", device="cpu", compile=True),
                         build_tiny_model_dir())


def compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


@pytest.mark.slow     # torch.compile's first graphs: 35-57 s on 2 cores
def test_compiled_steps_compile_a_few_graphs_not_one_per_step(tiny_engine, compiled_engine):  # noqa: F811
    """The one-position forward is compiled with dynamic shapes: once a first batch size
    has been seen and replaced (dynamo then makes the batch symbolic too), decodes with other
    prompt lengths, memory lengths, batch sizes and finishing rows add no graph; the states
    match the exact path to rounding."""
    sp = SamplingParams(0.0)
    before = compiled_graphs()
    for prompts in ([[5, 6, 7], [8, 9]], [[5, 6], [8], [20, 21, 22]]):        # warm-up
        ids, mask = compiled_engine.pad_left(prompts)
        compiled_engine.generate(compiled_engine.new_memory(len(prompts)), ids, mask, 12, sp)
    warm = compiled_graphs()
    assert warm > before, "no graph was compiled: --compile did not reach the steps"
    assert warm - before <= 4, warm - before
    ids, mask = compiled_engine.pad_left([[5, 6, 7, 9, 11, 12, 13], [8], [20, 21, 22, 23],
                                          [30, 31, 32, 33, 34, 35, 36, 37, 38, 39]])
    out = compiled_engine.generate(compiled_engine.new_memory(4), ids, mask, 20, sp)
    assert compiled_graphs() == warm, "a new graph per memory length or batch size"
    assert [len(r) for r in out] == [len(r) for r in tiny_engine.generate(
        tiny_engine.new_memory(4), ids, mask, 20, sp)]
    ids, mask = ids[:3], mask[:3]
    kv_a, kv_b = tiny_engine.new_memory(3), compiled_engine.new_memory(3)
    h_a = prefill(tiny_engine, kv_a, ids, mask)
    h_b = prefill(compiled_engine, kv_b, ids, mask)
    for _ in range(4):
        h_a = tiny_engine.forward(kv_a, torch.ones(3, 1, dtype=torch.long),
                                  inputs_embeds=h_a[:, None])[:, -1]
        h_b = compiled_engine.forward(kv_b, torch.ones(3, 1, dtype=torch.long),
                                      inputs_embeds=h_b[:, None])[:, -1]
    torch.testing.assert_close(h_b, h_a, rtol=1e-4, atol=1e-4)


@pytest.mark.slow     # more compiled graphs: 7-11 s
def test_compiled_steps_token_differences_on_the_parity_cases(tiny_engine, compiled_engine):  # noqa: F811
    """Fused kernels round differently: report how many greedy tokens differ from the exact
    path on the parity cases (the exact path stays the default)."""
    differ, total = parity_token_differences(tiny_engine, compiled_engine)
    print(f"\ncompile: {differ} of {total} greedy tokens differ from the exact path")
    assert differ <= total // 4, (differ, total)


# ------------------------------------------------------------------------ grouped-matmul decode
@pytest.fixture(scope="module")
def matmul_engine():
    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine

    return HFEngine.load(ModelConfig(dtype="float32", device="cpu", decode_attention="matmul"),
                         build_tiny_model_dir())


def grouped_inputs(dtype):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 9, 1, 64, generator=g).to(dtype)              # [B, H, 1, Dh]
    k, v = torch.randn(2, 4, 3, 50, 64, generator=g).to(dtype)       # [B, H_kv, T, Dh] each
    mask = torch.ones(4, 1, 1, 50, dtype=torch.bool)
    mask[0, ..., :20] = False                                        # a left-padded row
    return q, k, v, mask


class GroupedAttn:      # what the attention functions read from the module
    num_key_value_groups, is_causal, training, layer_idx = 3, True, False, 0


def test_matmul_attention_is_transformers_eager_attention_on_grouped_heads():
    """One position: the grouped matmuls give transformers' eager attention (which copies
    each key/value head G times first) and agree with sdpa to fp32 rounding; padded columns
    do not count, whatever they hold."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.qwen2.modeling_qwen2 import eager_attention_forward

    from latentmas_ray.engines.attention import gqa_matmul_attention

    q, k, v, mask = grouped_inputs(torch.float32)
    ours, _ = gqa_matmul_attention(GroupedAttn(), q, k, v, mask, scaling=0.125)
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    eager, _ = eager_attention_forward(GroupedAttn(), q, k, v, additive, scaling=0.125)
    sdpa, _ = sdpa_attention_forward(GroupedAttn(), q, k, v, mask, scaling=0.125)
    assert ours.shape == sdpa.shape == (4, 1, 9, 64)
    torch.testing.assert_close(ours, eager, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ours, sdpa, rtol=1e-5, atol=1e-5)
    k2 = k.clone()
    k2[0, :, :20] = 1e4                                              # garbage under the padding
    assert torch.equal(gqa_matmul_attention(GroupedAttn(), q, k2, v, mask, scaling=0.125)[0], ours)
    # the filled part of a preallocated buffer (the slab cache's view): read in place, the
    # unwritten columns (here 1e4, not zeros) get weight 0
    from latentmas_ray.engines.attention import whole_buffer

    buf = torch.full((2, 4, 3, 80, 64), 1e4)
    buf[:, :, :, :50] = torch.stack([k, v])
    assert whole_buffer(buf[0, :, :, :50]).data_ptr() == buf[0].data_ptr()
    assert whole_buffer(buf[0, :, :, :50]).shape == (4, 3, 80, 64)
    assert whole_buffer(buf[0, :, :, 5:55]).shape == (4, 3, 50, 64)        # not a prefix: as is
    assert whole_buffer(buf[0, :, :, :50].transpose(0, 1)).shape == (3, 4, 50, 64)
    in_place, _ = gqa_matmul_attention(GroupedAttn(), q, buf[0, :, :, :50], buf[1, :, :, :50],
                                       mask, scaling=0.125)
    torch.testing.assert_close(in_place, ours, rtol=1e-6, atol=1e-6)
    # bf16: to bf16 rounding of the fp32 result
    qb, kb, vb, _ = grouped_inputs(torch.bfloat16)
    low, _ = gqa_matmul_attention(GroupedAttn(), qb, kb, vb, mask, scaling=0.125)
    torch.testing.assert_close(low.float(), ours, rtol=2e-2, atol=2e-2)


def test_matmul_attention_token_differences_on_the_parity_cases(tiny_engine, matmul_engine):  # noqa: F811
    """Not bit-identical to sdpa: report how many greedy tokens differ on the parity cases;
    the memory ablations (an observer and a per-layer mask) run through it too."""
    differ, total = parity_token_differences(tiny_engine, matmul_engine)
    print(f"\ndecode_attention matmul: {differ} of {total} greedy tokens differ from the exact path")
    assert differ <= total // 4, (differ, total)
    cfg = MethodConfig(method="latent_mas", latent_steps=2, max_new_tokens=6, temperature=0.0,
                       memory="top_attention", memory_top_k=8)
    exact = get_method("latent_mas")(tiny_engine, PARITY, cfg, run_seed=0)
    fast = get_method("latent_mas")(matmul_engine, PARITY, cfg, run_seed=0)
    assert [len(r.agents[-1].output_ids) for r in fast] == [len(r.agents[-1].output_ids) for r in exact]
