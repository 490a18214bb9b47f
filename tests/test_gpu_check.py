"""tools/gpu_check.py on the CPU: the code path a GPU machine runs (training in float32 and with
AMP, the device's outputs against the CPU's, the necks timed against a peer), one report."""

import importlib.util
import json
import os
import shlex

import pytest

from .utils import ROOT


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location(
        "gpu_check", os.path.join(ROOT, "tools", "gpu_check.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_check_runs_on_the_cpu_and_writes_its_report(gpu_check, tmp_path):
    pair = "effdet BiFPN D0 @512"
    args = ["--device", "cpu", "--quick", "--iterations", "2", "--detectors", "faster_rcnn",
            "--necks", "fpn", "bifpn", "--pairs", pair, "--repeats", "1",
            "--out", str(tmp_path)]  # fmt: skip
    results = gpu_check.main(args)
    assert [(r["cell"], r["amp"]) for r in results["training"]] == [
        ("faster_rcnn_fpn", False), ("faster_rcnn_fpn", True),
        ("faster_rcnn_bifpn", False), ("faster_rcnn_bifpn", True),
    ]  # fmt: skip
    assert all(r["finite"] and r["seconds_per_iteration"] > 0 for r in results["training"])
    assert [r["max_rel_diff"] for r in results["agreement"]] == [0.0, 0.0]  # CPU against CPU
    (timing,) = results["timing"]
    assert timing["pair"] == pair and timing["max_rel_diff"] < 1e-5
    assert timing["forward_ratio"] > 0 and timing["train_ratio"] > 0
    assert json.loads((tmp_path / "gpu_check.json").read_text()) == json.loads(json.dumps(results))
    report = (tmp_path / "gpu_check.md").read_text()
    assert "| faster_rcnn_bifpn | yes |" in report and f"| {pair} |" in report
    # its third line names the commit of the code that ran and the command
    assert results["command"] == shlex.join(["python", "tools/gpu_check.py", *args])
    assert f"by `{results['command']}`." in report.splitlines()[2]
    assert (results["commit"] or "commit not recorded") in report.splitlines()[2]


def test_cuda_on_a_machine_without_it_says_what_to_use(gpu_check, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cuda", "--out", str(tmp_path)])
    assert "no CUDA device (use --device cpu)" in capsys.readouterr().err
