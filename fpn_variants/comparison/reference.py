"""The long-schedule reference's recipe, shared by the runs that use it: the reference itself
(``tools/reference.py``) and the model zoo released from its seed-1 runs
(``tools/build_zoo.py``).

One ledger per schedule: ``docs/reference/S<iterations>``; every run there trains the CPU config
of its cell with :func:`schedule_opts`.
"""

import os
from typing import List

REFERENCE_FOLDER = os.path.join("docs", "reference")
REFERENCE_SCHEDULE = 1000  # S: 4 epochs of the synthetic data
SEEDS = (1, 2, 3)
# Precision pinned, so that the recipe stays this one whatever the configs' defaults become.
RECIPE = ("SOLVER.AMP.ENABLED", "False", "MODEL.CHANNELS_LAST", "True")
# Learning curves: an evaluation (and a checkpoint, 115 MB with NAS-FPN) every quarter of the
# schedule.
EVALUATIONS_PER_RUN = 4


def schedule_folder(out: str, iterations: int) -> str:
    """The ledger of one schedule: ``<out>/S<iterations>``."""
    return os.path.join(out, f"S{iterations}")


def schedule_opts(iterations: int) -> List[str]:
    """The recipe's overrides at ``iterations`` iterations."""
    period = str(max(1, iterations // EVALUATIONS_PER_RUN))
    schedule = ["SOLVER.MAX_ITER", str(iterations), "TEST.EVAL_PERIOD", period]
    return [*RECIPE, *schedule, "SOLVER.CHECKPOINT_PERIOD", period]
