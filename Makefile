# revledger: every target bootstraps what it needs (venv, packages, Kafka jars).
# The pip cache (~/.cache/pip) and the Kafka jar cache (~/.cache/revledger) are reused
# between runs on one machine; nothing depends on them being there.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: help install fetch up down status demo test test-unit test-integration lint format bench soak fuzz chaos chaos-short clean

help:
	@echo "make demo   - start Kafka + PostgreSQL, run the workers on a simulated company, print results"
	@echo "make test   - set up everything and run the whole test suite (what CI runs)"
	@echo "make up / make down / make status - the dev stack"
	@echo "make lint / make format / make bench / make soak / make fuzz"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

fetch: install
	$(BIN)/revledger dev fetch
	bash deploy/prometheus/install-promtool.sh || test "$$CI" != true
	bash deploy/browser/install-chromium.sh || test "$$CI" != true

up: fetch
	$(BIN)/revledger dev up

down: install
	$(BIN)/revledger dev down

status: install
	$(BIN)/revledger dev status

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: fetch lint
	$(BIN)/python -m pytest -q -p no:cacheprovider

test-unit: install
	$(BIN)/python -m pytest -q tests/unit tests/property tests/contract

test-integration: fetch
	$(BIN)/python -m pytest -q tests/integration tests/e2e

demo: fetch
	$(BIN)/revledger demo $(DEMO_ARGS)

chaos-short: fetch
	REVLEDGER_CHAOS_PROFILE=short $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/chaos

chaos: fetch
	REVLEDGER_CHAOS_PROFILE=full $(BIN)/python -m pytest -q -s -p no:cacheprovider tests/chaos

bench: fetch
	$(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# 30 minutes at 120 events/s by default (docs/SOAK.md); e.g. SOAK_ARGS="--rate 60 --minutes 10"
soak: fetch
	nice -n 5 $(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# The Avro decoder and the Stripe translator, FUZZ_MINUTES each (default 10)
FUZZ_MINUTES ?= 10
fuzz: install
	$(BIN)/python tests/fuzz/fuzz_decoder.py --minutes $(FUZZ_MINUTES)
	$(BIN)/python tests/fuzz/fuzz_stripe.py --minutes $(FUZZ_MINUTES) --seed 8

clean:
	-$(BIN)/revledger dev down
	rm -rf $(VENV) .devstack build *.egg-info
