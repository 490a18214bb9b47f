"""Checkpoints: atomic writes, strict and explained loading, no unpickling of arbitrary objects.

:class:`Checkpointer` is Detectron2's ``DetectionCheckpointer`` with these differences:

* **Atomic saves.** A checkpoint and the ``last_checkpoint`` tag are written to a temporary file
  in the same folder, fsynced, then renamed over the target: a crash (or an exception) during a
  save leaves the previous checkpoint and tag as they were. The temporary files a killed save
  leaves are removed by the next save (and when a :class:`fpn_variants.engine.Trainer` resumes).
* **Metadata.** Every checkpoint stores ``{"__fpn_variants__": {"version", "model", "builder",
  "neck", "neck_version"}}``, so a mismatch can say which neck variant the file was trained with.
* **Strict loading.** Loading a file whose weights do not fit the model (missing or unexpected
  keys, other shapes) raises ValueError listing them and leaves the model unchanged, instead of
  loading the part that fits. ``allow_partial=True`` (``--allow-partial-weights`` in
  ``tools/train_net.py``) opts in to partial loading. Files Detectron2 loads with its name
  matching heuristics (its ImageNet ``.pkl`` backbones, pycls ``.pyth`` files,
  ``?matching_heuristics=True``) only cover the bottom-up network by nature: they always load
  partially. Resuming (``--resume``) is always strict: the file comes from the same run.
* **No arbitrary unpickling.** ``.pth`` files are read with ``torch.load(weights_only=True)``;
  Detectron2's ``.pkl`` files with an unpickler that only builds NumPy arrays and plain
  containers (all Detectron2 model-zoo files hold). Anything else is refused with a ValueError,
  unless ``allow_unsafe_pickle=True`` is passed for a file you trust.
"""

import logging
import os
import pickle
from collections import Counter
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

import torch
from detectron2.checkpoint import DetectionCheckpointer
from torch import nn

from . import __version__
from .io import atomic_write, atomic_write_text, remove_temp_files
from .model_zoo.weights import META_KEY, load_weights_only
from .necks import PyramidNeck
from .registry import ALL_BUILDERS

__all__ = ["Checkpointer", "checkpoint_metadata", "load_array_pickle"]

logger = logging.getLogger(__name__)

# The only globals a Detectron2 .pkl weights file needs: NumPy arrays, scalars and dtypes
# (NumPy 1 and 2 module names, pickle protocols 2-5), OrderedDict, and the helper protocol 2
# uses for bytes.
_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}
_LISTED = 8  # keys quoted per kind of mismatch


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not a NumPy array or container")
        return super().find_class(module, name)


def load_array_pickle(path: str) -> Any:
    """Unpickle ``path`` allowing only NumPy arrays and plain containers (Detectron2's ``.pkl``
    weights); ValueError for anything else, which could run code while unpickled."""
    with open(path, "rb") as f:
        try:
            return _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as e:
            raise ValueError(
                f"Refusing to unpickle {path}: {e}. Detectron2 .pkl weights hold only NumPy "
                "arrays and containers, and other objects can run code when unpickled. For a "
                "file you trust, pass allow_unsafe_pickle=True to the Checkpointer, or convert "
                "it to a .pth of tensors."
            ) from e
        except (EOFError, ValueError) as e:
            raise ValueError(f"{path} is not a readable pickle (empty or truncated?): {e}") from e


def checkpoint_metadata(model: nn.Module) -> Dict[str, Any]:
    """What a checkpoint of ``model`` records about it: fpn_variants version, meta-architecture,
    and for a model with a pyramid neck its builder name, class and ``_version``."""
    meta: Dict[str, Any] = {"version": __version__, "model": type(model).__name__}
    neck = next((m for m in model.modules() if isinstance(m, PyramidNeck)), None)
    if neck is not None:
        builders = {cls: name for name, cls in ALL_BUILDERS.items()}
        meta["builder"] = builders.get(type(neck))
        meta["neck"] = type(neck).__name__
        meta["neck_version"] = int(neck._version)
    return meta


def _describe(meta: Optional[Dict[str, Any]]) -> str:
    if not meta:
        return "no fpn_variants metadata (not written by fpn_variants)"
    neck = (
        f"MODEL.BACKBONE.NAME={meta['builder']!r} (neck {meta.get('neck')} "
        f"version {meta.get('neck_version')}), "
        if meta.get("builder")
        else ""
    )
    return f"{neck}{meta.get('model', 'model')}, fpn_variants {meta.get('version')}"


def _summary(keys: List[str]) -> str:
    groups = Counter(".".join(k.split(".")[:2]) for k in keys)
    listed = ", ".join(f"{prefix} ({n})" for prefix, n in groups.most_common(_LISTED))
    return f"{len(keys)} under {listed}{' ...' if len(groups) > _LISTED else ''}"


class Checkpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` with atomic saves, strict loading and safe reading (see the
    module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        save_dir: str = "",
        *,
        allow_partial: bool = False,
        allow_unsafe_pickle: bool = False,
        save_to_disk: Optional[bool] = None,
        **checkpointables: Any,
    ):
        """
        Args:
            model (nn.Module): the model (a DDP wrapper is unwrapped).
            save_dir (str): folder of the checkpoints and of the ``last_checkpoint`` tag.
            allow_partial (bool): load files that fit the model only in part (missing,
                unexpected or reshaped weights are skipped, with a warning). Default: a
                mismatch raises ValueError. Resuming is strict regardless.
            allow_unsafe_pickle (bool): read ``.pkl`` / ``.pth`` files with plain pickle,
                which runs any code they contain: only for files you trust.
            save_to_disk (bool or None): default: on the main process only.
            checkpointables: objects with ``state_dict`` / ``load_state_dict`` to save too.
        """
        super().__init__(model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        self.allow_partial = allow_partial
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.metadata = checkpoint_metadata(self.model)
        self._partial_ok = allow_partial
        self._resuming = False
        self._path = ""

    # Saving ----------------------------------------------------------------------------------

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``save_dir/<name>.pth`` (model, checkpointables, ``kwargs``, metadata)
        atomically, then point ``last_checkpoint`` at it."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        data[META_KEY] = self.metadata
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.remove_interrupted_saves()
        self.logger.info(f"Saving checkpoint to {path}")
        atomic_write(path, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def remove_interrupted_saves(self) -> None:
        """Remove the temporary files of saves killed mid-write in ``save_dir`` (one can be as
        large as a checkpoint). Only the process that saves there may call it."""
        if not self.save_dir or not self.save_to_disk:
            return
        removed = remove_temp_files(self.save_dir, "*.pth")
        removed += remove_temp_files(self.save_dir, "last_checkpoint")
        if removed:
            self.logger.info(f"Removed the temporary files of interrupted saves: {removed}")

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    # Loading ---------------------------------------------------------------------------------

    def load(
        self,
        path: str,
        checkpointables: Optional[List[str]] = None,
        *,
        allow_partial: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Load ``path`` (a local file or a URL Detectron2 understands; "" loads nothing).

        Args:
            path (str): the file.
            checkpointables (list[str] or None): which checkpointables to restore (None: all).
            allow_partial (bool or None): overrides the constructor's ``allow_partial``.

        Returns:
            dict: the file's entries that were not loaded (e.g. "iteration").

        Raises:
            FileNotFoundError: ``path`` is a local path that does not exist.
            ValueError: the file is unreadable, holds other objects than weights and
                containers, or (unless partial loading is allowed) does not fit the model.
        """
        local = urlparse(path)._replace(query="").geturl() if path else ""
        if local and "://" not in local and not os.path.isfile(local):
            raise FileNotFoundError(f"Checkpoint {local} does not exist (MODEL.WEIGHTS?)")
        self._partial_ok = self.allow_partial if allow_partial is None else allow_partial
        self._path = local
        return super().load(path, checkpointables)

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        """Resume from ``save_dir/last_checkpoint`` if ``resume`` and it exists (model and every
        checkpointable, strictly), else load the model from ``path``."""
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        last = self.get_checkpoint_file()
        if not os.path.isfile(last):
            raise FileNotFoundError(
                f"{os.path.join(self.save_dir, 'last_checkpoint')} names {last}, which does not "
                "exist: point it to an existing checkpoint of this folder, or remove it to "
                "start over"
            )
        self._resuming = True
        try:
            return self.load(last, allow_partial=False)
        finally:
            self._resuming = False

    def _load_file(self, filename: str) -> Dict[str, Any]:
        if self.allow_unsafe_pickle or not filename.endswith((".pkl", ".pyth")):
            return super()._load_file(filename)  # .pth: self._torch_load
        if filename.endswith(".pyth"):  # pycls
            data = self._torch_load(filename)
            if "model_state" not in data:
                raise ValueError(f"{filename}: pycls .pyth files must hold 'model_state'")
            model = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": model, "__author__": "pycls", "matching_heuristics": True}
        data = load_array_pickle(filename)
        if not isinstance(data, dict):
            raise ValueError(f"{filename} holds a {type(data).__name__}, not a dict of weights")
        if "model" in data and "__author__" in data:  # Detectron2 model zoo
            self.logger.info(f"Reading a file from '{data['__author__']}'")
            return data
        # Caffe2 / Detectron (ImageNet backbones): names are matched by Detectron2's heuristics.
        data = data.get("blobs", data)
        data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
        return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}

    def _torch_load(self, f: str) -> Dict[str, Any]:
        data = load_weights_only(
            f,
            f,
            allow_unsafe_pickle=self.allow_unsafe_pickle,
            unsafe_hint="For a file you trust, pass allow_unsafe_pickle=True to the Checkpointer. ",
        )
        if not isinstance(data, dict):
            raise ValueError(f"{f} holds a {type(data).__name__}, not a dict of weights")
        return data

    def _load_model(self, checkpoint: Dict[str, Any]):
        meta = checkpoint.pop(META_KEY, None)
        if self._partial_ok or checkpoint.get("matching_heuristics", False):
            return super()._load_model(checkpoint)
        backup = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        try:
            incompatible = super()._load_model(checkpoint)
            problems = []
            reshaped = {k for k, _, _ in incompatible.incorrect_shapes}
            missing = [k for k in incompatible.missing_keys if k not in reshaped]
            if missing:
                problems.append(f"missing keys: {_summary(missing)}")
            if incompatible.unexpected_keys:
                problems.append(f"unexpected keys: {_summary(incompatible.unexpected_keys)}")
            if incompatible.incorrect_shapes:
                shapes = [
                    f"{k} {tuple(theirs)} in the file, {tuple(ours)} in the model"
                    for k, theirs, ours in incompatible.incorrect_shapes
                ]
                problems.append(
                    f"{len(shapes)} weights of other shapes: {'; '.join(shapes[:_LISTED])}"
                    + (" ..." if len(shapes) > _LISTED else "")
                )
        except RuntimeError as e:  # shape mismatches of keys renamed while loading
            problems = [str(e)]
        if not problems:
            return incompatible
        self.model.load_state_dict(backup)
        if self._resuming:
            hint = (
                "--resume reads the last checkpoint of OUTPUT_DIR, which another model wrote: "
                "train into a new OUTPUT_DIR or leave out --resume."
            )
        else:
            hint = (
                "To load the weights that fit and keep the others as initialized, pass "
                "--allow-partial-weights (Checkpointer(allow_partial=True))."
            )
        raise ValueError(
            f"Checkpoint {self._path} does not fit the model, which was left unchanged. "
            f"{'. '.join(problems)}. The file: {_describe(meta)}. This model: "
            f"{_describe(self.metadata)}. {hint}"
        )
