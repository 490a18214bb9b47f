"""Crash-safe file writes: readers see the old content or the new one, never a partial file."""

import contextlib
import glob
import os
import uuid
from typing import IO, Callable, List, Union

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "remove_temp_files"]

PathLike = Union[str, "os.PathLike[str]"]


# Temporary file of a target "<name>": ".<name>.tmp-<8 hex digits>" in the same folder.
_TMP = ".tmp-"


def _fsync_dir(path: str) -> None:
    with contextlib.suppress(OSError):  # not supported on every platform / filesystem
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, fsync it, then ``os.replace`` it
    onto ``path``. If ``write`` raises (or the process dies), ``path`` is left as it was."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}{_TMP}{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    _fsync_dir(folder)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def remove_temp_files(folder: PathLike, pattern: str = "*") -> List[str]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` for targets whose name
    matches the glob ``pattern`` (a process killed mid-write runs no cleanup). Only the process
    that writes these targets may call it (it would remove another writer's file in progress).

    Returns:
        list[str]: the removed paths.
    """
    name = f".{pattern}{_TMP}" + "[0-9a-f]" * 8
    paths = sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), name)))
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    return paths
