# The README's commands. Each creates its own virtual environment in .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean lock

# The runtime packages at the lock's versions (what Azure installs), plus the dev tools.
$(STAMP): pyproject.toml requirements.in requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' -c requirements.txt
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/cleversync demo

test: $(STAMP) lint
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Re-lock requirements.txt after editing requirements.in (pins already there are kept;
# UPGRADE=1 moves every package to its newest allowed version).
lock: $(STAMP)
	$(BIN)/uv pip compile requirements.in -o requirements.txt --quiet \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 $(if $(UPGRADE),--upgrade)

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cleversync .cleversync-demo .pytest_cache .ruff_cache bench/results
