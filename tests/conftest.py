"""Test session settings: the CPU thread count CI machines have, and room on disk for the
checkpoints the tests write."""

import shutil
import tempfile

import pytest
import torch

torch.set_num_threads(2)

# The tests' folders hold up to about 3.3 GB at once (checkpoints of ~100 MB; a passing test's
# tmp_path is deleted when it ends, see setup.cfg). A full disk does not fail a test cleanly: a
# checkpoint write that runs out of space can abort the whole process.
NEEDED_FREE_GB = 4.0


def free_space_problem(folder: str, needed_gb: float = NEEDED_FREE_GB):
    """What to fix when the disk of ``folder`` has less than ``needed_gb`` free, else None."""
    free_gb = shutil.disk_usage(folder).free / 1e9
    if free_gb >= needed_gb:
        return None
    return (
        f"only {free_gb:.1f} GB free on the disk of {folder}; the tests need {needed_gb:.0f} GB "
        f"for their checkpoints: free some space (earlier test sessions' folders are in "
        f"{folder}/pytest-of-*) or point TMPDIR at a larger disk"
    )


def pytest_sessionstart(session):
    problem = free_space_problem(tempfile.gettempdir())
    if problem:
        pytest.exit(problem, returncode=pytest.ExitCode.USAGE_ERROR)
