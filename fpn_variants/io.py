"""Crash-safe files: atomic writes (readers see the old content or the new one, never a partial
file), folders assembled aside and then renamed into place, and an inter-process lock that a
crashed holder never leaves taken."""

import contextlib
import glob
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Union

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = [
    "FileLock",
    "LockHeldError",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "describe_holder",
    "is_held",
    "remove_temp_files",
    "replace_dir",
    "staging_dir",
]

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


@contextlib.contextmanager
def staging_dir(target: PathLike) -> Iterator[str]:
    """A new empty folder ``.<name>.tmp-<random>`` next to the folder ``target`` to assemble it
    in (then :func:`replace_dir`); whatever is left of it is removed when the block ends."""
    target = os.path.abspath(os.fspath(target))
    parent, name = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}{_TMP}", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the result is as readable as its files
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_dir(
    staging: PathLike, target: PathLike, then: Optional[Callable[[], None]] = None
) -> None:
    """Rename the folder ``staging`` to ``target`` (moving an existing ``target`` aside first),
    then call ``then()`` (more writes that belong to the same change). If a step fails,
    ``target`` is put back as it was and the error raised; on success the old one is removed."""
    staging, target = os.fspath(staging), os.path.abspath(os.fspath(target))
    parent, name = os.path.split(target)
    old = None
    if os.path.exists(target):
        old = os.path.join(parent, f".{name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    moved = False
    try:
        os.replace(staging, target)
        moved = True
        if then is not None:
            then()
    except BaseException:
        if moved:
            shutil.rmtree(target, ignore_errors=True)
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class LockHeldError(RuntimeError):
    """Another process holds a :class:`FileLock`; ``holder`` is what it recorded (pid, host,
    command, since), empty if it had not written it yet."""

    def __init__(self, message: str, holder: Dict[str, Any]):
        super().__init__(message)
        self.holder = holder


def describe_holder(holder: Dict[str, Any]) -> str:
    """A lock file's record as: process 123 on host h (since <time>): <command>."""
    if not holder.get("pid"):
        return "a process that has not recorded itself yet"
    return (
        f"process {holder['pid']} on host {holder.get('host', '?')} (since "
        f"{holder.get('since', '?')}): {holder.get('command', '?')}"
    )


class FileLock:
    """An exclusive advisory lock (``flock``) on the file ``path``, between processes.

    The holder records its pid, host, command line and start time in the file, so that a process
    refused the lock can say who has it. The operating system releases the lock when the holder's
    process ends in any way (also SIGKILL), so a crashed holder never leaves it taken; the file
    itself stays. Processes forked while it is held do not keep it (their copy of the descriptor
    is closed). Where ``fcntl`` does not exist (Windows) locking is a no-op.

    Use ``with FileLock(path):`` to wait for it, or ``acquire(wait=False)`` to fail at once with
    :class:`LockHeldError`; ``release()`` (or the end of the process) gives it back.
    """

    def __init__(self, path: PathLike):
        self.path = os.path.abspath(os.fspath(path))
        self._fd: Optional[int] = None

    def acquire(self, wait: bool = True) -> "FileLock":
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this FileLock")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
                except BlockingIOError:
                    holder = _read_holder(fd)
                    raise LockHeldError(
                        f"{self.path} is locked by {describe_holder(holder)}", holder
                    ) from None
            _write_holder(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _HELD[self.path] = self
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(self.path, None)
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)  # releases the flock

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


# The locks this process holds, by path.
_HELD: Dict[str, FileLock] = {}


def is_held(path: PathLike) -> bool:
    """Whether this process holds a :class:`FileLock` on ``path``."""
    return os.path.abspath(os.fspath(path)) in _HELD


def _forget_locks_in_child() -> None:
    # A forked child shares the parent's open file description: closing its descriptor (without
    # LOCK_UN, which would release the parent's lock) keeps it from holding the lock on after
    # the parent died.
    for lock in _HELD.values():
        with contextlib.suppress(OSError):
            os.close(lock._fd)
        lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_locks_in_child)


def _write_holder(fd: int) -> None:
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(sys.argv) or sys.executable,
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))


def _read_holder(fd: int) -> Dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 1 << 16).decode("utf-8"))
    except (OSError, ValueError):  # empty (not written yet) or being rewritten
        return {}
    return record if isinstance(record, dict) else {}
