# Enlace: `make demo` runs the exchange, `make test` runs every check. Both install what they
# need (venv, Python packages, Kafka jars from Maven Central) on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install kafka-jars tools lint typecheck schemas-check test unit faults demo bench bench-history clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is required (found: $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/python -c 'from deploy.localkafka import fetch_jars; fetch_jars()'

# promtool (deploy/ checks) and kcat (an independent Kafka client) are used by the tests.
TOOLS_APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus kcat
tools:
	@command -v promtool >/dev/null && command -v kcat >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing promtool and kcat (Debian packages prometheus, kcat)"; \
			$(TOOLS_APT) >/dev/null 2>&1 || { apt-get update -q >/dev/null && $(TOOLS_APT) >/dev/null; }; \
		else \
			echo "the tests need promtool and kcat: sudo apt-get install prometheus kcat"; exit 1; \
		fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy .

schemas-check: $(STAMP)
	$(BIN)/enlace schemas check

unit: $(STAMP)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

# --durations: the slowest tests in every CI log, to keep `make test` within its 25 minutes.
test: $(STAMP) kafka-jars tools lint typecheck schemas-check
	$(BIN)/pytest --durations=25 $(PYTEST_ARGS)

# The fault suite (tests/faults/) at full size (e.g. 20,000 bulletins and 50 router kills);
# `make test` runs it at CI size, FAULTS_SIZE=ci here does too. The Markdown report the
# README's reliability table is taken from goes to FAULTS_REPORT.
FAULTS_SIZE ?= full
FAULTS_REPORT ?= .enlace/faults-report.md
faults: $(STAMP) kafka-jars tools
	mkdir -p $(dir $(FAULTS_REPORT))
	ENLACE_FAULTS_FULL=$(if $(filter full,$(FAULTS_SIZE)),1,0) ENLACE_FAULTS_REPORT=$(abspath $(FAULTS_REPORT)) \
		$(BIN)/pytest tests/faults -m faults -s $(PYTEST_ARGS)
	@echo "fault report: $(FAULTS_REPORT)"

demo: $(STAMP) kafka-jars
	$(BIN)/enlace demo --seconds 60

bench: $(STAMP) kafka-jars
	$(BIN)/python -m bench

# Router start-up against a large trust history (issue 14); HISTORY_SIZES=100000 for a short run.
HISTORY_SIZES ?= 100000,1000000
bench-history: $(STAMP) kafka-jars
	$(BIN)/python -m bench --history --history-sizes $(HISTORY_SIZES) --private-kafka

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
