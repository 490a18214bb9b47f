"""Model zoo: package trained models as verified releases, and load them back by name.

A *release* is a folder ``<releases_dir>/<name>/`` (default ``output/model_zoo/<name>/``, never
committed) made from a Detectron2 training output folder:

* ``model_<sha256[:8]>.pth``: weights only, ``{"model": state_dict, "__fpn_variants__": {...}}``
  (no optimizer, scheduler or trainer state);
* ``config.yaml``: the resolved config the model was trained with, ``MODEL.WEIGHTS: ""``;
* ``metrics.json``: COCO AP, AP50, AP75, APs, APm, APl per task, params, GFLOPs, latency and
  training time;
* ``release.json``: its manifest entry (sha256, size, versions, date), paths relative to the
  release folder.

The *manifest* (default ``model_zoo/manifest.json`` at the repository root, committed; override
with the ``manifest`` argument or ``$FPN_VARIANTS_MANIFEST``) lists the releases by name. The
packaged config is also copied next to it (``model_zoo/configs/<name>.yaml``, committed), so
:func:`get_config` works from a fresh clone; the weights are read from the local release or
downloaded from their URL into a cache (``$FPN_VARIANTS_CACHE`` or ``~/.torch/fpn_variants``).

Every file is checked against the sha256 in the manifest before it is read, and checkpoints are
only ever read with ``torch.load(weights_only=True)``.

Modules: :mod:`.manifest` (location, reading and writing, checksums), :mod:`.loading`
(:func:`get_config`, :func:`get_checkpoint`, :func:`get`), :mod:`.packaging` (:func:`package`),
:mod:`.configs` and :mod:`.metrics` (the config and the numbers of a training folder),
:mod:`.weights` (checkpoint files) and :mod:`.table` (MODEL_ZOO.md).

Example::

    from fpn_variants import model_zoo
    model_zoo.list_models()
    model = model_zoo.get("faster_rcnn_R18_BiFPN")  # eval mode, verified weights
"""

from .loading import (
    CACHE_ENV,
    DownloadError,
    default_cache_dir,
    download_url,
    get,
    get_checkpoint,
    get_config,
)
from .manifest import (
    MANIFEST_ENV,
    ChecksumError,
    default_manifest_path,
    list_models,
    load_manifest,
    sha256sum,
)
from .metrics import (
    COCO_METRICS,
    COST_KEYS,
    parse_duration,
    read_metrics_file,
    read_training_metrics,
    read_training_time,
)
from .packaging import DEFAULT_RELEASES_DIR, package
from .table import render_model_zoo, write_model_zoo
from .weights import META_KEY

__all__ = [
    "CACHE_ENV",
    "COCO_METRICS",
    "COST_KEYS",
    "DEFAULT_RELEASES_DIR",
    "MANIFEST_ENV",
    "META_KEY",
    "ChecksumError",
    "DownloadError",
    "default_cache_dir",
    "default_manifest_path",
    "download_url",
    "get",
    "get_checkpoint",
    "get_config",
    "list_models",
    "load_manifest",
    "package",
    "parse_duration",
    "read_metrics_file",
    "read_training_metrics",
    "read_training_time",
    "render_model_zoo",
    "sha256sum",
    "write_model_zoo",
]
