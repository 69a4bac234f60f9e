# bottle: every target installs what it needs on first use and is quick after.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
INV   := $(VENV)/bin/inv
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: setup engine lint test unit demo bench bench-compare clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)            ## the venv with bottle and its test dependencies, byte-compiled
	@# as an installed bottle is (pip compiles what it installs; an editable install is not, and
	@# under PYTHONDONTWRITEBYTECODE every `inv` would compile its modules again: 65 ms each)
	@$(PY) -m compileall -q bottle_tasks tasks.py      # quiet but for errors

engine:                    ## a running Docker engine and the local base images
	@bash scripts/engine.sh

lint: setup                ## ruff over the controller, the sidecars, the tests and the bench; mypy over the code
	$(VENV)/bin/ruff check bottle_tasks tests bench
	$(VENV)/bin/mypy

test: setup engine lint    ## lint, then every test: unit, and engine tests on the real Docker Engine
	@bash scripts/need.sh sshd openssh-server     # the Fabric tests' loopback sshd
	$(PY) -m pytest -q -ra

unit: setup                ## unit tests only (no Docker)
	$(PY) -m pytest -q tests/unit

demo: setup engine         ## launch the demo bottle and show what it allows and refuses
	@bash scripts/demo.sh

bench: setup engine        ## benchmarks, side by side, reported as ratios
	@bash scripts/need.sh docker-compose docker-compose
	$(PY) bench/run.py

bench-compare:             ## the aims' figures of bench/results.json beside an earlier run's: AGAINST=REV, or HISTORY=1
	@python3 bench/compare.py $(if $(HISTORY),--history,$(AGAINST))

clean:                     ## remove every bottle (containers, networks, state)
	-$(INV) down --all
