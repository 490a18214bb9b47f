"""Weights files: training checkpoints and release weights, read with ``weights_only=True``."""

import io
import pickle
from pathlib import Path
from typing import IO, Any, Dict, Mapping, Union

import torch
from torch import nn

__all__ = [
    "META_KEY",
    "load_state",
    "load_weights_only",
    "read_release_weights",
    "read_training_state",
]

# Key of the metadata stored next to the state dict in a release's weights file.
META_KEY = "__fpn_variants__"
# Plain builtins that Detectron2 trainer checkpoints hold besides tensors and dicts.
_SAFE_BUILTINS = [set, frozenset, tuple, slice, range, complex]


def load_weights_only(
    source: Union[str, Path, IO[bytes]],
    what: str,
    *,
    allow_unsafe_pickle: bool = False,
    unsafe_hint: str = "",
) -> Any:
    """``torch.load`` of ``source`` (a path or a binary file) onto the CPU, unpickling only
    tensors, plain containers and the plain builtins of Detectron2's trainer checkpoints
    (``weights_only=True``; ``allow_unsafe_pickle`` for a file you trust). ValueError, naming
    ``what``, for a file holding other objects (``unsafe_hint`` says what to do) or unreadable."""
    try:
        with torch.serialization.safe_globals(_SAFE_BUILTINS):
            return torch.load(source, map_location="cpu", weights_only=not allow_unsafe_pickle)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"Refusing to unpickle {what}: it holds other objects than tensors and plain "
            f"containers (torch.load(weights_only=True) failed). {unsafe_hint}"
            f"{' '.join(str(e).split())}"
        ) from e
    except (RuntimeError, EOFError) as e:  # e.g. a truncated file
        raise ValueError(f"{what} is not a readable torch checkpoint (truncated?): {e}") from e


def read_training_state(path: Path) -> Dict[str, torch.Tensor]:
    """The model state dict of a training checkpoint (its optimizer state etc. are dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    ckpt = load_weights_only(path, str(path))
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path} has no state dict (a dict of tensors, or one under "model")')
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_release_weights(data: bytes, what: str) -> Dict[str, Any]:
    """``{"model": state_dict, META_KEY: {...}}`` from the bytes of a release weights file."""
    ckpt = load_weights_only(io.BytesIO(data), what)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise ValueError(f'{what} has no "model" state dict')
    return ckpt


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model``; every key must match (shapes included), else ValueError."""
    try:
        incompatible = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ValueError(f"{what} does not fit the model of its config: {e}") from e
    if incompatible.missing_keys or incompatible.unexpected_keys:
        raise ValueError(
            f"{what} does not fit the model of its config: "
            f"{len(incompatible.missing_keys)} missing keys {incompatible.missing_keys[:8]}, "
            f"{len(incompatible.unexpected_keys)} unexpected keys "
            f"{incompatible.unexpected_keys[:8]}"
        )
