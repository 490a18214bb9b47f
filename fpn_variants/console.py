"""Keep the console of the project's tools for messages a user can act on.

Upstream libraries (torch, fvcore, detectron2) print deprecation notices about their own code on
every run: ``torch.jit.script`` deprecated (fvcore scripts its losses on import), ``torch.meshgrid``
without ``indexing`` (detectron2's anchor generator), ``is_fx_tracing`` (detectron2's ROI pooler,
through torch's logger), and when exporting, a ``TracerWarning`` at each of their Python branches
on tensor values. A user of this project cannot act on them.

Design: :func:`quiet_upstream_warnings` (called by the tools, once) sends the warnings listed in
:data:`UPSTREAM_WARNINGS` to the log files of the "fpn_variants" and "detectron2" loggers (the
``log.txt`` Detectron2's ``setup_logger`` writes; nothing when no log file is set up yet) instead
of the console; every other warning, the project's own included, is shown as before. The
package's import hides the same warnings while it imports its upstream modules
(:func:`upstream_warnings_hidden`), so the tools' first lines are not deprecation notices either.
Only the standard library is imported here: the package imports this module first.
"""

import builtins
import contextlib
import logging
import os
import re
import sys
import warnings
from typing import Iterator, Tuple, Type

__all__ = ["UPSTREAM_WARNINGS", "is_upstream_warning", "quiet_upstream_warnings"]

# (category name, start of the message) of each upstream notice that a user cannot act on. A
# warning matches when raised from a file outside this package: the same notice about the
# project's own code (e.g. a TracerWarning at one of its lines) is still shown.
UPSTREAM_WARNINGS: Tuple[Tuple[str, str], ...] = (
    ("FutureWarning", "`torch.jit.script` is deprecated"),
    ("UserWarning", "torch.meshgrid: in an upcoming release, it will be required to pass the"),
    ("UserWarning", "is_fx_tracing will return true for both fx.symbolic_trace and torch.export"),
    # tracing for export: Detectron2's and torchvision's Python branches on tensor values (the
    # export is checked against eager PyTorch instead), and the ONNX exporter's note on indexing
    ("TracerWarning", ""),
    ("UserWarning", "Exporting aten::index operator of advanced indexing"),
)
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# Loggers through which torch prints some of them (its own handler, not Python's warnings).
_UPSTREAM_LOGGERS = ("torch.fx._symbolic_trace",)
# Loggers whose file handlers receive the hidden warnings.
_LOG_FILE_LOGGERS = ("fpn_variants", "detectron2")

_log = logging.getLogger("fpn_variants.upstream_warnings")
_log.propagate = False  # written to the log files by hand below, never to the console


def is_upstream_warning(
    message: str, category: Type[Warning] = UserWarning, filename: str = ""
) -> bool:
    """Whether a warning ``message`` of ``category`` raised at ``filename`` is one of
    :data:`UPSTREAM_WARNINGS` (raised outside this package)."""
    if os.path.abspath(filename).startswith(_PACKAGE_DIR):
        return False
    names = {cls.__name__ for cls in category.__mro__}
    return any(name in names and message.startswith(start) for name, start in UPSTREAM_WARNINGS)


def _log_file_handlers() -> list:
    """One handler per log file of the log-file loggers (they share Detectron2's file streams),
    none writing to the console."""
    handlers = {}
    for name in _LOG_FILE_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None and stream not in (sys.stdout, sys.stderr):
                handlers.setdefault(id(stream), handler)
    return list(handlers.values())


def _to_log_files(text: str) -> None:
    record = _log.makeRecord(_log.name, logging.WARNING, "(upstream)", 0, text, None, None)
    for handler in _log_file_handlers():
        handler.handle(record)


class _UpstreamRecordFilter(logging.Filter):
    """Drops an upstream notice printed through a logger; copies it to the log files."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if is_upstream_warning(text, UserWarning, record.pathname):
            _to_log_files(f"{record.name}: {text}")
            return False
        return True


def quiet_upstream_warnings() -> None:
    """Show the warnings of :data:`UPSTREAM_WARNINGS` in the log files only (see the module's
    docstring); call it once at the start of a tool. Calling it again changes nothing."""
    shown = warnings.showwarning
    if getattr(shown, "_filters_upstream", False):
        return

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if is_upstream_warning(str(message), category, filename):
            _to_log_files(f"{filename}:{lineno}: {category.__name__}: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    showwarning._filters_upstream = True
    warnings.showwarning = showwarning
    for name in _UPSTREAM_LOGGERS:
        logging.getLogger(name).addFilter(_UpstreamRecordFilter())


@contextlib.contextmanager
def upstream_warnings_hidden() -> Iterator[None]:
    """Within the block, ignore the warnings of :data:`UPSTREAM_WARNINGS` of built-in
    categories wherever raised (for the upstream imports of the package); the warning filters
    are restored afterwards."""
    with warnings.catch_warnings():
        for name, start in UPSTREAM_WARNINGS:
            category = getattr(builtins, name, None)  # the import-time ones are built-in classes
            if category is not None:
                warnings.filterwarnings("ignore", message=re.escape(start), category=category)
        yield
