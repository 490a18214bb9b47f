#!/usr/bin/env bash
# The 1-epoch comparison of docs/one_epoch_comparison.md: Faster R-CNN R18 with every neck and
# the FPN paper's baselines, seeds 1-3, ITERS iterations (250: 1 epoch) with an evaluation at 80%
# of them (the plateau criterion); two runs at a time, one intra-op thread each (2 cores).
# Interrupted: run it again; finished runs are kept, an interrupted one resumes from its last
# checkpoint.
#   bash benchmarks/reference_comparison.sh     (PYTHON=..., OUT=..., ITERS=... to change them;
#                                                a longer schedule needs its own OUT)
set -euo pipefail
PYTHON=${PYTHON:-python}
OUT=${OUT:-output/reference}
ITERS=${ITERS:-250}
# Every row of the neck registry (fpn_variants/registry.py): fpn panet bifpn nasfpn c4 c5 ...
NECKS=$("$PYTHON" -c "from fpn_variants.registry import NECK_REGISTRY as R; print(*(r.key for r in R))")
# shellcheck disable=SC2086  # one word per neck
"$PYTHON" tools/compare.py --necks $NECKS \
    --detectors faster_rcnn --seeds 1 2 3 --jobs 2 --threads 1 --out "$OUT" \
    SOLVER.MAX_ITER "$ITERS" TEST.EVAL_PERIOD "$((ITERS * 4 / 5))"
