# `make demo` and `make test` create .venv on first use (torch first, then everything else in ONE
# pip call, so pip cannot break comet's protobuf pin), then run.
# The first supported Python on PATH that runs: 3.11 (what CI runs), then 3.12, then 3.13
# (docs/guide.md: Python versions says what each costs). Override with PYTHON=...
SUPPORTED := python3.11 python3.12 python3.13
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,$(SUPPORTED),$(shell $(p) -c 'import sys' >/dev/null 2>&1 && echo $(p))))
endif
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export RAY_USAGE_STATS_ENABLED := 0

.PHONY: demo test test-fast validate lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -n "$(PYTHON)" && command -v $(PYTHON) >/dev/null || { echo "error: no supported Python found ($(SUPPORTED)); install one, or set PYTHON=..."; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "torch==$$(sed -n 's/^torch==//p' constraints.txt)"
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/raysweep run jobs/demo.yaml

validate: $(STAMP)
	$(BIN)/raysweep validate jobs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lock: $(STAMP)
	@echo "rewrite constraints.txt from $(VENV): review the diff before committing"
	$(BIN)/pip freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' > constraints.lock.new

clean:
	rm -rf runs .pytest_cache
