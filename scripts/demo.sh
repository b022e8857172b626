#!/usr/bin/env bash
# The main job on its embedded default: LatentMAS on the shipped ARC-Easy sample with SmolLM2.
# Extra flags are passed through (e.g. --max_samples 50, --method text_mas).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/latentmas-ray run --method latent_mas --task arc_easy --max_samples 20 \
    --latent_steps 4 --max_new_tokens 64 --temperature 0 --generate_bs 10 "$@"
