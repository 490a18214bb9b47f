"""Checkpoints: atomic saves, strict loading with a listed mismatch, no arbitrary unpickling."""

import os
import pickle

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model

import fpn_variants.io
from fpn_variants.checkpoint import Checkpointer

from .utils import make_cfg


def _model(neck="build_fpn_backbone", num_classes=4, seed=0):
    cfg = make_cfg(neck, channels=32)
    cfg.MODEL.ROI_HEADS.NAME = "StandardROIHeads"
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.ROI_BOX_HEAD.NAME = "FastRCNNConvFCHead"
    cfg.MODEL.ROI_BOX_HEAD.NUM_FC = 1
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    torch.manual_seed(seed)
    return build_model(cfg)


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _assert_state(model, state):
    current = model.state_dict()
    assert current.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(current[k], v), k


class _Harmful:
    """Unpickling it would create ``path``: stands for any code a pickle can run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _fail_midway(obj, f, *args, **kwargs):
    f.write(b"PK\x03\x04 half a checkpoint")
    raise OSError("No space left on device")


def test_a_save_that_fails_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = _model()
    first = _state(model)
    Checkpointer(model, str(tmp_path)).save("model_0000000")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    with monkeypatch.context() as m:
        m.setattr(torch, "save", _fail_midway)
        with pytest.raises(OSError, match="No space left"):
            Checkpointer(model, str(tmp_path)).save("model_0000001")
    # A failure while the tag is replaced: the new file is complete but not named by the tag.
    real_replace = os.replace

    def replace(src, dst):
        if dst.endswith("last_checkpoint"):
            raise OSError("killed")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(fpn_variants.io.os, "replace", replace)
        with pytest.raises(OSError, match="killed"):
            Checkpointer(model, str(tmp_path)).save("model_0000002")

    assert (tmp_path / "last_checkpoint").read_text() == "model_0000000.pth"
    assert sorted(os.listdir(tmp_path)) == [
        "last_checkpoint",
        "model_0000000.pth",
        "model_0000002.pth",
    ]
    fresh = _model(seed=1)
    Checkpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    _assert_state(fresh, first)


def test_temporary_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    """A save killed mid-write (SIGKILL: no cleanup runs) leaves its hidden temporary file, up to
    the size of a checkpoint; the next save removes such files and nothing else."""
    model = _model()
    Checkpointer(model, str(tmp_path)).save("model_0000000")
    stale = [".model_final.pth.tmp-0badc0de", ".last_checkpoint.tmp-12345678"]
    for name in stale + [".keep", "notes.pth.tmp"]:
        (tmp_path / name).write_bytes(b"half a file")
    Checkpointer(model, str(tmp_path)).save("model_0000001")
    assert sorted(os.listdir(tmp_path)) == [
        ".keep",
        "last_checkpoint",
        "model_0000000.pth",
        "model_0000001.pth",
        "notes.pth.tmp",
    ]


def test_weights_of_another_variant_fail_with_the_mismatch_and_change_nothing(tmp_path):
    Checkpointer(_model("build_fpn_backbone"), str(tmp_path)).save("fpn")
    bifpn = _model("build_bifpn_backbone")
    before = _state(bifpn)
    with pytest.raises(ValueError) as e:
        Checkpointer(bifpn).load(str(tmp_path / "fpn.pth"))
    message = str(e.value)
    assert "missing keys: " in message and "backbone.cells" in message
    assert "unexpected keys: " in message
    assert "The file: MODEL.BACKBONE.NAME='build_fpn_backbone' (neck FPN version 1)" in message
    assert "This model: MODEL.BACKBONE.NAME='build_bifpn_backbone'" in message
    assert "--allow-partial-weights" in message
    _assert_state(bifpn, before)

    # Opting in loads what fits: the bottom-up network and the detector heads.
    Checkpointer(bifpn, allow_partial=True).load(str(tmp_path / "fpn.pth"))
    saved = torch.load(tmp_path / "fpn.pth", weights_only=True)["model"]
    for k in ("backbone.bottom_up.stem.conv1.weight", "roi_heads.box_predictor.bbox_pred.bias"):
        assert torch.equal(bifpn.state_dict()[k], saved[k])


def test_other_shapes_are_listed_and_resuming_is_always_strict(tmp_path):
    Checkpointer(_model(num_classes=4), str(tmp_path)).save("model_0000009")
    other = _model(num_classes=7)
    with pytest.raises(ValueError, match=r"weights of other shapes: .*cls_score.weight \(5, 64\) "):
        Checkpointer(other).load(str(tmp_path / "model_0000009.pth"))
    with pytest.raises(ValueError, match="--resume reads the last checkpoint of OUTPUT_DIR"):
        Checkpointer(other, str(tmp_path), allow_partial=True).resume_or_load("", resume=True)


def test_unreadable_or_missing_files_raise_clear_errors(tmp_path):
    model = _model()
    Checkpointer(model, str(tmp_path)).save("model_0000000")
    data = (tmp_path / "model_0000000.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated.pth is not a readable torch checkpoint"):
        Checkpointer(model).load(str(tmp_path / "truncated.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth does not exist"):
        Checkpointer(model).load(str(tmp_path / "missing.pth"))
    (tmp_path / "last_checkpoint").write_text("model_0000005.pth")
    with pytest.raises(FileNotFoundError, match="names .*model_0000005.pth, which does not exist"):
        Checkpointer(model, str(tmp_path)).resume_or_load("", resume=True)


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    model = _model()
    torch.save({"model": model.state_dict(), "extra": _Harmful(marker)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="Refusing to unpickle .*bad.pth"):
        Checkpointer(model).load(str(tmp_path / "bad.pth"))
    with open(tmp_path / "bad.pkl", "wb") as f:
        pickle.dump({"model": {"w": _Harmful(marker)}, "__author__": "x"}, f)
    with pytest.raises(ValueError, match="Refusing to unpickle .*bad.pkl: posix.mkdir"):
        Checkpointer(model).load(str(tmp_path / "bad.pkl"))
    assert not marker.exists()


def test_detectron2_pkl_files_of_numpy_arrays_load(tmp_path):
    """Model-zoo format (a full model) loads strictly; a Caffe2 ImageNet file covers the
    bottom-up network only, and loads partially by design."""
    model = _model()
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(tmp_path / "zoo.pkl", "wb") as f:
        pickle.dump({"model": arrays, "__author__": "test"}, f, protocol=2)
    fresh = _model(seed=1)
    Checkpointer(fresh).load(str(tmp_path / "zoo.pkl"))
    _assert_state(fresh, _state(model))

    conv1 = np.full(tuple(model.backbone.bottom_up.stem.conv1.weight.shape), 0.5, np.float32)
    with open(tmp_path / "R-18.pkl", "wb") as f:
        pickle.dump({"conv1_w": conv1}, f)
    Checkpointer(fresh).load(str(tmp_path / "R-18.pkl"))
    assert torch.equal(fresh.backbone.bottom_up.stem.conv1.weight, torch.from_numpy(conv1))
