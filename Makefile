# rankswap developer entry points. `make demo` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rankswap-installed
ROOTS := core training ranker operator devtools
export RANKSWAP_CACHE ?= $(HOME)/.cache/rankswap

.PHONY: venv test check demo bench bench-rollout kube-tools postgres clean

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

# Control-plane binaries (kube-apiserver, etcd, kubectl, helm) into $(RANKSWAP_CACHE): built or
# unpacked only when missing (docs/CONTROL_PLANE.md).
kube-tools:
	@bash scripts/kube-tools.sh >/dev/null

test: venv postgres kube-tools
	$(VENV)/bin/pytest

check: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy -p rankswap -p rankswap_training -p rankswap_ranker -p rankswap_operator -p rankswap_dev
	$(VENV)/bin/lint-imports

demo: venv kube-tools
	$(PY) -m rankswap_dev.demo

bench: venv
	$(PY) -m rankswap_dev.bench_ranker

# kubectl apply -> every pod confirmed, for 3 and 10 local ranker pods (docs/OPERATOR.md).
bench-rollout: venv kube-tools
	$(PY) -m rankswap_dev.bench_rollout

clean:
	rm -rf $(VENV) work .mypy_cache .ruff_cache .pytest_cache
