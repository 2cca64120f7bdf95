# The two commands: `make bench` (the default study on the embedded data) and `make test`.
# Both create .venv on first use and reinstall when setup.cfg or pyproject.toml change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
BENCHMARK ?= mnist1d_mlp
OUTPUT_DIR ?= results/$(BENCHMARK)
REPEATS ?= 10
# Extra harness flags, e.g. make bench ARGS="--conditions=control,kernels,all --epochs=5"
ARGS ?=

# Containers: `make bench GPU=1` runs the study in the pinned CUDA image on this host's GPUs.
GPU ?=
FLAVOUR := $(if $(GPU),gpu,cpu)
IMAGE ?= tf-determinism-harness:$(FLAVOUR)
# TFDS data sets prepared inside the image at build time, e.g. DATASETS=mnist,cifar10
DATASETS ?=
DOCKER_RUN_GPUS := $(if $(GPU),--gpus all,)
# Rebuilt when anything the image holds changes; docker's layer cache makes that cheap.
IMAGE_STAMP := build/image-$(FLAVOUR).stamp
IMAGE_INPUTS := docker/$(FLAVOUR).Dockerfile docker/requirements-$(FLAVOUR).lock docker/entrypoint.sh \
	$(shell find harness benchmarks -type f \( -name '*.py' -o -name '*.json' -o -name '*.gz' \) 2>/dev/null)
LOCK_FLAGS := --generate-hashes --python-version 3.12 --python-platform x86_64-manylinux_2_28 --no-header

# The study CI runs after the tests, and the committed summary it is gated against: the one definition that
# `make gate` and .github/workflows/determinism.yml both use (gate-study, then gate-check).
GATE_DIR := results/ci_gate
GATE_BASELINE := benchmarks/baselines/digits_mlp_ci.json
GATE_RULES := benchmarks/baselines/ci_rules.json
GATE_STUDY := --benchmark=digits_mlp --conditions=control,kernels,init,all --repeats=5 --epochs=10
# Extra gate flags, e.g. GATE_ARGS="--junit_xml=results/ci_gate/gate.xml --markdown_summary=$$GITHUB_STEP_SUMMARY"
GATE_ARGS ?=
RUN_GATE_STUDY = rm -rf $(GATE_DIR) && $(PY) -m harness.bench $(GATE_STUDY) --output_dir=$(GATE_DIR)
RUN_GATE_CHECK = $(PY) -m harness.gate --baseline=$(GATE_BASELINE) --candidate=$(GATE_DIR) --rules=$(GATE_RULES) \
	$(GATE_ARGS)

# docs/tuning.md's worked example: single-seed tuning, its re-evaluation, and the seed-robust tuner's pick.
TUNE_DIR := results/tune/$(BENCHMARK)
TUNE_STORAGE := sqlite:///$(TUNE_DIR)/optuna.db
TUNE_TRIALS ?= 30

.PHONY: bench bench-ray test test-slow speed gate gate-study gate-check gate-baseline report screenshot tune-example image locks lint clean

# The install prints nothing of ours: setuptools' notice that every editable install gets (about
# editable installs, not this project) is left out; a warning about the project's packaging still shows.
$(INSTALLED): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23.1"
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install --quiet -e ".[cpu,dev,tune,ray]"
	touch $(INSTALLED)

ifeq ($(GPU),)
bench: $(INSTALLED)
	$(PY) -m harness.bench --benchmark=$(BENCHMARK) --repeats=$(REPEATS) --output_dir=$(OUTPUT_DIR) $(ARGS)
else
# The image's id goes into every record (environment.container.digest).
bench: $(IMAGE_STAMP)
	mkdir -p results
	docker run --rm $(DOCKER_RUN_GPUS) --user "$$(id -u):$$(id -g)" -v "$(CURDIR)/results:/results" \
		-e HARNESS_IMAGE=$(IMAGE) -e HARNESS_IMAGE_DIGEST="$$(docker image inspect --format '{{.Id}}' $(IMAGE))" \
		$(IMAGE) bench --benchmark=$(BENCHMARK) --repeats=$(REPEATS) --output_dir=/results/$(BENCHMARK) $(ARGS)
endif

# A real two-node Ray cluster on the loopback (two raylets, one CPU each, as `ray start` starts them on two
# machines), a small study run on it with --executor=ray, then that cluster stopped and no other: each node is
# started in a session of its own (setsid: its processes are one process group, named by the PID of its `ray
# start`) under a temp dir of its own, and stopped by that group (SIGTERM; SIGKILL what is left after 10 s), not
# by `ray stop`, which stops every Ray process of the user on this machine, another job's cluster included. The
# trials run at this command's priority (RAY_worker_niceness=0; Ray's nice 15 starves them on a loaded machine).
# docs/scale-out.md.
RAY_PORT ?= 6390
RAY_TEMP ?= /tmp/harness-ray-$(RAY_PORT)
RAY_DIR ?= results/ray/digits_mlp
RAY_STUDY := --benchmark=digits_mlp --conditions=control,kernels,init,all,env:onednn=1 --repeats=4 --epochs=5
RAY := $(VENV)/bin/ray
RAY_NODE := --num-cpus=1 --disable-usage-stats >/dev/null
# Stops the process groups in $$nodes: what a node's `ray start` started, and nothing else.
RAY_STOP = for g in $$nodes; do kill -TERM -$$g 2>/dev/null; done; \
	for i in 1 2 3 4 5 6 7 8 9 10; do alive=; for g in $$nodes; do kill -0 -$$g 2>/dev/null && alive=1; done; \
	[ -z "$$alive" ] && break; sleep 1; done; for g in $$nodes; do kill -KILL -$$g 2>/dev/null; done; \
	rm -rf $(RAY_TEMP)
# Ray 2.60 starts a head with token authentication once ~/.ray/auth_token exists (any local ray.init() writes it)
# but a second `ray start` without RAY_AUTH_MODE does not send the token: set the mode for all three, so the
# cluster authenticates alike whether or not a token was made before, and make one where there is none (its
# value, a secret, goes nowhere but Ray's file).
bench-ray: export RAY_AUTH_MODE = token
bench-ray: export RAY_worker_niceness = 0
bench-ray: $(INSTALLED)
	$(RAY) get-auth-token >/dev/null 2>&1 || $(RAY) get-auth-token --generate >/dev/null
	@nodes=; trap '$(RAY_STOP)' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	setsid $(RAY) start --head --port=$(RAY_PORT) --temp-dir=$(RAY_TEMP) --include-dashboard=false $(RAY_NODE) & \
	nodes=$$!; wait $$! || exit 1; \
	setsid $(RAY) start --address=127.0.0.1:$(RAY_PORT) $(RAY_NODE) & nodes="$$nodes $$!"; wait $$! || exit 1; \
	$(PY) -m harness.bench $(RAY_STUDY) --executor=ray --ray_address=127.0.0.1:$(RAY_PORT) --output_dir=$(RAY_DIR) \
		$(ARGS)

image: $(IMAGE_STAMP)

$(IMAGE_STAMP): $(IMAGE_INPUTS)
	docker build -f docker/$(FLAVOUR).Dockerfile -t $(IMAGE) --build-arg DATASETS=$(DATASETS) .
	mkdir -p build && touch $@

# Regenerates the images' lock files (exact versions and hashes) from setup.cfg.
locks: $(INSTALLED)
	$(VENV)/bin/uv pip compile setup.cfg --extra cpu --extra tune --extra ray $(LOCK_FLAGS) -o docker/requirements-cpu.lock
	$(VENV)/bin/uv pip compile setup.cfg --extra gpu --extra tune --extra ray $(LOCK_FLAGS) -o docker/requirements-gpu.lock

# The quick tier (every module, small trials) on TEST_WORKERS processes; `make test-slow` runs the rest
# (programs end to end in fresh processes, longer studies) one test at a time, since some of them time
# things or load every core on purpose. .ci/run runs both.
TEST_WORKERS ?= 2
test: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow" -n $(TEST_WORKERS) --dist loadscope

test-slow: $(INSTALLED)
	$(PY) -m pytest -q -m slow

# The harness loop against Keras fit, and vectorized replicas, side by side (writes results/speed/speed.json).
speed: $(INSTALLED)
	$(PY) -m harness.bench_speed $(ARGS)

# A fresh tiny study, gated against the committed baseline (exit 1 on a regression).
gate: $(INSTALLED)
	$(RUN_GATE_STUDY)
	$(RUN_GATE_CHECK)

# The same, as two steps (a CI job shows the study and the verdict apart).
gate-study: $(INSTALLED)
	$(RUN_GATE_STUDY)

gate-check: $(INSTALLED)
	$(RUN_GATE_CHECK)

# Re-measures the gate's baseline on this machine; commit the file it writes.
# The committed baseline and rules come from RUNS runs of the gate's study (each a fresh process): the first run's
# summary is the baseline, and the thresholds are what the runs' measured spread gives (harness.gate --calibrate,
# docs/gate.md).
RUNS ?= 3
CALIBRATION_DIR := results/ci_gate_calibration
gate-baseline: $(INSTALLED)
	rm -rf $(CALIBRATION_DIR)
	for run in $$(seq 1 $(RUNS)); do \
		$(PY) -m harness.bench $(GATE_STUDY) --output_dir=$(CALIBRATION_DIR)/$$run || exit 1; done
	cp $(CALIBRATION_DIR)/1/summary.json $(GATE_BASELINE)
	$(PY) -m harness.gate --calibrate=$$(seq -s, -f '$(CALIBRATION_DIR)/%g' 1 $(RUNS)) --write_rules=$(GATE_RULES)

# Re-running resumes both tuning studies (up to TUNE_TRIALS candidates) and reuses every recorded trial.
tune-example: $(INSTALLED)
	$(PY) -m harness.tune --benchmark=$(BENCHMARK) --n_trials=$(TUNE_TRIALS) --seeds_per_trial=1 \
		--study_name=single-seed --output_dir=$(TUNE_DIR)
	$(PY) -m harness.reeval --optuna_storage=$(TUNE_STORAGE) --optuna_study=single-seed
	$(PY) -m harness.tune --benchmark=$(BENCHMARK) --n_trials=$(TUNE_TRIALS) --seeds_per_trial=5 --aggregate=lcb \
		--study_name=seed-robust --output_dir=$(TUNE_DIR)
	$(PY) -m harness.reeval --optuna_storage=$(TUNE_STORAGE) --optuna_study=seed-robust
	$(PY) -m harness.compare_configs --benchmark=$(BENCHMARK) --seed=1 --config=single:$(TUNE_DIR)/single-seed.best.json \
		--config=robust:$(TUNE_DIR)/seed-robust.best.json --config=default:

report: $(INSTALLED)
	$(PY) -m harness.report --input_dir=$(OUTPUT_DIR)

# The README's screenshot (SCREENSHOT) from the current code: the report of OUTPUT_DIR (the study `make bench`
# writes) in Debian's headless Chromium at 1280 x 900 px (tests/browser.py).
SCREENSHOT ?= docs/images/report.png
screenshot: $(INSTALLED)
	$(PY) -m harness.report --input_dir=$(OUTPUT_DIR)
	$(PY) tests/browser.py $(OUTPUT_DIR)/report.html $(SCREENSHOT)

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(VENV)/bin/hadolint docker/cpu.Dockerfile docker/gpu.Dockerfile

clean:
	rm -rf results .pytest_cache
