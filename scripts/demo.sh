#!/usr/bin/env bash
# The main job: baseline, TextMAS and LatentMAS on the same 8 shipped ARC-Easy questions with
# the embedded SmolLM2-135M, then their comparison (latentmas-ray demo; README "What the main job
# prints"). Resumable: a second call reuses every finished sample. Extra run flags apply to all
# three runs (e.g. --max_samples 20, --wandb PROJECT, --output DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/latentmas-ray demo "$@"
