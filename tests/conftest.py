"""Shared fixtures, and the policy for benchmark data.

Benchmark data: `datasets_dir` is tests/data, a small slice of each benchmark file that ships
with the repository (tests/data/SOURCES.md), so every test runs on a clone alone.
`full_datasets_dir` is the full files in ../shared/datasets beside the checkout, for the few
tests that need every row (row counts, every gold answer); those tests use that fixture, are
named test_full_* (most in tests/test_full_datasets.py) and carry the `full_data` marker.
- Without ../shared/datasets and outside CI, the full-data tests are deselected (not skipped),
  with a closing line saying how many and why.
- Under CI (CI=true) they always run, and a missing file fails them. Also under CI any test
  skipped because a file is missing counts as a failure.

Markers (setup.cfg): `ray`, `vllm`, `slow`, `cuda`, and `full_data` above; the fast core
subset is `pytest -m "not ray and not vllm and not slow"`. A test that starts Ray in this
process without the `ray` marker fails, so the subset cannot quietly start a cluster.
"""

from __future__ import annotations

import os
import re
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
DATASETS = Path(__file__).resolve().parent / "data"          # the shipped slices
# The full files, beside the checkout (LATENTMAS_FULL_DATASETS names another place, e.g. from a
# git worktree whose parent is not the checkout's).
FULL_DATASETS = Path(os.environ.get("LATENTMAS_FULL_DATASETS") or REPO.parent / "shared" / "datasets")
IN_CI = os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
# A skip reason that says a file or folder is missing (a CI failure, see the docstring); an
# uninstalled package or a missing OS capability is not matched.
_MISSING_FILE = re.compile(
    r"\b(?:file|folder|directory|path|dataset|datasets)s?\b.{0,80}?"
    r"\b(?:not found|does not exist|missing|absent)\b"
    r"|\b(?:not found|does not exist|missing|absent)\b.{0,80}?\b(?:file|folder|directory|path)s?\b"
    r"|no such file|shared/datasets", re.I | re.S)
_FULL_DESELECTED = pytest.StashKey[int]()   # how many full-data tests were deselected
_RAY_BEFORE = pytest.StashKey[bool]()        # Ray was up in this process before the test's setup
_CUDA_DESELECTED = pytest.StashKey[int]()   # how many `cuda` tests were deselected (no CUDA)


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    assert DATASETS.is_dir(), f"the benchmark slices are missing: {DATASETS}"
    return DATASETS


@pytest.fixture(scope="session")
def full_datasets_dir() -> Path:
    # Reached only when the files are there or under CI (otherwise these tests are deselected).
    if not FULL_DATASETS.is_dir():
        pytest.fail(f"the full benchmark files are not at {FULL_DATASETS} (CI must provide them)",
                    pytrace=False)
    return FULL_DATASETS


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "full_data: needs the full benchmark files in ../shared/datasets; runs in CI, "
        "deselected on a clone without them")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "full_datasets_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.full_data)
    cuda = [item for item in items if item.get_closest_marker("cuda")]
    if cuda and not torch.cuda.is_available():
        config.hook.pytest_deselected(items=cuda)
        items[:] = [item for item in items if not item.get_closest_marker("cuda")]
        config.stash[_CUDA_DESELECTED] = len(cuda)
    if IN_CI or FULL_DATASETS.is_dir():
        return
    full = [item for item in items if item.get_closest_marker("full_data")]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if not item.get_closest_marker("full_data")]
        config.stash[_FULL_DESELECTED] = len(full)



def _ray_is_up() -> bool:
    """Ray initialised in this process. Never imports Ray: a test that did not import it did
    not start it, and importing it here would cost every test run a second."""
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    item.stash[_RAY_BEFORE] = _ray_is_up()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    """A test that starts Ray in this process (in a fixture or in its body) must carry the
    `ray` marker, or `-m "not ray"` would not keep Ray out of the fast subset."""
    result = yield
    if (not item.get_closest_marker("ray") and not item.stash.get(_RAY_BEFORE, True)
            and _ray_is_up()):
        pytest.fail("this test starts Ray: mark it @pytest.mark.ray (setup.cfg's markers)",
                    pytrace=False)
    return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if _MISSING_FILE.search(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped for a missing file, which fails under CI: {reason}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cuda = config.stash.get(_CUDA_DESELECTED, 0)
    if cuda:
        terminalreporter.write_line(
            f"cuda: {cuda} test(s) deselected: no CUDA device here (bench/gpu_check.sh runs "
            "them on a GPU machine)", yellow=True)
    n = config.stash.get(_FULL_DESELECTED, 0)
    if n:
        terminalreporter.write_line(
            f"full_data: {n} test(s) deselected: the full benchmark files are not at "
            f"{FULL_DATASETS} (they run in CI, CI=true; every other test uses the slices in "
            f"tests/data)", yellow=True)
