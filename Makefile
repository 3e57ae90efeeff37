# rankswap developer entry points. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rankswap-installed
ROOTS := core training ranker operator devtools
export RANKSWAP_CACHE ?= $(HOME)/.cache/rankswap

.PHONY: venv test test-fast test-node check demo bench bench-rollout bench-pipelines kube-tools node-tools images promtool vegeta postgres java clean

# The virtual environment is rebuilt only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q -U pip setuptools wheel
	@$(PY) -m pip install -q -e '.[dev]'
	@# One import root per role folder (see README "Layout"): a .pth file is simpler and
	@# more robust than setuptools' editable finder, which only knows packages present at install.
	@site=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	  : > $$site/rankswap-roots.pth; \
	  for r in $(ROOTS); do echo "$(CURDIR)/$$r" >> $$site/rankswap-roots.pth; done
	@touch $(STAMP)

venv: $(STAMP)

postgres:
	@bash scripts/ensure-postgres.sh

# A Java 17+ runtime for pyspark in local mode (the Spark engine's tests): Debian's
# openjdk-17-jre-headless, installed only when missing (scripts/ensure-java.sh).
java:
	@bash scripts/ensure-java.sh

# Control-plane binaries (kube-apiserver, etcd, kubectl, helm) into $(RANKSWAP_CACHE): built or
# unpacked only when missing (docs/CONTROL_PLANE.md).
kube-tools:
	@bash scripts/kube-tools.sh >/dev/null

# promtool (checks and unit-tests the chart's alert rules), built from the Go module proxy into
# $(RANKSWAP_CACHE) only when missing (scripts/promtool.sh).
promtool:
	@bash scripts/promtool.sh >/dev/null

# vegeta (the open-loop load generator of the bench's `cost` section), built from the Go module
# proxy into $(RANKSWAP_CACHE) only when missing (scripts/vegeta.sh). The section builds it
# itself when `go` is on PATH and runs without it (the project's load generator only) otherwise.
vegeta:
	@bash scripts/vegeta.sh >/dev/null

# Every tier: unit + process-based integration (real kube-apiserver, S3 API, PostgreSQL), then
# the real-node tier (root: helm install on a real node, rollouts against real pods).
test: test-fast test-node

test-fast: venv postgres java kube-tools promtool
	$(VENV)/bin/pytest

# A real single-node cluster (docs/NODE.md): kubelet, kube-controller-manager, kube-scheduler,
# kube-proxy, containerd + shim + ctr and a static pause image, built once into $(RANKSWAP_CACHE).
node-tools: kube-tools
	@bash scripts/node-tools.sh >/dev/null

# The ranker, operator and training images (docker/Dockerfile) with Debian's podman/buildah on a
# debootstrap base and a host-side wheelhouse (no registry, no HTTPS inside the build).
images:
	@bash scripts/images.sh

# The real tier (marker `node`, root only): helm install on a real node, rollouts against real pods.
test-node: venv postgres node-tools images
	$(VENV)/bin/pytest -m node tests/node

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p rankswap -p rankswap_training -p rankswap_ranker -p rankswap_operator -p rankswap_dev
	$(VENV)/bin/mypy tests
	$(VENV)/bin/lint-imports

demo: venv kube-tools
	$(PY) -m rankswap_dev.demo

bench: venv
	$(PY) -m rankswap_dev.bench_ranker
	$(PY) -m rankswap_dev.bench_shadow

# kubectl apply -> every pod confirmed, for 3 and 10 local ranker pods (docs/OPERATOR.md).
bench-rollout: venv kube-tools
	$(PY) -m rankswap_dev.bench_rollout

# datagen / features build / model train at 0.2 M, 1 M, 3 M and 10 M expenses (docs/BENCHMARKS.md;
# the worlds stay in work/bench-pipelines and are reused; POINTS=0.2M,1M for a shorter run).
POINTS ?= 0.2M,1M,3M,10M
bench-pipelines: venv
	$(PY) -m rankswap_dev.bench_pipelines --points $(POINTS)

clean:
	rm -rf $(VENV) work .mypy_cache .ruff_cache .pytest_cache
