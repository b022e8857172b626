"""The markers that split the suite (setup.cfg): a test that starts Ray in the test process
without the `ray` marker fails, so `-m "not ray"` cannot quietly start a cluster; a misspelt
marker is an error. Run on a planted test file with this suite's conftest and setup.cfg, and a
stand-in `ray` module whose is_initialized() a fixture turns on."""

from __future__ import annotations

import shutil
from pathlib import Path

pytest_plugins = "pytester"

TESTS = Path(__file__).resolve().parent

PLANTED = '''
import sys, types
import pytest

ray = types.ModuleType("ray")
ray.up = False
ray.is_initialized = lambda: ray.up
sys.modules["ray"] = ray


@pytest.fixture
def starts_ray():
    ray.up = True
    yield
    ray.up = False


def test_unmarked_starts_ray(starts_ray):
    pass


@pytest.mark.ray
def test_marked_starts_ray(starts_ray):
    pass


def test_unmarked_starts_ray_in_its_body():
    ray.up = True


def test_after_ray_was_left_up():
    ray.up = False


def test_no_ray():
    pass
'''


def _planted(pytester):
    shutil.copy(TESTS / "conftest.py", pytester.path / "conftest.py")
    shutil.copy(TESTS / "tiny_model.py", pytester.path / "tiny_model.py")
    shutil.copy(TESTS.parent / "setup.cfg", pytester.path / "setup.cfg")


def test_a_test_that_starts_ray_unmarked_fails(pytester):
    _planted(pytester)
    pytester.makepyfile(test_planted=PLANTED)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "test_planted.py")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["FAILED test_planted.py::test_unmarked_starts_ray - *",
                                 "FAILED test_planted.py::test_unmarked_starts_ray_in_its_body - *"])
    # once in each failure's report (a line of its own); the short summary repeats it only as
    # far as the terminal's width allows, so it is not counted
    failures = [ln for ln in result.stdout.lines
                if ln.startswith("this test starts Ray: mark it @pytest.mark.ray")]
    assert len(failures) == 2, result.stdout.str()


def test_a_misspelt_marker_is_an_error(pytester):
    _planted(pytester)
    pytester.makepyfile(test_typo="import pytest\n\n@pytest.mark.slwo\ndef test_x():\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "test_typo.py")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*'slwo' not found in `markers` configuration option*"])
