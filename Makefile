# Two commands: `make demo` runs the main job, `make test` runs the tests.
# Both create and reuse a virtual environment in .venv (rebuilt when
# pyproject.toml changes).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test benchmark

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

benchmark: $(STAMP)
	$(PY) tools/benchmark.py
	$(PY) tools/regrid_benchmark.py
	$(PY) tools/graph_benchmark.py
	$(PY) tools/train_benchmark.py
	$(PY) tools/train_benchmark.py --configs=gin/qm9_small.gin --steps=40
