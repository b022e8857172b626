"""Shared fixtures. The real benchmark files live in ../shared/datasets beside the checkout."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

# One intra-op torch thread for the whole test process: the tiny models gain nothing from
# threads, and on a 2-core machine with sandboxes or Ray workers busy beside it, OpenMP
# oversubscription made the suite ~10x slower (5 min instead of 30 s, measured).
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

from tiny_model import tiny_engine, tiny_model_dir  # noqa: E402,F401 (session fixtures)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:       # cluster/ (not an installed package) for every pytest form
    sys.path.insert(0, str(REPO))
DATASETS = REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    if not DATASETS.is_dir():
        pytest.skip(f"benchmark files not found at {DATASETS}")
    return DATASETS
