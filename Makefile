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

# Azurite (the Storage emulator the queue tests use), pinned in tools/package-lock.json.
TOOLS := tools/node_modules/.installed
$(TOOLS): tools/package.json tools/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tools --no-audit --no-fund --loglevel=error && touch $(TOOLS); \
	else echo "npm not found: the queue tests will be skipped (Azurite needs Node.js)"; fi

demo: $(STAMP)
	$(BIN)/cleversync demo

# Two workers, each with its own PostgreSQL cluster: the suite is CPU-bound on 2 cores.
test: $(STAMP) $(TOOLS) lint
	$(BIN)/python -m pytest -n 2

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
	rm -rf $(VENV) tools/node_modules .cleversync .cleversync-demo .pytest_cache .ruff_cache bench/results
