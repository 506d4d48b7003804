# One command vocabulary: `make help` lists it.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

.PHONY: help install run test test-fast chaos lint clean chromium messages bench emails
help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(BIN)/.installed ## create .venv and install Convoy with its dev tools

run: $(BIN)/.installed ## install and start the whole system on the embedded stack (Ctrl-C stops it)
	$(BIN)/convoy up

# Parallel workers (pytest-xdist), each with its own PostgreSQL, nats-server and ports; the tests
# mostly wait on servers, so more workers than the 2 cores of the reference machine pay off.
TEST_WORKERS ?= 4

test: $(BIN)/.installed chromium ## install and run the test suite against real PostgreSQL, NATS, SMTP and Chromium
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not chaos"

test-fast: $(BIN)/.installed ## the inner loop: no browser, no process-level runs, no fuzzing or matrix sweeps
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not slow and not browser and not heavy and not chaos"

chaos: $(BIN)/.installed ## fault scenarios at full size (kill -9, NATS/PostgreSQL outages, cluster); prints counts into docs/reliability.md
	$(BIN)/python -m pytest -m chaos -p tests.chaos_report -p no:logging

bench: $(BIN)/.installed ## benchmarks on the embedded stack at issue #9's sizes (~8 min; BENCH_SCALE=0.1: ~2 min); updates docs/performance.md
	$(BIN)/python -m bench

chromium: ## Debian's chromium for the browser tests (apt-get, only where it is missing)
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

messages: $(BIN)/.installed ## extract the strings of the pages and of the emails and merge them into their German catalogues
	$(BIN)/python convoy_api/web/locale/update.py
	$(BIN)/python notifier/locale/update.py

emails: $(BIN)/.installed chromium ## every email kind (de, en) as HTML, text and 390/1280-px screenshots into build/emails/
	$(BIN)/python -m notifier.gallery --out build/emails

lint: $(BIN)/.installed ## ruff and strict mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean: ## remove the venv and the local data folder
	rm -rf $(VENV) .convoy-data
