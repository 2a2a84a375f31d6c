# Every target installs what it needs first, so `make demo` and `make test` work on a new machine.
# Debian's own python3 (built with PGO and LTO, like the images' Python): about 30% faster here,
# at start-up and in the tests, than an unoptimized build such as pyenv's default that may come
# first on PATH. apt installs it (and venv) when missing; PYTHON=... picks another interpreter.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
PY := $(VENV)/bin/python
LOCALCLUSTER := $(PY) -m localcluster

.PHONY: setup test test-unit test-cluster lint format demo ui cluster-up cluster-down cluster-status cluster-binaries clean

setup: $(VENV)/.installed cluster-binaries

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
		{ apt-get update -q && apt-get install -y -q python3 python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
# compat: the checkout as a path entry, not setuptools' import hook (10-18 ms at every start).
	$(VENV)/bin/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	touch $@

# Installs etcd, Go, containerd and the build tools with apt, then builds the control plane, the
# real node's kubelet, kube-proxy and pause, and its images (Python with Dagster, dbt, PostgreSQL)
# once (about 13 minutes on 2 cores); later runs reuse the cache in ~/.cache/floe-deploy.
cluster-binaries: $(VENV)/.installed
	$(LOCALCLUSTER) build

test: setup
	$(PY) -m pytest

test-unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

test-cluster: setup
	$(PY) -m pytest -m cluster

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(VENV)/.installed
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

cluster-up: setup
	$(LOCALCLUSTER) up

cluster-down: $(VENV)/.installed
	$(LOCALCLUSTER) down

cluster-status: $(VENV)/.installed
	$(LOCALCLUSTER) status

# The main job: the local control plane up with a real node, the demo's Secrets in place, then
# the whole Dagster graph materialized for dev (values, manifests, releases with their checks,
# then every dbt model as a Kubernetes Job), its summary printed; the runs stay in .dagster_home
# for `make ui`. With the real node (examples/real-node/floe-deploy.yaml) Dagster, PostgreSQL
# and the dbt models run for real and the platform's own Dagster hosts the graph; if the real
# node cannot start here, the demo says so and runs on the simulated nodes (floe-deploy.yaml).
REAL_NODE_CONFIG := examples/real-node/floe-deploy.yaml
demo: setup
	@export FLOE_DEMO_STARTED=$$(date +%s.%N); \
	if $(LOCALCLUSTER) up --real-nodes 1; then config=$(REAL_NODE_CONFIG); \
	else \
		echo "make demo: the real node could not start here (the error is above): the demo" \
			"runs on the simulated nodes only, where no container runs"; \
		$(LOCALCLUSTER) up || exit 1; config=floe-deploy.yaml; \
	fi; \
	kubeconfig=$$($(LOCALCLUSTER) kubeconfig); \
	FLOE_DEPLOY_CONFIG=$$config $(VENV)/bin/dagster definitions validate -w workspace.yaml && \
	KUBECONFIG=$$kubeconfig $(PY) examples/demo_secrets.py --env dev --config $$config && \
	DAGSTER_HOME=$(CURDIR)/.dagster_home FLOE_KUBECONFIG=$$kubeconfig \
		$(PY) examples/demo.py --env dev --config $$config && \
	KUBECONFIG=$$kubeconfig $(VENV)/bin/floe-deploy status --env dev --config $$config

# The Dagster UI, daemon included, on the demo's runs. `env --default-signal=INT`: Dagster makes
# SIGTERM do what SIGINT does, so a dagster dev started with SIGINT ignored (a script's `cmd &`)
# would ignore SIGTERM too and never stop.
ui: cluster-up
	DAGSTER_HOME=$(CURDIR)/.dagster_home FLOE_KUBECONFIG=$$($(LOCALCLUSTER) kubeconfig) \
		exec env --default-signal=INT $(VENV)/bin/dagster dev -w workspace.yaml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
