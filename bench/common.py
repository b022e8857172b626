"""What every benchmark shares: the repository on sys.path, an offline environment, and the
machine it ran on (printed first). A benchmark starts with

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import REPO, DATASETS, hardware  # noqa: E402
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"      # the real benchmark files, beside the checkout
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Nothing may come from a hub; no usage reports; no tokenizer thread pools fighting torch's.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def hardware() -> str:
    """CPU model, cores, load average, torch threads and GPU, in one line."""
    import torch

    cpu = "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, load {load:.1f}, torch {torch.__version__} "
            f"with {torch.get_num_threads()} threads, {gpu}")
