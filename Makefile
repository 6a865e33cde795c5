# The two commands: `make run` and `make test`. Each sets itself up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-clock lint bench docs impact-docs screenshots clean

# uv installs what pip would (the same versions; about 40 s against pip's 2 min on a fresh
# machine); pip does it if uv cannot be had.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	( $(BIN)/pip install --quiet uv && $(BIN)/uv pip install --quiet --python $(BIN)/python -e '.[dev]' ) \
	  || $(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

HOST ?= 127.0.0.1
PORT ?= 8000

## run: set up, then serve the HTTP API on the demo ledger (built on first start) at $(HOST):$(PORT)
run: $(STAMP)
	$(BIN)/trustledger serve --demo --host $(HOST) --port $(PORT)

## test: set up, then run linters and the whole test suite (SQLite and PostgreSQL) on two workers
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/pytest -n 2 --dist loadfile; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

## test-clock: the test suite again, on two workers, with the clock moved to CLOCK (default: five years from today)
## On SQLite only: time-machine moves the clock of Python processes, not the PostgreSQL server's, and
## the code reads the clock in one place (trustledger.clock), the same on both databases. Nor the
## Spark tests: Spark runs in a JVM, whose clock time-machine does not move. Property tests draw a
## fifth of their examples (tests/clock.py: examples).
CLOCK ?= $(shell date -u -d '+5 years' +%F)
test-clock: $(STAMP)
	$(BIN)/pytest -q -n 2 --dist loadfile --system-clock $(CLOCK) -m "not postgres" --ignore tests/test_batch_spark.py; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

## bench: the quick benchmarks (the population-scale ones take flags: see docs/scale.md)
bench: $(STAMP)
	$(BIN)/python bench/evaluate.py
	$(BIN)/python -m bench.ingest
	$(BIN)/python bench/incremental.py
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/batch.py --subjects 100000 --events 2000000

## docs: regenerate the generated documentation (checked by tests/test_docs.py)
docs: $(STAMP)
	$(BIN)/typer trustledger.cli utils docs --name trustledger --output docs/cli.md

## impact-docs: regenerate docs/impact/*.md, one impact summary per example policy (checked by tests)
IMPACT_SIZE := --subjects 20000 --months 60 --seed 1
impact-docs: $(STAMP)
	for p in sesame rongcheng reputation; do \
	  $(BIN)/trustledger impact policies/$$p.yaml $(IMPACT_SIZE) --markdown docs/impact/$$p.md \
	    > /dev/null || exit 1; done

## screenshots: every portal page (sign-in, subject, reviewer queue and cases, operator, ...) at desktop and phone width, in build/screenshots/
screenshots: $(STAMP)
	TRUSTLEDGER_SCREENSHOTS=$(CURDIR)/build/screenshots $(BIN)/pytest -q tests/test_portal_browser.py
	@ls build/screenshots/*.png

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
