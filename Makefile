# kubelab: the two commands of the README are `make demo` and `make test`.
# Each target installs what it needs; heavy one-time artefacts (the Kubernetes
# control-plane binaries, the OIDC provider's and the proxy's node_modules) live in $(KUBELAB_CACHE),
# outside the repo and keyed by version, so later runs reuse them.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export KUBELAB_CACHE ?= $(HOME)/.cache/kubelab
K8S_BIN := $(KUBELAB_CACHE)/k8s-v1.20.2/bin
PYTEST_ARGS ?=

# Debian packages: etcd for the control plane, iproute2 for pod network namespaces,
# chromium for browser tests, nodejs/npm for the local OIDC provider and the proxy, python3-venv for .venv,
# openmpi-bin (mpirun, and the libmpi the mpi4py wheel loads) and openssh-server for real MPI jobs,
# postgresql for the GPU accounting's tests on a real PostgreSQL (a throw-away cluster per test run).
APT_PACKAGES := etcd-server openssl iproute2 util-linux procps chromium fonts-dejavu-core python3-venv ca-certificates openmpi-bin openssh-server postgresql

.PHONY: help setup system venv oidc proxy controlplane test lint unit demo bench images docs screenshots clean

help:
	@echo "make demo   - install what is needed, start the local cluster, OIDC provider and hub"
	@echo "make test   - install what is needed, then ruff and the whole pytest suite"
	@echo "make bench  - run the benchmarks in benchmarks/ and print their figures"
	@echo "make images - build the container images (needs docker or podman)"
	@echo "make screenshots - run the browser tests, saving their screenshots into docs/screenshots"

setup: system venv oidc proxy controlplane

# One stamp per apt package list, so a second run does not call apt at all.
system: $(KUBELAB_CACHE)/.apt-$(shell echo $(APT_PACKAGES) | md5sum | cut -c1-8)
$(KUBELAB_CACHE)/.apt-%:
	@echo "[setup] installing Debian packages: $(APT_PACKAGES)"
	@command -v apt-get >/dev/null || { echo "error: apt-get not found; install by hand: $(APT_PACKAGES) nodejs npm"; exit 1; }
	@[ "$$(id -u)" = 0 ] || { echo "error: run as root (apt-get and network namespaces need it)"; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
	@command -v node >/dev/null && command -v npm >/dev/null || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
	@mkdir -p $(KUBELAB_CACHE) && touch $@

venv: $(VENV)/.installed
$(VENV)/.installed: setup.py
	@echo "[setup] python environment in $(VENV)"
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch 2.13.0 is pinned so pip takes the CPU wheel that this workplace keeps on disk.
	$(BIN)/pip install -q -e '.[test]' 'torch==2.13.0'
	# The Katib SDK whose models the sweeps' Katib Experiments are checked against. Its own pins
	# (protobuf<5, kubeflow-training==1.9.0) clash with tensorboard's and the engine tests', and
	# its models need neither: it goes to a folder of its own that only tests/jobs/katib_sdk.py reads.
	$(BIN)/pip install -q --no-deps --target $(VENV)/katib-sdk 'kubeflow-katib==0.19.0'
	@touch $@

oidc: venv
	@bash hub_config/oidc/install.sh

# The npm configurable-http-proxy (the proxy z2jh runs; it streams spawn progress), pinned in
# hub_config/chp/package-lock.json, for the demo and the tests.
proxy: system
	@bash hub_config/chp/install.sh >/dev/null

# Built once from Debian's source package (about 7 minutes on 2 cores), then reused.
controlplane: system
	@[ -x $(K8S_BIN)/kube-apiserver ] && echo "[setup] control plane: cached in $(K8S_BIN)" || \
	  bash devcluster/build_k8s.sh $(K8S_BIN)

lint: venv
	$(BIN)/ruff check .

# A cluster that the test session itself started is stopped at its end (no process of the
# process node outlives the session); one that was already running (make demo) is reused and kept.
test: setup lint
	KUBELAB_STOP_CLUSTER=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

unit: venv oidc proxy
	$(BIN)/python -m pytest -m "not integration and not browser" $(PYTEST_ARGS)

demo: setup
	$(BIN)/python -m kubelab.hub_config.demo

bench: setup
	$(BIN)/python benchmarks/run_all.py

images:
	bash images/build.sh

docs: venv
	$(BIN)/kubelab-check-config --docs > docs/catalogue.md

# The browser tests save their screenshots under build/screenshots; this refreshes the docs' own.
screenshots: setup
	KUBELAB_SCREENSHOTS=$(CURDIR)/docs/screenshots $(BIN)/python -m pytest -m browser $(PYTEST_ARGS)

clean:
	-$(BIN)/kubelab-devcluster down
	rm -rf $(VENV) *.egg-info
