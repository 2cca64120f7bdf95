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

# The study CI runs after the tests, and the committed summary it is gated against.
GATE_DIR := results/ci_gate
GATE_BASELINE := benchmarks/baselines/digits_mlp_ci.json
GATE_RULES := benchmarks/baselines/ci_rules.json
GATE_STUDY := --benchmark=digits_mlp --conditions=control,kernels,init,all --repeats=5 --epochs=10

.PHONY: bench test gate gate-baseline report lint clean

$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	$(PY) -m pip install --quiet -e ".[cpu,dev]"
	touch $(INSTALLED)

bench: $(INSTALLED)
	$(PY) -m harness.bench --benchmark=$(BENCHMARK) --repeats=$(REPEATS) --output_dir=$(OUTPUT_DIR) $(ARGS)

test: $(INSTALLED)
	$(PY) -m pytest -q

# A fresh tiny study, gated against the committed baseline (exit 1 on a regression).
gate: $(INSTALLED)
	rm -rf $(GATE_DIR)
	$(PY) -m harness.bench $(GATE_STUDY) --output_dir=$(GATE_DIR)
	$(PY) -m harness.gate --baseline=$(GATE_BASELINE) --candidate=$(GATE_DIR) --rules=$(GATE_RULES)

# Re-measures the gate's baseline on this machine; commit the file it writes.
gate-baseline: $(INSTALLED)
	rm -rf $(GATE_DIR)
	$(PY) -m harness.bench $(GATE_STUDY) --output_dir=$(GATE_DIR)
	cp $(GATE_DIR)/summary.json $(GATE_BASELINE)

report: $(INSTALLED)
	$(PY) -m harness.report --input_dir=$(OUTPUT_DIR)

lint: $(INSTALLED)
	$(PY) -m ruff check .

clean:
	rm -rf results .pytest_cache
