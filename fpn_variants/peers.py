"""Importing the peer implementations (effdet, mmdet; installed from requirements-peers.txt)
that the equivalence tests and the benchmark compare the necks with.

mmcv-lite ships no compiled ``mmcv._ext``, yet ``import mmdet.models`` imports ``mmcv.ops``,
which looks its kernels up at import time. PAFPN and NASFPN call none of them (mmcv's merge
cells are plain PyTorch), so a placeholder module whose functions raise when called is enough.
"""

import importlib
import importlib.util
import sys
import types

__all__ = ["import_peer"]


def _placeholder_mmcv_ext() -> None:
    if importlib.util.find_spec("mmcv") is None or "mmcv._ext" in sys.modules:
        return
    if importlib.util.find_spec("mmcv._ext") is not None:
        return
    ext = types.ModuleType("mmcv._ext")

    def missing_op(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def raise_not_installed(*args, **kwargs):
            raise NotImplementedError(f"mmcv._ext.{name}: compiled mmcv ops are not installed")

        return raise_not_installed

    ext.__getattr__ = missing_op
    sys.modules["mmcv._ext"] = ext


def import_peer(module: str):
    """Import a peer module (ImportError when it is not installed), with the placeholder
    ``mmcv._ext`` in place for mmdet."""
    if module.startswith("mmdet"):
        _placeholder_mmcv_ext()
    return importlib.import_module(module)
