# The two commands: `make bench` (the default study on the embedded data) and `make test`.
# Both create .venv on first use and reinstall when setup.cfg or pyproject.toml change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BENCHMARK ?= digits_mlp
OUTPUT_DIR ?= results/$(BENCHMARK)
REPEATS ?= 10
# Extra harness flags, e.g. make bench ARGS="--conditions=control,kernels,all --epochs=5"
ARGS ?=

.PHONY: bench test lint clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[cpu,dev]"
	touch $(INSTALLED)

bench: $(INSTALLED)
	$(PY) -m harness.bench --benchmark=$(BENCHMARK) --repeats=$(REPEATS) --output_dir=$(OUTPUT_DIR) $(ARGS)

test: $(INSTALLED)
	$(PY) -m pytest -q

lint: $(INSTALLED)
	$(PY) -m ruff check .

clean:
	rm -rf results .pytest_cache
