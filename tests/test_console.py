"""The tools' console: upstream notices a user cannot act on go to the log file only; the
project's own warnings (and any other) still reach the console."""

import os
import subprocess
import sys
import textwrap

from fpn_variants.console import is_upstream_warning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import logging, sys, warnings
    import torch
    from detectron2.utils.logger import setup_logger
    from fpn_variants.console import quiet_upstream_warnings

    setup_logger(sys.argv[1], name="fpn_variants")
    setup_logger(sys.argv[1], name="detectron2")  # the same file: written once
    quiet_upstream_warnings()
    quiet_upstream_warnings()  # a second call changes nothing
    torch.meshgrid(torch.arange(2), torch.arange(3))  # upstream: indexing argument
    logging.getLogger("torch.fx._symbolic_trace").warning(
        "is_fx_tracing will return true for both fx.symbolic_trace and torch.export. Please ..."
    )
    warnings.warn("Test dataset 'b' has other classes than 'a'.")  # a project-like warning
    warnings.warn("`torch.jit.script` is deprecated; but a DeprecationWarning", DeprecationWarning)
    """)


def test_upstream_warnings_go_to_the_log_file_only(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS="default")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "log.txt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    assert "torch.meshgrid" not in console and "is_fx_tracing" not in console
    assert console.count("UserWarning: Test dataset 'b' has other classes than 'a'.") == 1
    # same text, other category: not the upstream notice, so shown
    assert "DeprecationWarning: `torch.jit.script` is deprecated; but" in console
    log = (tmp_path / "log.txt").read_text()
    assert log.count("UserWarning: torch.meshgrid: in an upcoming release") == 1
    assert "torch.fx._symbolic_trace: is_fx_tracing will return true" in log
    assert "Test dataset" not in log  # shown on the console, not logged by this module


def test_is_upstream_warning_matches_category_and_start():
    assert is_upstream_warning("`torch.jit.script` is deprecated. Please switch", FutureWarning)
    assert not is_upstream_warning("`torch.jit.script` is deprecated.", UserWarning)
    assert not is_upstream_warning("fpn_variants: torch.meshgrid: in an upcoming release")
