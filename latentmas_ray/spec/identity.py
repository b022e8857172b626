"""What makes two runs the same run: the fields of a RunConfig whose change would change a
result, and the contents behind its file names. A run folder holds one run; a rerun of the same
command resumes it, anything that would change a finished sample's result is refused.

    comparable_config(config)      the config dict less what may change on a resume
    run_id(config)                 the default folder name: task-method-model-<hash>
    contents_identity(data, prompts)
                                   sha256 of the data file and of the prompt texts used
                                   (sample ids are row positions: an edited file would map old
                                   results onto new questions)
    precision_identity(device_kind, dtype)
                                   the resolved device kind and dtype: an "auto" run on CPU
                                   (fp32) and on a GPU (bf16) are different runs
    identity_changes(old, new)     what differs, as text for one error line

The agents file needs no hash of its own: the validated list of agents is in the config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

# Fields of config.json that may change between a run and its resumption: they do not change
# any sample's result (batches are padded so results are batch-invariant; where and how a run
# executes, `execution`, never changes a result, save EXECUTION_IDENTITY below; on_bad_row
# only which rows load).
RESUMABLE_FIELDS = ("output", "max_samples", "generate_bs", "execution", "on_bad_row")

# The parts of `execution` that do change results, with the value that reproduces what runs
# did before they were compared ("vllm.extra": quantization, kv_cache_dtype...; the
# disaggregated hop payload): at that value they are left out, so older folders resume.
EXECUTION_IDENTITY = {"vllm.extra": {}, "hop_payload": "kv"}

# Fields added after runs were stored, with the value that reproduces the older behaviour: at
# that value they are left out of the comparison (and the run id), so an older run folder,
# whose config.json lacks them, still resumes.
# A dotted name is a field of a section ("model.packed_linear").
LATER_FIELDS = {"use_vllm": False, "model.packed_linear": False, "model.compile": False,
                "model.decode_attention": "auto",
                "method.num_return_sequences": 1, "method.agents": None,
                "method.memory_layers": None, "method.memory_top_k": None}


def _get(d: dict[str, Any], dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def comparable_config(config: dict[str, Any]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in config.items()
           if k not in RESUMABLE_FIELDS}
    for name, default in LATER_FIELDS.items():
        *section, key = name.split(".")
        where = out[section[0]] if section and isinstance(out.get(section[0]), dict) else out
        if key in where and where[key] == default:
            del where[key]
    ex = config.get("execution") or {}
    kept = {name: _get(ex, name) for name, default in EXECUTION_IDENTITY.items()
            if _get(ex, name) not in (None, default)}
    if kept.get("hop_payload") and ex.get("placement") != "disaggregated":
        del kept["hop_payload"]                 # only a disaggregated run moves a payload
    if kept:
        out["execution"] = kept
    return out


def run_id(config: dict[str, Any]) -> str:
    """A stable folder name for a RunConfig dict: the same command maps to the same folder, so
    it resumes (fields that cannot change a result are left out of the hash)."""
    digest = hashlib.sha256(json.dumps(comparable_config(config), sort_keys=True).encode())
    name = config.get("model", {}).get("name_or_path")
    model = Path(name).name if name else "smollm2-135m"
    return f"{config['task']}-{config['method']['method']}-{model}-{digest.hexdigest()[:8]}"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def contents_identity(data: str | Path | None, prompts: dict[str, str] | None) -> dict[str, str]:
    """{"data_sha256", "prompts_sha256"} of what the run reads (a key only where it has one)."""
    out: dict[str, str] = {}
    if data is not None and Path(data).is_file():
        out["data_sha256"] = file_sha256(data)
    if prompts:
        out["prompts_sha256"] = hashlib.sha256(
            json.dumps(prompts, sort_keys=True).encode()).hexdigest()
    return out


def resolved_dtype(dtype: str, device_kind: str) -> str:
    """The dtype an "auto" run computes in (engines/text.resolve_dtype: bf16 on a GPU, fp32
    without CUDA); any other dtype as given."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device_kind == "cuda" else "float32"


def device_kind(device: str, gpu: bool) -> str:
    """"cuda" or "cpu": --device as given, "auto" by whether the model gets a GPU."""
    if device == "auto":
        return "cuda" if gpu else "cpu"
    return device.split(":")[0]


def precision_identity(device: str, dtype: str, gpu: bool) -> dict[str, str]:
    """The resolved device kind and dtype of a model on `device` (--device) with `gpu`."""
    kind = device_kind(device, gpu)
    return {"device": kind, "dtype": resolved_dtype(dtype, kind)}


NAMES = {"data_sha256": "the data file's contents", "prompts_sha256": "the prompt texts",
         "device": "the device kind", "dtype": "the resolved dtype"}


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two identities, for the keys both record (an older folder that
    lacks a key is not refused for it; it is recorded from then on)."""
    return [f"{NAMES.get(k, k)} ({str(old[k])[:12]} -> {str(new[k])[:12]})"
            for k in sorted(set(old) & set(new)) if old[k] != new[k]]
