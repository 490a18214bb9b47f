"""The shared file helpers: a folder assembled aside and renamed into place, and the one
weights-only loader."""

import io
import os

import pytest
import torch

from fpn_variants.io import replace_dir, staging_dir
from fpn_variants.model_zoo.weights import load_weights_only


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text)


def _read(folder, name):
    with open(os.path.join(folder, name)) as f:
        return f.read()


def test_a_staged_folder_replaces_the_old_one_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "release"
    target.mkdir()
    _write(target, "a.txt", "old")
    with staging_dir(target) as staging:
        assert os.path.dirname(staging) == str(tmp_path)
        _write(staging, "a.txt", "new")
        replace_dir(staging, target)
    assert _read(target, "a.txt") == "new"
    assert os.listdir(tmp_path) == ["release"]


def test_a_failed_step_after_the_rename_puts_the_old_folder_back(tmp_path):
    target = tmp_path / "release"
    target.mkdir()
    _write(target, "a.txt", "old")

    def manifest_write_fails():
        assert _read(target, "a.txt") == "new"  # called once the new folder is in place
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        with staging_dir(target) as staging:
            _write(staging, "a.txt", "new")
            replace_dir(staging, target, then=manifest_write_fails)
    assert _read(target, "a.txt") == "old"
    assert os.listdir(tmp_path) == ["release"]


def test_an_interrupted_staging_leaves_no_folder(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with staging_dir(tmp_path / "ds") as staging:
            _write(staging, "a.txt", "partial")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


class _Payload:
    pass


def test_weights_only_loading_reads_tensors_and_refuses_other_objects(tmp_path):
    buffer = io.BytesIO()
    torch.save({"model": {"w": torch.ones(2)}, "iteration": 3, "seen": {1, 2}}, buffer)
    data = load_weights_only(io.BytesIO(buffer.getvalue()), "the buffer")
    assert torch.equal(data["model"]["w"], torch.ones(2)) and data["seen"] == {1, 2}

    path = tmp_path / "bad.pth"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(ValueError, match=r"Refusing to unpickle x\.pth: .*Do this\. "):
        load_weights_only(path, "x.pth", unsafe_hint="Do this. ")
    assert isinstance(load_weights_only(path, "x.pth", allow_unsafe_pickle=True)["model"], _Payload)

    path.write_bytes(buffer.getvalue()[:40])
    with pytest.raises(ValueError, match="x.pth is not a readable torch checkpoint"):
        load_weights_only(path, "x.pth")
