# agentops operator. Two entry points on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
PY := $(VENV)/bin/python
CLUSTER ?= local
CLUSTER_DIR := $(ROOT)/.cluster
export PATH := $(CLUSTER_DIR)/bin:$(VENV)/bin:$(PATH)
ifeq ($(CLUSTER),local)
export KUBECONFIG := $(CLUSTER_DIR)/kubeconfig
endif
PYTEST_ARGS ?=

.PHONY: help
help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev,otel]'
	touch $@

.PHONY: setup
setup: $(VENV)/.installed ## create .venv and install the project with dev tools

.PHONY: control-plane
control-plane: ## build the control plane from Go modules into ~/.cache/agentops (slow once)
	hack/build-control-plane.sh

.PHONY: cluster-up
cluster-up: ## start the local kwok-based cluster (.cluster/kubeconfig)
ifeq ($(CLUSTER),local)
	hack/cluster-up.sh
else
	@echo "using the cluster KUBECONFIG points to: $${KUBECONFIG:-~/.kube/config}"
	@kubectl version >/dev/null
endif

.PHONY: cluster-down
cluster-down: ## delete the local cluster
	hack/cluster-down.sh

.PHONY: crds
crds: setup ## regenerate crds/ and the Helm chart's CRD templates from the models, argocd-cm from the Lua files
	$(PY) -m agentops_operator.crdgen --out crds --helm-out helm/agentops/templates/crds
	$(PY) -m agentops_operator.argocdgen

.PHONY: plugin
plugin: setup ## link the kubectl plugin into .cluster/bin so `kubectl agentops ...` works
	mkdir -p $(CLUSTER_DIR)/bin
	ln -sf $(VENV)/bin/kubectl-agentops $(CLUSTER_DIR)/bin/kubectl-agentops

.PHONY: install
install: setup cluster-up plugin ## apply CRDs, RBAC and admission policies to the cluster
	kubectl apply --server-side -f crds/
	kubectl wait --for=condition=Established --timeout=60s -f crds/
	kubectl apply --server-side -f manifests/rbac/ -f manifests/admission/

.PHONY: lint
lint: setup ## ruff, CRD freshness, import-linter (layering contracts in pyproject.toml), mypy (strict on pure modules)
	$(VENV)/bin/ruff check operator tests bench
	$(PY) -m agentops_operator.crdgen --check --out crds
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) -m agentops_operator.argocdgen --check

.PHONY: deps
deps: ## system packages the unit tests use (Debian's Lua 5.1 and 5.4, for the Argo CD health checks)
	@command -v lua5.1 >/dev/null && command -v lua5.4 >/dev/null || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends lua5.1 lua5.4; }

.PHONY: unit
unit: setup deps ## unit tests (no cluster)
	$(VENV)/bin/pytest tests/unit -q $(PYTEST_ARGS)

.PHONY: e2e-deps
e2e-deps: ## system packages the e2e tests use (Debian's prometheus with promtool, prometheus-alertmanager)
	@command -v prometheus >/dev/null && command -v promtool >/dev/null \
	  && { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends \
	    prometheus prometheus-alertmanager; }

.PHONY: browser-deps
browser-deps: ## Debian's chromium, for the headless check of `dashboard --format html`
	@command -v chromium >/dev/null || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends chromium; }

.PHONY: image-deps
image-deps: ## Debian's buildah, podman, runc and debootstrap (daemonless image build and run)
	@command -v buildah >/dev/null && command -v podman >/dev/null && command -v runc >/dev/null \
	  && PATH="$$PATH:/usr/sbin:/sbin" command -v debootstrap >/dev/null || { \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q \
	    --no-install-recommends buildah podman runc debootstrap uidmap; }

.PHONY: image
image: image-deps ## build the operator image (buildah; base made here by debootstrap); OCI archive in dist/
	hack/image-build.sh

.PHONY: lock
lock: ## regenerate requirements.lock (the image's pinned dependencies) from pyproject.toml
	rm -rf build/lock-venv && python3 -m venv build/lock-venv
	build/lock-venv/bin/pip install -q .
	{ sed -n '1,2p' requirements.lock; build/lock-venv/bin/pip freeze --exclude agentops-operator; } > requirements.lock.new
	mv requirements.lock.new requirements.lock && rm -rf build/lock-venv

.PHONY: e2e
e2e: install e2e-deps deps browser-deps ## e2e tests against the cluster
	$(VENV)/bin/pytest tests/e2e -q $(PYTEST_ARGS)

.PHONY: scale
scale: install ## bounded scale test of the core loop (1,000 tasks): idle API load, writes per transition
	$(VENV)/bin/pytest tests/scale -q -s $(PYTEST_ARGS)

.PHONY: chaos
chaos: install ## operator SIGKILLs, a second operator and an API-server restart under task lifecycles (CHAOS_TASKS, CHAOS_KILLS)
	$(VENV)/bin/pytest tests/chaos -q $(PYTEST_ARGS)

.PHONY: test
test: setup deps lint unit image e2e chaos scale ## everything CI runs (the image e2e runs the image built here)

.PHONY: operator-bg
operator-bg: install
	hack/operator-bg.sh start

.PHONY: demo
demo: ## local cluster, CRDs, operator in the background, samples, dashboard (first run ~15-25 min)
	@echo "==> agentops demo. First run on a fresh machine: python venv (~1 min), then the control plane"
	@echo "    is compiled from Go modules (~15 min on 2 cores, longer on a busy machine; cached afterwards),"
	@echo "    then cluster, CRDs, operator and samples (~30 s). Later runs take ~30 s."
	@echo "==> [1/5] python venv and the project (.venv)"
	@$(MAKE) --no-print-directory setup >/dev/null
	@echo "==> [2/5] local cluster (builds the control plane first if it is not cached)"
	@$(MAKE) --no-print-directory install >/dev/null
	@echo "==> [3/5] operator in the background (log: .cluster/operator.log)"
	@hack/operator-bg.sh start
	@echo "==> [4/5] samples; waiting until the operator has assigned the sample task"
	@kubectl apply -f manifests/samples/ >/dev/null
	@kubectl wait agenttask/add-retry-logic -n default --for=jsonpath='{.status.phase}'=Assigned --timeout=90s >/dev/null
	@kubectl wait agents --all -n default --for=jsonpath='{.status.phase}'=Healthy --timeout=90s >/dev/null \
	  || echo "    (some sample Agents are not Healthy yet; the dashboard shows where they are)"
	@$(PY) -m agentops_operator.cli dashboard -A --wait 30 >/dev/null
	@echo "==> [5/5] dashboard"
	@kubectl get agentops -A
	@echo
	@$(PY) -m agentops_operator.cli dashboard -A
	@echo
	@echo "operator log: .cluster/operator.log; stop it with: make demo-down"

.PHONY: demo-down
demo-down: ## stop the background operator
	hack/operator-bg.sh stop

.PHONY: bench
bench: install ## benchmarks; JSON in bench/results, table on stdout
	$(PY) bench/run.py
