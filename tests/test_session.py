"""The test session's own checks (tests/conftest.py): a disk too full for the tests' checkpoints
stops the session at its start with what to fix, instead of a crash halfway."""

import collections
import os
import shutil
import subprocess
import sys

from .conftest import free_space_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Usage = collections.namedtuple("Usage", "total used free")
# A plugin loaded before the session starts: every disk has 0.2 GB free.
FULL_DISK = (
    "import collections, shutil\n"
    "shutil.disk_usage = lambda folder: collections.namedtuple('U', 'total used free')"
    "(100e9, 99.8e9, 0.2e9)\n"
)


def test_a_nearly_full_disk_is_named_with_what_to_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: Usage(100e9, 99.8e9, 0.2e9))
    problem = free_space_problem(str(tmp_path))
    assert f"only 0.2 GB free on the disk of {tmp_path}" in problem
    assert "pytest-of-*" in problem and "TMPDIR" in problem
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: Usage(100e9, 50e9, 50e9))
    assert free_space_problem(str(tmp_path)) is None


def test_the_session_stops_before_any_test_when_the_disk_is_too_full(tmp_path):
    (tmp_path / "full_disk.py").write_text(FULL_DISK)
    this_test = "tests/test_session.py::test_a_nearly_full_disk_is_named_with_what_to_fix"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", this_test, "-p", "full_disk", "-p", "no:cacheprovider"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), ROOT])},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # pytest's usage error: no test ran
    assert "only 0.2 GB free on the disk" in output and "passed" not in output
