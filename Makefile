# Two commands do everything on a fresh machine with Python 3.11:
#   make demo   the main job (side-by-side run on the built-in synthetic data)
#   make test   the test suite (what .ci/run runs)
# Both create .venv/ and install the pinned dependencies first; a second run skips that.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup demo test benchmark zoo lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt requirements-peers.txt setup.py tools/install_detectron2.sh | $(PY)
	$(PY) -m pip install -r requirements.txt -r requirements-dev.txt -r requirements-peers.txt
	bash tools/install_detectron2.sh $(PY)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

setup: $(STAMP)

demo: setup
	$(PY) tools/compare.py --detectors faster_rcnn --necks fpn panet bifpn nasfpn --out output/compare

zoo: setup
	$(PY) tools/build_zoo.py

benchmark: setup
	$(PY) benchmarks/bench_necks.py --train --out output/bench_necks

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
