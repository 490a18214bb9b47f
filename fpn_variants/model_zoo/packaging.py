"""Packaging a Detectron2 training output folder as a release listed in the manifest."""

import datetime
import hashlib
import io
import logging
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import detectron2
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from .. import __version__
from ..io import atomic_write_bytes, atomic_write_text, replace_dir, staging_dir
from ..registry import ALL_BUILDERS
from .configs import init_weights, packaged_config, read_training_config, source_config_path
from .manifest import (
    NECK_NAMES,
    REPO_ROOT,
    PathLike,
    check_name,
    json_dumps,
    load_manifest,
    locate_manifest,
    manifest_lock,
    relpath,
    write_manifest,
)
from .metrics import read_costs, read_metrics_file, read_training_metrics
from .weights import META_KEY, load_state, read_training_state

__all__ = ["DEFAULT_RELEASES_DIR", "git_commit", "package", "versions"]

logger = logging.getLogger(__name__)

DEFAULT_RELEASES_DIR = os.path.join("output", "model_zoo")


def _detector_name(cfg: CfgNode) -> str:
    arch = cfg.MODEL.META_ARCHITECTURE
    if arch == "GeneralizedRCNN":
        return "Mask R-CNN" if cfg.MODEL.MASK_ON else "Faster R-CNN"
    return arch


def git_commit(outputs: Sequence[str] = ("model_zoo", "docs")) -> Optional[str]:
    """Short HEAD commit of the repository, "-dirty" with uncommitted changes outside
    ``outputs`` (folders that tools write while they run, not part of the code state: by default
    the model zoo's manifest and packaged configs, and docs/ with its run records and generated
    tables); None if no git."""
    try:
        run = dict(cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True)
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], **run).stdout.strip()
        excluded = [f":!{path}" for path in outputs]
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *excluded]
        dirty = subprocess.run(status, **run)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty.stdout.strip() else "") if commit else None


def versions(trained_at: Optional[str] = None) -> Dict[str, Optional[str]]:
    """Versions of torch, Detectron2, this package (and its git commit: ``trained_at`` when the
    weights' training recorded it, else this checkout's) and Python."""
    return {
        "torch": torch.__version__,
        "detectron2": detectron2.__version__,
        "fpn_variants": __version__,
        "fpn_variants_git": trained_at or git_commit(),
        "python": platform.python_version(),
    }


def _default_hardware(cfg: CfgNode) -> str:
    if str(cfg.MODEL.DEVICE).startswith("cuda") and torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if str(cfg.MODEL.DEVICE).startswith("cuda"):
        return "GPU"
    return f"CPU, {torch.get_num_threads()} threads"


def _check_free(name: str, manifest_path: Path, release_dir: Path, overwrite: bool) -> None:
    if overwrite:
        return
    where = []
    if name in load_manifest(manifest_path)["models"]:
        where.append(f"manifest {manifest_path}")
    if release_dir.exists():
        where.append(f"folder {release_dir}")
    if where:
        raise FileExistsError(
            f"model {name!r} is already released ({' and '.join(where)}); nothing was changed. "
            "Pass --overwrite (overwrite=True) to replace it deliberately, or choose another name."
        )


def _target(
    output_dir: Path,
    name: Optional[str],
    config_file: Optional[PathLike],
    source_config: Optional[str],
    manifest: Optional[PathLike],
    releases_dir: PathLike,
    overwrite: bool,
) -> Tuple[CfgNode, Optional[str], str, Path, Path]:
    """The training config, its source config, the release name, the manifest and the release
    folder of :func:`package`; errors (a name already released...) before anything is read."""
    if not output_dir.is_dir():
        raise FileNotFoundError(f"training output folder {output_dir} does not exist")
    cfg = read_training_config(Path(config_file) if config_file else output_dir / "config.yaml")
    source = source_config_path(source_config, output_dir)
    name = name or (Path(source).stem if source else output_dir.resolve().name)
    check_name(name)
    manifest_path = locate_manifest(manifest)
    release_dir = Path(releases_dir) / name
    _check_free(name, manifest_path, release_dir, overwrite)
    return cfg, source, name, manifest_path, release_dir


def _release(
    entry: Dict[str, Any],
    model: torch.nn.Module,
    meta: Dict[str, Any],
    config_text: str,
    source: Optional[str],
    places: Tuple[Path, Path],
    base_url: Optional[str],
    overwrite: bool,
) -> Dict[str, Any]:
    """Stage the weights (with ``meta``) and files of the release ``entry`` (name, detector,
    metrics, ...), then install them and the manifest entry atomically, under the lock of the
    manifest (``places``: manifest file, release folder); return the full entry."""
    name = entry["name"]
    manifest_path, release_dir = places
    with staging_dir(release_dir) as staging_path:
        staging = Path(staging_path)
        weights_name, weights_data = _stage_weights(staging, model, meta)
        zoo_config = manifest_path.parent / "configs" / f"{name}.yaml"
        entry = {
            "name": name,
            "detector": entry["detector"],
            "neck": meta["neck"],
            "builder": meta["builder"],
            "config": _config_record(source, zoo_config, config_text, manifest_path),
            "weights": _weights_record(
                release_dir, weights_name, weights_data, manifest_path, base_url
            ),
            "init_weights": entry["init_weights"],
            "metrics": entry["metrics"],
            "hardware": entry["hardware"],
            "versions": versions(entry.get("trained_at")),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        _stage_release_files(staging, entry, weights_name, config_text)
        with manifest_lock(manifest_path):
            data = load_manifest(manifest_path)
            _check_free(name, manifest_path, release_dir, overwrite)  # another process won?
            data["models"][name] = entry
            _install(staging, release_dir, zoo_config, config_text, manifest_path, data)
    return entry


def package(
    output_dir: PathLike,
    name: Optional[str] = None,
    *,
    releases_dir: PathLike = DEFAULT_RELEASES_DIR,
    manifest: Optional[PathLike] = None,
    weights: Optional[PathLike] = None,
    config_file: Optional[PathLike] = None,
    source_config: Optional[str] = None,
    metrics_file: Optional[PathLike] = None,
    dataset: Optional[str] = None,
    costs: Optional[Mapping[str, Any]] = None,
    hardware: Optional[str] = None,
    base_url: Optional[str] = None,
    overwrite: bool = False,
    trained_at: Optional[str] = None,
) -> Dict[str, Any]:
    """Make a release of the training output folder ``output_dir`` and add it to the manifest.

    The weights are loaded (strictly) into the model built from the config before anything is
    written, so a release always loads. The release is assembled in a temporary folder and moved
    into place, and the manifest is replaced atomically, under a lock; on any error the previous
    release and manifest are left as they were.

    Args:
        output_dir: a Detectron2 training output folder (config.yaml, model_final.pth,
            metrics.json, optionally log.txt and cost.json).
        name (str or None): release name; default: the stem of the source config if known,
            else the folder name.
        releases_dir: where release folders go. Default: ``output/model_zoo``.
        manifest: manifest file to update. Default: :func:`default_manifest_path`.
        weights: checkpoint to release. Default: ``output_dir/model_final.pth``.
        config_file: config used for training. Default: ``output_dir/config.yaml``.
        source_config (str or None): the YAML under ``configs/`` it was trained from; default:
            the ``--config-file`` recorded in ``output_dir/log.txt`` when it is under configs/.
        metrics_file: JSON with COCO metrics given explicitly (see :func:`read_metrics_file`);
            default: the last evaluation in ``output_dir/metrics.json``.
        dataset (str or None): test set to take metrics of when several were evaluated; default:
            ``DATASETS.TEST[0]``.
        costs (dict or None): any of :data:`COST_KEYS` (params, gflops, latency_ms,
            train_time_s); they win over ``cost.json`` and ``log.txt``. params is otherwise the
            parameter count of the built model.
        hardware (str or None): what it was trained on; default from ``MODEL.DEVICE`` and the
            torch thread count of this process (e.g. "CPU, 2 threads").
        base_url (str or None): where the release folders will be uploaded; the manifest then
            gives ``<base_url>/<name>/<weights file>`` as the weights URL.
        overwrite (bool): replace an existing release of the same name; otherwise that is an
            error (FileExistsError) and nothing is changed.
        trained_at (str or None): the git commit the weights were trained at (a run record's),
            given as the release's ``fpn_variants_git``; default: this checkout's commit.

    Returns:
        dict: the manifest entry.
    """
    output_dir = Path(output_dir)
    cfg, source, name, manifest_path, release_dir = _target(
        output_dir, name, config_file, source_config, manifest, releases_dir, overwrite
    )
    dataset = dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else None)
    tasks = _read_tasks(output_dir, metrics_file, dataset, name)
    packaged_cfg = packaged_config(cfg)
    model = _verified_model(
        packaged_cfg, Path(weights) if weights else output_dir / "model_final.pth"
    )
    given = {k: v for k, v in (costs or {}).items() if v is not None}
    given = {"params": sum(p.numel() for p in model.parameters()), **given}
    metrics = {"dataset": dataset, "tasks": tasks, **read_costs(output_dir, given)}
    entry = {
        "name": name,
        "detector": _detector_name(cfg),
        "init_weights": init_weights(cfg.MODEL.WEIGHTS),
        "metrics": metrics,
        "hardware": hardware or _default_hardware(cfg),
        "trained_at": trained_at,
    }
    meta = _weights_metadata(name, cfg.MODEL.BACKBONE.NAME)
    entry = _release(
        entry,
        model,
        meta,
        packaged_cfg.dump(),
        source,
        (manifest_path, release_dir),
        base_url,
        overwrite,
    )
    digest = entry["weights"]["sha256"]
    logger.info(f"Released {name!r} in {release_dir} (sha256 {digest}); manifest {manifest_path}")
    return entry


def _read_tasks(
    output_dir: Path, metrics_file: Optional[PathLike], dataset: Optional[str], name: str
) -> Dict[str, Any]:
    """The COCO metrics of a release: from ``metrics_file`` if given, else the last evaluation
    in ``output_dir/metrics.json``; a warning when there are none."""
    if metrics_file is not None:
        tasks = read_metrics_file(metrics_file, dataset)
    elif (output_dir / "metrics.json").is_file():
        tasks = read_training_metrics(output_dir / "metrics.json", dataset)
    else:
        tasks = {}
    if not tasks:
        logger.warning(f"No COCO metrics found for {name!r}: pass --metrics FILE to add them")
    return tasks


def _verified_model(packaged_cfg: CfgNode, weights_path: Path) -> torch.nn.Module:
    """The model of the config on the CPU with the weights loaded strictly (so that a release
    always loads)."""
    build_cfg = packaged_cfg.clone()
    build_cfg.MODEL.DEVICE = "cpu"
    model = build_model(build_cfg)
    load_state(model, read_training_state(weights_path), f"weights {weights_path}")
    return model


def _weights_metadata(name: str, builder: str) -> Dict[str, Any]:
    """What a release's weights file records about its neck (``META_KEY``)."""
    neck = ALL_BUILDERS.get(builder)
    return {
        "name": name,
        "neck": NECK_NAMES.get(builder, builder),
        "builder": builder,
        "neck_version": None if neck is None else int(neck._version),
        "version": __version__,
    }


def _stage_weights(
    staging: Path, model: torch.nn.Module, meta: Dict[str, Any]
) -> Tuple[str, bytes]:
    """Write the weights file ``model_<sha256[:8]>.pth`` into ``staging``; return its name and
    bytes."""
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), META_KEY: meta}, buffer)
    weights_data = buffer.getvalue()
    weights_name = f"model_{hashlib.sha256(weights_data).hexdigest()[:8]}.pth"
    atomic_write_bytes(staging / weights_name, weights_data)
    return weights_name, weights_data


def _config_record(
    source: Optional[str], zoo_config: Path, config_text: str, manifest_path: Path
) -> Dict[str, Any]:
    """The manifest's "config" of a release: the source YAML, the packaged copy (relative to
    the manifest) and its sha256."""
    return {
        "source": source,
        "packaged": relpath(zoo_config, manifest_path.parent),
        "sha256": hashlib.sha256(config_text.encode("utf-8")).hexdigest(),
    }


def _weights_record(
    release_dir: Path,
    weights_name: str,
    weights_data: bytes,
    manifest_path: Path,
    base_url: Optional[str],
) -> Dict[str, Any]:
    """The manifest's "weights" of a release: file (relative to the manifest), URL, sha256, size."""
    url = f"{base_url.rstrip('/')}/{release_dir.name}/{weights_name}" if base_url else None
    return {
        "file": relpath(release_dir / weights_name, manifest_path.parent),
        "url": url,
        "sha256": hashlib.sha256(weights_data).hexdigest(),
        "size": len(weights_data),
    }


def _stage_release_files(
    staging: Path, entry: Dict[str, Any], weights_name: str, config_text: str
) -> None:
    """Write the release folder's config.yaml, metrics.json and release.json (the manifest entry
    with the paths inside the release) into ``staging``."""
    release_entry = {
        **entry,
        "config": {**entry["config"], "packaged": "config.yaml"},
        "weights": {**entry["weights"], "file": weights_name},
    }
    atomic_write_text(staging / "config.yaml", config_text)
    atomic_write_text(
        staging / "metrics.json", json_dumps({"name": entry["name"], **entry["metrics"]})
    )
    atomic_write_text(staging / "release.json", json_dumps(release_entry))


def _install(
    staging: Path,
    release_dir: Path,
    zoo_config: Path,
    config_text: str,
    manifest_path: Path,
    manifest_data: Dict[str, Any],
) -> None:
    """Move the staged release into place, then write the config copy and the manifest; undo
    everything if a step fails."""
    old_config = zoo_config.read_bytes() if zoo_config.exists() else None

    def config_and_manifest() -> None:
        atomic_write_text(zoo_config, config_text)
        write_manifest(manifest_path, manifest_data)

    try:
        replace_dir(staging, release_dir, then=config_and_manifest)
    except BaseException:
        if old_config is None:
            zoo_config.unlink(missing_ok=True)
        else:
            atomic_write_bytes(zoo_config, old_config)
        raise
