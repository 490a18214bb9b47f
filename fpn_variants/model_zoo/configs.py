"""The config of a release: read from a training folder, traced to configs/, made portable."""

import logging
import os
import re
from pathlib import Path
from typing import Optional

from detectron2.config import CfgNode

from ..config import load_config
from .manifest import REPO_ROOT

__all__ = [
    "init_weights",
    "packaged_config",
    "read_training_config",
    "source_config_path",
]

logger = logging.getLogger(__name__)

_CONFIG_FILE_RE = re.compile(r"config_file='([^']+)'")


def read_training_config(path: Path) -> CfgNode:
    """The config.yaml of a training run, with the fpn_variants keys; ValueError on unknown keys."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: a training output folder has the config.yaml written by "
            "default_setup (or pass the config with --config-file)"
        )
    return load_config(path, freeze=False)


def _repo_config_path(path: str) -> Optional[str]:
    """``path`` as "configs/...", if it is a file under configs/ of this repository."""
    p = Path(path)
    p = p if p.is_absolute() else REPO_ROOT / p
    try:
        rel = p.resolve().relative_to((REPO_ROOT / "configs").resolve())
    except ValueError:
        return None
    return (Path("configs") / rel).as_posix() if p.is_file() else None


def _logged_source_config(log_file: Path) -> Optional[str]:
    """The ``--config-file`` of the last run in ``log.txt``, if it is under configs/."""
    if not log_file.is_file():
        return None
    matches = _CONFIG_FILE_RE.findall(log_file.read_text(encoding="utf-8", errors="replace"))
    return _repo_config_path(matches[-1]) if matches else None


def source_config_path(given: Optional[str], output_dir: Path) -> Optional[str]:
    """The YAML under configs/ a run was trained from, as "configs/...": ``given`` (ValueError if
    it is not there), else the ``--config-file`` recorded in ``output_dir/log.txt``, if any."""
    if given is None:
        return _logged_source_config(output_dir / "log.txt")
    source = _repo_config_path(given)
    if source is None:
        raise ValueError(f"source config {given} is not a file under {REPO_ROOT / 'configs'}")
    return source


def _strip_path(value: str) -> str:
    """A local absolute path made relative to the repo root when it lies inside it."""
    if not os.path.isabs(value):
        return value
    try:
        return Path(value).resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return value


def init_weights(value: str) -> str:
    """Where the training started from (MODEL.WEIGHTS), without local folders: a URL or a
    repo-relative path as is, the file name of other local paths."""
    value = _strip_path(value)
    return os.path.basename(value) if os.path.isabs(value) else value


def packaged_config(cfg: CfgNode) -> CfgNode:
    """The config of a release: MODEL.WEIGHTS "", OUTPUT_DIR "./output", local absolute paths
    inside the repository made relative (others are kept, with a warning)."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.WEIGHTS = ""
    cfg.OUTPUT_DIR = "./output"

    def walk(node: CfgNode, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, CfgNode):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, str):
                node[key] = _strip_path(value)
                if os.path.isabs(node[key]):
                    logger.warning(f"{prefix}{key}={value!r} is a local absolute path")
            elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                node[key] = type(value)(_strip_path(v) for v in value)

    walk(cfg, "")
    return cfg
