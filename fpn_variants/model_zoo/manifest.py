"""The manifest: its location, reading and writing it under a lock, names, order and checksums."""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from ..io import FileLock, atomic_write_text
from ..registry import NECK_REGISTRY

__all__ = [
    "MANIFEST_ENV",
    "NAME_RE",
    "NECK_NAMES",
    "REPO_ROOT",
    "ChecksumError",
    "PathLike",
    "check_name",
    "check_sha256",
    "default_manifest_path",
    "json_dumps",
    "list_models",
    "load_manifest",
    "locate_manifest",
    "lookup",
    "manifest_lock",
    "read_verified",
    "relpath",
    "resolve",
    "sha256sum",
    "sorted_names",
    "write_manifest",
]

PathLike = Union[str, "os.PathLike[str]"]

REPO_ROOT = Path(__file__).resolve().parents[2]
# Environment variable that overrides the default manifest.
MANIFEST_ENV = "FPN_VARIANTS_MANIFEST"
MANIFEST_FORMAT = 1

# Display names and table order (FPN baseline first, as mmdetection's tables do).
DETECTOR_ORDER = ("Faster R-CNN", "RetinaNet", "Mask R-CNN")
# Builder -> label: Detectron2's own FPN builders (the stock model), then the papers' necks.
NECK_NAMES = {
    "build_resnet_fpn_backbone": "FPN (Detectron2)",
    "build_retinanet_resnet_fpn_backbone": "FPN (Detectron2)",
    **{row.builder: row.label for row in NECK_REGISTRY if row.paper},
}
NECK_ORDER = ("FPN (Detectron2)", *(row.label for row in NECK_REGISTRY if row.paper))

# Model names become folder and file names.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ChecksumError(ValueError):
    """A file's sha256 differs from the one recorded in the manifest."""


def sha256sum(path: PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(
    actual: str, expected: str, *, name: str, what: str, path: PathLike, manifest: Path
) -> None:
    """Raise ChecksumError (naming the model, file, manifest and both hashes) if they differ."""
    if actual != expected:
        raise ChecksumError(
            f"model {name!r}: the {what} file {path} has sha256 {actual}, but the manifest "
            f"{manifest} expects {expected}. The file is corrupt or was modified: do not use it; "
            "delete it (a downloaded copy is then fetched again) or re-package the model."
        )


def read_verified(path: Path, expected: str, *, name: str, what: str, manifest: Path) -> bytes:
    """The bytes of ``path``, after checking their sha256 (so what is checked is what is used)."""
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    check_sha256(actual, expected, name=name, what=what, path=path, manifest=manifest)
    return data


def json_dumps(data: Any) -> str:
    """Indented JSON with a final newline; NaN and inf are refused."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def relpath(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (POSIX separators), or absolute if that is impossible."""
    try:
        return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()
    except ValueError:  # e.g. another drive on Windows
        return path.resolve().as_posix()


def resolve(base: Path, path: Optional[str]) -> Optional[Path]:
    """``base / path`` resolved (an absolute ``path`` replaces ``base``); None for no path."""
    if not path:
        return None
    return (base / path).resolve()


def default_manifest_path() -> str:
    """``$FPN_VARIANTS_MANIFEST`` if set, else ``model_zoo/manifest.json`` at the repo root."""
    return os.environ.get(MANIFEST_ENV) or str(REPO_ROOT / "model_zoo" / "manifest.json")


def locate_manifest(manifest: Optional[PathLike]) -> Path:
    """``manifest``, or :func:`default_manifest_path` when it is None."""
    return Path(manifest) if manifest else Path(default_manifest_path())


def load_manifest(manifest: Optional[PathLike] = None) -> Dict[str, Any]:
    """The manifest as a dict ``{"format": 1, "models": {name: entry}}``; an empty one when the
    file does not exist. Raises ValueError (naming the file, and the entry and field) when it is
    not a valid manifest: every entry needs ``config.packaged`` and the sha256 of its config and
    weights, and ``weights.file`` and ``weights.url`` are paths or null."""
    path = locate_manifest(manifest)
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "models": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"model zoo manifest {path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ValueError(f'model zoo manifest {path} must be a JSON object with a "models" object')
    if data.get("format", MANIFEST_FORMAT) > MANIFEST_FORMAT:
        raise ValueError(
            f"model zoo manifest {path} has format {data['format']}, newer than the "
            f"{MANIFEST_FORMAT} this version of fpn_variants reads: update fpn_variants"
        )
    for name, entry in data["models"].items():
        problem = _entry_problem(entry)
        if problem:
            raise ValueError(
                f"model zoo manifest {path}: entry {name!r}: {problem}. Re-package the model "
                "(tools/package_model.py --overwrite) or restore the manifest from git"
            )
    return data


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_MISSING = object()


def _entry_problem(entry: Any) -> Optional[str]:
    """What is wrong with a manifest entry (the fields loading a model reads), or None."""
    if not isinstance(entry, dict):
        return f"it must be an object, not {type(entry).__name__}"
    for part in ("config", "weights"):
        if part not in entry:
            return f"{part!r} is missing"
        if not isinstance(entry[part], dict):
            return f"{part!r} must be an object"
    fields = {
        "config.packaged": (entry["config"].get("packaged", _MISSING), "path"),
        "config.sha256": (entry["config"].get("sha256", _MISSING), "sha256"),
        "weights.sha256": (entry["weights"].get("sha256", _MISSING), "sha256"),
        "weights.file": (entry["weights"].get("file"), "optional path"),
        "weights.url": (entry["weights"].get("url"), "optional path"),
    }
    for key, (value, kind) in fields.items():
        if value is _MISSING:
            return f"{key!r} is missing"
        if kind == "sha256" and not (isinstance(value, str) and _SHA256_RE.match(value)):
            return f"{key!r}={value!r} is not a sha256 (64 lowercase hex digits)"
        if kind == "path" and not (isinstance(value, str) and value):
            return f"{key!r}={value!r} must be a non-empty path"
        if kind == "optional path" and not (value is None or isinstance(value, str)):
            return f"{key!r}={value!r} must be a string or null"
    return None


def write_manifest(path: Path, data: Dict[str, Any]) -> None:
    """Replace the manifest ``path`` atomically with ``data``, models sorted by name."""
    models = {name: data["models"][name] for name in sorted(data["models"])}
    atomic_write_text(path, json_dumps({**data, "format": MANIFEST_FORMAT, "models": models}))


def manifest_lock(path: Path) -> FileLock:
    """The lock (``with manifest_lock(path):``) that serializes read-modify-write of the manifest
    ``path`` between processes."""
    return FileLock(path.with_name(path.name + ".lock"))


def check_name(name: str) -> None:
    """Raise ValueError unless ``name`` is a safe folder and file name."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"model name {name!r} is not valid: use letters, digits, '_', '-' and '.', starting "
            "with a letter or digit (it becomes a folder and file name)"
        )


def lookup(name: str, manifest: Optional[PathLike]) -> Tuple[Dict[str, Any], Path]:
    """The manifest entry of model ``name`` and the manifest's path; KeyError (listing the
    available names) when it is not there."""
    path = locate_manifest(manifest)
    models = load_manifest(path)["models"]
    if name not in models:
        where = f"manifest {path}" + ("" if path.exists() else " (file does not exist)")
        raise KeyError(
            f"no model named {name!r} in the model zoo {where}; available: "
            f"{sorted_names(models) or 'none'} (set ${MANIFEST_ENV} or pass manifest= to use "
            "another manifest)"
        )
    check_name(name)  # names become paths: refuse a manifest that smuggles in '../'
    return models[name], path


def _order_key(entry: Mapping[str, Any]) -> Tuple[int, int, str]:
    def index(order: Tuple[str, ...], value: Any) -> int:
        return order.index(value) if value in order else len(order)

    return (
        index(DETECTOR_ORDER, entry.get("detector")),
        index(NECK_ORDER, entry.get("neck")),
        str(entry.get("name", "")),
    )


def sorted_names(models: Mapping[str, Mapping[str, Any]]) -> List[str]:
    """Names of ``models`` ({name: entry}) by detector, then neck, then name."""
    return sorted(models, key=lambda n: _order_key({**models[n], "name": n}))


def list_models(manifest: Optional[PathLike] = None) -> List[str]:
    """Names in the manifest, by detector, then neck (FPN, PANet, BiFPN, NAS-FPN), then name."""
    return sorted_names(load_manifest(manifest)["models"])
