"""Weights files: training checkpoints and release weights, read with ``weights_only=True``."""

import io
import pickle
from pathlib import Path
from typing import Any, Dict, Mapping

import torch
from torch import nn

__all__ = ["META_KEY", "load_state", "read_release_weights", "read_training_state"]

# Key of the metadata stored next to the state dict in a release's weights file.
META_KEY = "__fpn_variants__"
# Plain builtins that Detectron2 trainer checkpoints hold besides tensors and dicts.
_SAFE_BUILTINS = [set, frozenset, tuple, slice, range, complex]


def read_training_state(path: Path) -> Dict[str, torch.Tensor]:
    """The model state dict of a training checkpoint (its optimizer state etc. are dropped)."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with torch.serialization.safe_globals(_SAFE_BUILTINS):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{path} cannot be read with torch.load(weights_only=True), which only accepts "
            f"tensors and plain containers: {e}"
        ) from e
    except (RuntimeError, EOFError) as e:  # e.g. a truncated file
        raise ValueError(f"{path} is not a readable torch checkpoint: {e}") from e
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f'{path} has no state dict (a dict of tensors, or one under "model")')
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def read_release_weights(data: bytes, what: str) -> Dict[str, Any]:
    """``{"model": state_dict, META_KEY: {...}}`` from the bytes of a release weights file."""
    try:
        ckpt = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{what} is not a weights-only checkpoint: {e}") from e
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
