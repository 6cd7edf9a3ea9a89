# The project's two commands: `make lab` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# SLS files are rendered by Salt (Jinja), so salt-lint checks them; yamllint
# checks the plain YAML (see .yamllint).
SLS = $(shell git ls-files --cached --others --exclude-standard -- '*.sls')

.PHONY: all test test-bootstrap lint unit lab lab-down secrets venv clean host-lab host-test

all: test

# The host's Debian packages (tools/host-packages), installed when missing.
host-lab:
	tools/setup-host lab

host-test:
	tools/setup-host test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# Secrets are generated once per checkout and never committed.
secrets: pillar/secrets.sls

pillar/secrets.sls:
	$(PYTHON) tools/gen_secrets.py $@

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/yamllint --strict .
	$(BIN)/salt-lint $(SLS)

unit: venv secrets
	$(BIN)/pytest tests/test_topology.py

test: host-test lint secrets
	$(BIN)/pytest

# Bare nodes to a verified cluster with tools/bootstrap.py (issue 27's
# acceptance test, about half an hour): apart from make test, which it
# would take past its time.
test-bootstrap: host-test lint secrets
	$(BIN)/pytest -m bootstrap tests/test_zz_bootstrap.py

# The whole cluster on this host: up (build the rootfs once, boot every node),
# highstate through the master on nas, verify, and show the status table.
lab: host-lab venv secrets
	$(BIN)/python -m lab lab

lab-down: venv
	$(BIN)/python -m lab down

clean:
	rm -rf .salt .pytest_cache .ruff_cache
