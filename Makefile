# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   the main job: a side-by-side preview on the built-in synthetic data, 2 seeds
#               (make reference: the long-schedule reference, docs/reference_comparison.md,
#               built run by run over days into docs/reference/; not converged: its schedule
#               is chosen so that its conclusions survive doubling it. Until its grid is
#               complete the README shows the 1-epoch table, docs/one_epoch_comparison.md)
#   make test   the test suite (what .ci/run runs)
# Both create .venv/ and install the pinned dependencies first; a second run skips that.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo reference parity test benchmark zoo configs lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt requirements-peers.txt setup.py tools/install_detectron2.sh | $(PY)
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt -r requirements-peers.txt
	bash tools/install_detectron2.sh $(PY)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

demo: setup
	$(PY) tools/compare.py --detectors faster_rcnn --necks fpn panet bifpn nasfpn --seeds 1 2 \
		--jobs 2 --repeats 5 --out output/compare \
		SOLVER.MAX_ITER 60 SOLVER.WARMUP_ITERS 20 TEST.PRECISE_BN.NUM_ITER 8

# The long-schedule reference (issue 23): 51 runs of 1,000 or 2,000 iterations, recorded one by
# one under docs/reference/ (commit the records as they come); interrupted, run it again.
reference: setup
	$(PY) tools/reference.py --jobs 2

# AP parity of bf16 autocast + channels-last training against float32 (issue 20,
# docs/training_speed.md): the reference schedule twice, paired by seed; resumable. Add seeds
# (PARITY_SEEDS="4 5" PARITY_NECKS="bifpn") while tools/precision_parity.py says "add seeds".
# Also: a control (float32 with channels-last only: the same values, float32 sums in another
# order) for CONTROL_NECKS, and the float32 models evaluated again in bf16 + channels-last.
PARITY_SEEDS ?= 1 2 3
PARITY_NECKS ?= fpn bifpn nasfpn
CONTROL_NECKS ?= nasfpn
# The runs' records go to docs/parity/ (committed; their folders stay local, see its .gitignore),
# so a rerun trains only the runs whose record is missing.
PARITY = $(PY) tools/compare.py --detectors faster_rcnn --seeds $(PARITY_SEEDS) --jobs 2 \
	--threads 1 --no-costs
# the overrides come last (tools/compare.py reads everything after the first as overrides)
SCHEDULE = SOLVER.MAX_ITER 250 TEST.EVAL_PERIOD 200
FP32 = $(SCHEDULE) SOLVER.AMP.ENABLED False MODEL.CHANNELS_LAST False
FP32_MODELS = --eval-only --weights 'docs/parity/fp32/runs/{detector}_{neck}/seed{seed}/model_final.pth'
PARITY_TABLE = $(PY) tools/precision_parity.py
parity: setup
	$(PARITY) --necks $(PARITY_NECKS) --out docs/parity/fp32 $(FP32)
	$(PARITY) --necks $(PARITY_NECKS) --out docs/parity/bf16_cl \
		$(SCHEDULE) SOLVER.AMP.ENABLED True MODEL.CHANNELS_LAST True
	$(PARITY) --necks $(CONTROL_NECKS) --out docs/parity/fp32_cl \
		$(SCHEDULE) SOLVER.AMP.ENABLED False MODEL.CHANNELS_LAST True
	$(PARITY) --necks $(PARITY_NECKS) --out docs/parity/eval_fp32 $(FP32_MODELS) $(FP32)
	$(PARITY) --necks $(PARITY_NECKS) --out docs/parity/eval_bf16_cl $(FP32_MODELS) \
		$(SCHEDULE) TEST.AMP.ENABLED True MODEL.CHANNELS_LAST True
	$(PARITY_TABLE) docs/parity/fp32 docs/parity/bf16_cl --out docs/parity/table.md
	$(PARITY_TABLE) docs/parity/fp32 docs/parity/fp32_cl --out docs/parity/control.md
	$(PARITY_TABLE) docs/parity/eval_fp32 docs/parity/eval_bf16_cl --out docs/parity/inference.md

# The 12 releases at the reference's recipe: its seed-1 runs (docs/reference/S1000), the missing
# ones (Mask R-CNN) trained there; the reference's own runs are released as they are.
zoo: setup
	$(PY) tools/build_zoo.py --jobs 2

benchmark: setup
	$(PY) benchmarks/bench_necks.py --train --out output/bench_necks
	$(PY) benchmarks/bench_train.py --out output/bench_train

# The configs of the papers' necks other than FPN (YAML and LazyConfig), written from FPN's
# configs and their rows of fpn_variants/registry.py; then python tools/update_readme.py counts them.
configs: setup
	$(PY) tools/write_configs.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m black --check -l 100 .
	$(PY) -m isort --check-only .
	$(PY) -m flake8 .

format: setup
	$(PY) -m black -l 100 .
	$(PY) -m isort .

clean:
	rm -rf $(VENV) build *.egg-info
