#!/usr/bin/env bash
# One prepared GPU check (issue 26): faithfulness on CUDA, engine steps at Qwen3-8B/14B shapes,
# the three methods end to end, plain vLLM vs ours and the hybrid (when vLLM imports), the
# `cuda`-marked tests (when pytest imports); one markdown table (bench/gpu_check.py says what).
#
#   bash bench/gpu_check.sh [--out results/gpu_check.md]   one GPU, <= 8 min on one H100, offline
#   bash bench/gpu_check.sh --cpu-smoke                    tiny shapes on CPU, < 1 min (in the suite)
#
# Python: $PYTHON, else .venv/bin/python when there, else python3 (a bare CUDA image's own).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false VLLM_LOGGING_LEVEL=${VLLM_LOGGING_LEVEL:-WARNING}
exec "$PY" bench/gpu_check.py "$@"
