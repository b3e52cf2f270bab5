# Everything a fresh machine needs: `make run` and `make test` create .venv and install from constraints.txt.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: install install-dev run test test-fast lint bench check-ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(DEV_STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@ $(STAMP)

install: $(STAMP)
install-dev: $(DEV_STAMP)

# Runs every flow on its embedded default data and prints each run directory, one per line.
run: $(STAMP)
	@$(BIN)/vigil run defect | tail -n 1
	@$(BIN)/vigil run eeg | tail -n 1

test: $(DEV_STAMP)
	$(BIN)/python -m pytest -ra --durations=25

test-fast: $(DEV_STAMP)
	$(BIN)/python -m pytest -ra -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(DEV_STAMP)
	$(BIN)/python bench/fit_loop.py

# A test-profile report.html and the Prefect UI's flow-run page in headless Chromium (Debian's package, installed
# with apt when missing): screenshots in the run directory; fails on broken images, empty artifact cards or console
# errors from vigil's own content.
check-ui: $(DEV_STAMP)
	$(BIN)/python tests/ui/check_ui.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
