"""The tools' console: upstream notices a user cannot act on go to the log file only; the
project's own warnings (and any other) still reach the console."""

import os
import subprocess
import sys
import textwrap

import fpn_variants.console
from fpn_variants.console import is_upstream_warning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import logging, sys, warnings
    import torch
    import fpn_variants.roi_align
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
    # the same notice at an upstream line (hidden) and at one of the project's (shown)
    tracing = "Converting a tensor to a Python boolean might cause the trace to be incorrect."
    upstream = "/venv/site-packages/detectron2/structures/boxes.py"
    warnings.warn_explicit(tracing, torch.jit.TracerWarning, upstream, 151)
    warnings.warn_explicit(tracing, torch.jit.TracerWarning, fpn_variants.roi_align.__file__, 9)
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
    assert console.count("TracerWarning: Converting a tensor") == 1
    assert "fpn_variants/roi_align.py:9: TracerWarning" in console
    # same text, other category: not the upstream notice, so shown
    assert "DeprecationWarning: `torch.jit.script` is deprecated; but" in console
    log = (tmp_path / "log.txt").read_text()
    assert log.count("UserWarning: torch.meshgrid: in an upcoming release") == 1
    assert "torch.fx._symbolic_trace: is_fx_tracing will return true" in log
    assert "Test dataset" not in log  # shown on the console, not logged by this module
    assert "detectron2/structures/boxes.py:151: TracerWarning: Converting a tensor" in log


def test_is_upstream_warning_matches_category_start_and_origin():
    torch_file = "/venv/site-packages/torch/jit/_script.py"
    notice = "`torch.jit.script` is deprecated. Please switch"
    assert is_upstream_warning(notice, FutureWarning, torch_file)
    assert not is_upstream_warning(notice, UserWarning, torch_file)
    assert not is_upstream_warning(notice, FutureWarning, fpn_variants.console.__file__)
    assert not is_upstream_warning("fpn_variants: torch.meshgrid: in an upcoming release")
