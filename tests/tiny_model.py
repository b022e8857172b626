"""A tiny random causal LM + a real BPE tokenizer, built in-process (no hub, no network).

- Tokenizer: `tokenizers` ByteLevel BPE trained on a small corpus (vocab 300 incl. the ChatML
  specials <|endoftext|>, <|im_start|>, <|im_end|>), a ChatML chat template, wrapped as
  PreTrainedTokenizerFast. eos = <|im_end|>, pad = <|endoftext|> (as Qwen).
- Model: Qwen2 (hidden 64, 2 layers, 4 heads, 2 kv heads), UNTIED lm_head (so realignment is
  not the identity) and 320 vocab rows > len(tokenizer) (so the engine's vocab truncation runs).
  generation_config eos = [<|im_end|>, <|endoftext|>].
- Saved once per process to a temp folder, loadable with HFEngine.load.

Use: `from tiny_model import tiny_model_dir, tiny_engine` (pytest fixtures), or the plain
functions `build_tiny_model_dir()` / `load_tiny_engine()`.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import torch

try:                        # bench/gpu_check.py builds its model here on images without pytest
    import pytest
except ImportError:         # pragma: no cover
    pytest = None

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TOKENIZER_VOCAB = 300
MODEL_VOCAB = 320          # > len(tokenizer): exercises the truncation to len(tokenizer)
SEED = 1234

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "You are a careful assistant that works with other agents to solve problems.",
    "Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May?",
    "You are the Planner. Read the question and lay out a short step-by-step plan to solve it.",
    "You are the Critic. A plan for this question is available to you in latent form.",
    "You are the Refiner. Using them and the question, write an improved plan that is correct and concise.",
    "Solve the question yourself, reasoning step by step. Put the final answer inside \\boxed{}.",
    "The final answer must be one of the letters A, B, C or D, for example \\boxed{C}.",
    "Write the complete solution as one self-contained Python function in a markdown block.",
    "def add(a, b):\n    return a + b\n",
    "user system assistant the a of to and is in that it for with as on by plan answer",
    "0 1 2 3 4 5 6 7 8 9 10 12 24 48 72 100",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=TOKENIZER_VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML)


def build_model(tokenizer, seed: int = SEED):
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    assert len(tokenizer) < MODEL_VOCAB
    config = AutoConfig.for_model(
        "qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=MODEL_VOCAB,
        max_position_embeddings=4096, tie_word_embeddings=False,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    # A random init with std 0.02 gives near-uniform logits; scale the weights up a little so
    # greedy choices are well separated (robust token equality across batch shapes).
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.mul_(4.0)
    stops = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config = GenerationConfig(eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    return model


@functools.lru_cache(maxsize=None)
def build_tiny_model_dir() -> str:
    """Build once per process; returns the folder (config, safetensors, tokenizer files)."""
    folder = Path(tempfile.mkdtemp(prefix="latentmas-tiny-"))
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def load_tiny_engine():
    from latentmas_ray.spec.config import ModelConfig
    from latentmas_ray.engines.hf import HFEngine

    return HFEngine.load(ModelConfig(dtype="float32", device="cpu"), build_tiny_model_dir())


if pytest is not None:
    @pytest.fixture(scope="session")
    def tiny_model_dir() -> str:
        return build_tiny_model_dir()

    @pytest.fixture(scope="session")
    def tiny_engine():
        return load_tiny_engine()
