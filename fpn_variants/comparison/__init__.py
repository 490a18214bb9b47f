"""Side-by-side comparison of necks on any recipe and at any scale.

By job: :mod:`.cells` (which config each detector x neck trains, the recipe every cell shares),
:mod:`.costs` (parameters, FLOPs, latency, memory, on the config's device), :mod:`.runs` (one
run's ``tools/train_net.py`` command and its record), :mod:`.launchers` (local processes, Slurm
or submitit's local executor through submitit, printed commands), :mod:`.records` (the ledger of
finished runs), :mod:`.stats` (means over seeds, paired differences to FPN), :mod:`.claims`
(the papers' claims and a schedule's criterion, each given a verdict), :mod:`.reports` (table,
CSV, JSON, plots) and :mod:`.grid` (the whole comparison, and ``--collect``).
"""

from .cells import (
    DEFAULT_TEMPLATE,
    DETECTORS,
    NECKS,
    PAPER_NECKS,
    Cell,
    Recipe,
    cells_from_configs,
    cells_from_template,
    config_hash,
)
from .grid import collect, compare, launch, plan_runs, report
from .launchers import LAUNCHERS, LauncherUnavailableError, SlurmOptions, make_launcher
from .records import CellCosts, Ledger, RecipeMismatchError, RunRecord, read_ledger
from .runs import RunFailedError, RunSpec, execute, train_net_args
from .stats import (
    LATE_FRACTION,
    CellSummary,
    PairedDifference,
    late_gain,
    paired_difference,
    summarize,
)

__all__ = [
    "DEFAULT_TEMPLATE",
    "DETECTORS",
    "LATE_FRACTION",
    "LAUNCHERS",
    "NECKS",
    "PAPER_NECKS",
    "Cell",
    "CellCosts",
    "CellSummary",
    "LauncherUnavailableError",
    "Ledger",
    "PairedDifference",
    "RecipeMismatchError",
    "Recipe",
    "RunFailedError",
    "RunRecord",
    "RunSpec",
    "SlurmOptions",
    "cells_from_configs",
    "cells_from_template",
    "collect",
    "compare",
    "config_hash",
    "execute",
    "late_gain",
    "launch",
    "make_launcher",
    "paired_difference",
    "plan_runs",
    "read_ledger",
    "report",
    "summarize",
    "train_net_args",
]
