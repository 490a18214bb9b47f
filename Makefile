# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   the main job: a side-by-side preview on the built-in synthetic data, 2 seeds
#               (make reference: the long-schedule reference in docs/reference/, built run
#               by run over days, to replace docs/reference_comparison.md's table: 1 epoch
#               per run, not converged)
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
# (PARITY_SEEDS="1 2 3 4") while tools/precision_parity.py says "add seeds".
PARITY_SEEDS ?= 1 2 3
# The runs' records go to docs/parity/ (committed; their folders stay local, see its .gitignore),
# so a rerun trains only the runs whose record is missing.
PARITY = $(PY) tools/compare.py --detectors faster_rcnn --necks fpn bifpn nasfpn \
	--seeds $(PARITY_SEEDS) --jobs 2 --threads 1 --no-costs
PARITY_SCHEDULE = SOLVER.MAX_ITER 250 TEST.EVAL_PERIOD 200
parity: setup
	$(PARITY) --out docs/parity/fp32 $(PARITY_SCHEDULE)
	$(PARITY) --out docs/parity/bf16_cl $(PARITY_SCHEDULE) \
		SOLVER.AMP.ENABLED True MODEL.CHANNELS_LAST True
	$(PY) tools/precision_parity.py docs/parity/fp32 docs/parity/bf16_cl \
		--out docs/parity/table.md

zoo: setup
	$(PY) tools/build_zoo.py

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
