"""Loading a release by name: its config, its weights (downloaded and cached) and the model."""

import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse
from urllib.request import urlopen

from detectron2.config import CfgNode, get_cfg
from detectron2.modeling import build_model
from torch import nn

from ..config import add_fpn_variants_config
from .manifest import NAME_RE, PathLike, check_sha256, lookup, read_verified, resolve, sha256sum
from .weights import META_KEY, load_state, read_release_weights

__all__ = [
    "CACHE_ENV",
    "DownloadError",
    "default_cache_dir",
    "download_url",
    "get",
    "get_checkpoint",
    "get_config",
]

logger = logging.getLogger(__name__)

# Environment variable that overrides the default download cache.
CACHE_ENV = "FPN_VARIANTS_CACHE"


class DownloadError(OSError):
    """The weights of a model could not be downloaded from the URL in the manifest."""


def default_cache_dir() -> str:
    """``$FPN_VARIANTS_CACHE`` if set, else ``~/.torch/fpn_variants``."""
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".torch", "fpn_variants"
    )


def download_url(url: str, dst: str) -> None:
    """Download ``url`` to the file ``dst`` (overwritten). Tests monkeypatch this function."""
    with urlopen(url, timeout=60) as response, open(dst, "wb") as f:
        shutil.copyfileobj(response, f, 1 << 20)


def _url_basename(url: str) -> str:
    base = os.path.basename(urlparse(url).path)
    return base if base and NAME_RE.match(base) else "model.pth"


def get_config(
    name: str,
    trained: bool = False,
    device: Optional[str] = None,
    manifest: Optional[PathLike] = None,
) -> CfgNode:
    """The packaged config of model ``name`` (a CfgNode with the fpn_variants keys), verified.

    Args:
        name (str): a name from :func:`list_models`.
        trained (bool): set ``MODEL.WEIGHTS`` to the verified local weights file (downloading it
            if needed); otherwise it is "" (random init), as packaged. Default: False.
        device (str or None): set ``MODEL.DEVICE`` when given.
        manifest (str or None): manifest file; default :func:`default_manifest_path`.

    Raises:
        KeyError: ``name`` is not in the manifest.
        ChecksumError (ValueError): the config file does not match its sha256.
    """
    entry, manifest_path = lookup(name, manifest)
    config = entry["config"]
    path = resolve(manifest_path.parent, config["packaged"])
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"model {name!r}: packaged config {path} (from manifest {manifest_path}) is missing"
        )
    text = read_verified(
        path, config["sha256"], name=name, what="config", manifest=manifest_path
    ).decode("utf-8")
    cfg = add_fpn_variants_config(get_cfg())
    loaded = CfgNode.load_cfg(text)  # yaml.safe_load: no code runs
    if loaded.get("VERSION", cfg.VERSION) != cfg.VERSION:
        raise ValueError(
            f"model {name!r}: config {path} has VERSION {loaded.get('VERSION')}, this Detectron2 "
            f"uses {cfg.VERSION}"
        )
    try:
        cfg.merge_from_other_cfg(loaded)
    except KeyError as e:
        raise ValueError(
            f"model {name!r}: config {path} has keys this version of fpn_variants does not know "
            f"({e}); it was packaged with {entry.get('versions')}"
        ) from e
    if device is not None:
        cfg.MODEL.DEVICE = device
    if trained:
        cfg.MODEL.WEIGHTS = get_checkpoint(name, manifest=manifest_path)
    return cfg


def get_checkpoint(
    name: str, manifest: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None
) -> str:
    """Local path of the verified weights of model ``name``.

    The release file named in the manifest is used when it exists; otherwise the weights are
    downloaded from the manifest's URL into ``cache_dir/<name>/`` (default
    :func:`default_cache_dir`) and reused from there. The sha256 is checked every time; a cached
    copy that fails the check is downloaded again, a local release file that fails it is an error.

    Raises:
        KeyError: ``name`` is not in the manifest.
        ChecksumError (ValueError): the file does not match the manifest's sha256.
        FileNotFoundError: no local file and no URL.
        DownloadError (OSError): the download failed (the message names the model, the URL,
            the cause and where a copy fetched by other means goes).
    """
    entry, manifest_path = lookup(name, manifest)
    weights = entry["weights"]
    expected = weights["sha256"]
    local = resolve(manifest_path.parent, weights.get("file"))
    if local is not None and local.is_file():
        actual = sha256sum(local)
        check_sha256(
            actual, expected, name=name, what="weights", path=local, manifest=manifest_path
        )
        return str(local)
    url = weights.get("url")
    if not url:
        raise FileNotFoundError(
            f"model {name!r}: weights file {local} does not exist and manifest {manifest_path} "
            "gives no URL to download them from (the CPU zoo's weights are not in git: `make zoo` "
            "trains and releases them)"
        )
    cached = Path(cache_dir or default_cache_dir()) / name / _url_basename(url)
    if cached.is_file():
        if sha256sum(cached) == expected:
            return str(cached)
        logger.warning(f"Cached weights {cached} of {name!r} fail their sha256; downloading again")
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_name(f".{cached.name}.part-{uuid.uuid4().hex[:8]}")
    try:
        logger.info(f"Downloading {url} to {cached}")
        try:
            download_url(url, str(part))
        except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts; malformed URLs
            raise DownloadError(
                f"model {name!r}: downloading its weights from {url} (manifest {manifest_path}) "
                f"failed: {getattr(e, 'reason', None) or e}. Check the network connection and "
                f"the URL, then retry; or fetch the file by other means and save it as {cached} "
                f"(sha256 {expected}, checked before use)"
            ) from e
        actual = sha256sum(part)
        what = f"weights (downloaded from {url})"
        check_sha256(actual, expected, name=name, what=what, path=part, manifest=manifest_path)
        os.replace(part, cached)
    finally:
        part.unlink(missing_ok=True)
    return str(cached)


def get(
    name: str,
    trained: bool = True,
    device: str = "cpu",
    manifest: Optional[PathLike] = None,
) -> nn.Module:
    """The model ``name`` built from its packaged config, in eval mode.

    Args:
        name (str): a name from :func:`list_models`.
        trained (bool): load the released weights (sha256 checked before
            ``torch.load(weights_only=True)``); False gives a randomly initialized model.
        device (str): ``MODEL.DEVICE`` to build on. Default: "cpu".
        manifest (str or None): manifest file; default :func:`default_manifest_path`.

    Raises:
        KeyError: ``name`` is not in the manifest.
        ChecksumError (ValueError): the config or weights file does not match its sha256.
        ValueError: the weights are of another neck or do not fit the config.
    """
    cfg = get_config(name, device=device, manifest=manifest)
    model = build_model(cfg)
    if trained:
        entry, manifest_path = lookup(name, manifest)
        path = Path(get_checkpoint(name, manifest=manifest_path))
        # Hash again the very bytes that are unpickled (the file may change after the check).
        data = read_verified(
            path, entry["weights"]["sha256"], name=name, what="weights", manifest=manifest_path
        )
        what = f"weights {path} of model {name!r}"
        ckpt = read_release_weights(data, what)
        builder = (ckpt.get(META_KEY) or {}).get("builder")
        if builder is not None and builder != cfg.MODEL.BACKBONE.NAME:
            raise ValueError(
                f"{what} were trained with MODEL.BACKBONE.NAME={builder!r}, but its config "
                f"selects {cfg.MODEL.BACKBONE.NAME!r} (manifest {manifest_path})"
            )
        load_state(model, ckpt["model"], what)
    return model.eval()
