# payguard: `make demo` and `make test` set up whatever is missing, then run.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
PAYGUARD := $(VENV)/bin/payguard
SUPABASE := node_modules/.bin/supabase
DENO := node_modules/.bin/deno
FUNCTIONS := supabase/functions
# Deno's cache (the npm packages deno.lock names) lives with the project's other local state.
export DENO_DIR := $(CURDIR)/.payguard/deno
export DENO_NO_UPDATE_CHECK := 1
# The database that the Supabase CLI's checks run against: deployed afresh by every `make test`.
CHECK_DB := payguard_check

# Targets act on the embedded cluster only: a DATABASE_URL in the caller's shell (which may
# point at a real project) must not receive demo data or test databases.
unexport DATABASE_URL
# Python keeps the bytecode of what it compiles (as it does by default): every payguard process
# and pytest worker would otherwise compile the package and rewrite the tests' asserts afresh.
unexport PYTHONDONTWRITEBYTECODE
export DO_NOT_TRACK := 1
export SUPABASE_TELEMETRY_DISABLED := 1

# `make test`'s steps (each also a target of its own), in stages: the steps joined by `+` run
# side by side (they share nothing, and the linters keep a processor busy while the database
# checks wait on the server), the stages one after another.
TEST_STAGES := lint+sqlfluff+supabase-checks+schema-check pgtap+deno pytest
# pg_prove processes, pytest workers and deno test processes at once (default: processors + 1).
JOBS ?=
# The steps as `make test` runs them: it has run `setup` once already.
SETUP ?= setup
# make soak: how many steps of the money model.
STEPS ?= 20000

.NOTPARALLEL:
.PHONY: help setup system-packages demo test bench lint sqlfluff supabase-checks schema-check \
  pgtap deno pytest test-model soak clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: system-packages $(VENV)/.installed node_modules/.installed $(DENO_DIR)/.installed ## Install what is missing

system-packages:
	@bash scripts/install-system-packages.sh

$(VENV)/.installed: pyproject.toml
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "error: payguard needs Python 3.11 or newer as python3" >&2; exit 1; }
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The npm packages that the functions' deno.lock names, fetched from the registry and checked
# against the lock (--frozen: a lock that does not match is an error, never rewritten).
$(DENO_DIR)/.installed: $(FUNCTIONS)/deno.json $(FUNCTIONS)/deno.lock node_modules/.installed
	@mkdir -p $(DENO_DIR)
	@cd $(FUNCTIONS) && $(CURDIR)/$(DENO) cache --frozen --quiet */index.ts tests/*.ts
	@touch $@

demo: setup ## Start the embedded database, deploy with seed data, show what is there
	@$(PAYGUARD) db start
	@$(PAYGUARD) deploy --seed
	@$(PAYGUARD) describe
	@$(PAYGUARD) demo
	@$(PAYGUARD) audit status --wait 90  # sealed by the scheduled sealer, with no manual step

test: setup ## Every check, stage by stage, stopping at the first failure; a header and a time for each
	@$(PAYGUARD) test --prepare  # the cluster and its template, before steps that use them at once
	@MAKE="$(MAKE)" $(PYTHON) scripts/test_steps.py $(TEST_STAGES)

lint: $(SETUP) ## ruff (lint and format) and mypy
	@$(VENV)/bin/ruff check python tests/py tests/stripe scripts
	@$(VENV)/bin/ruff format --check python tests/py tests/stripe scripts
	@$(VENV)/bin/mypy python/payguard

sqlfluff: $(SETUP) ## sqlfluff (postgres dialect) on the schema files, the migrations, the stand-in and the test helpers
	@$(PYTHON) scripts/sqlfluff_changed.py supabase/schemas supabase/migrations python/payguard/standin tests/sql/helpers

# policies check applies the generated policies in a transaction it rolls back: its locks
# deadlock with the advisors' catalog query, so it runs after the CLI's checks, alone.
supabase-checks: $(SETUP) ## On a fresh deploy: the Supabase CLI's checks (at once), then policies check and access matrix
	@$(PAYGUARD) db reset --database $(CHECK_DB) --no-seed
	@url=$$($(PAYGUARD) db url --database $(CHECK_DB)); \
	  admin=$$($(PAYGUARD) db url --admin --database $(CHECK_DB)); \
	  $(PYTHON) scripts/side_by_side.py \
	    "supabase migration list: $(SUPABASE) migration list --db-url $$url" \
	    "supabase db advisors: $(SUPABASE) db advisors --db-url $$url --type all --level warn --fail-on warn" \
	    "supabase db lint: $(SUPABASE) db lint --db-url $$url --level warning --fail-on error" \
	  && $(PYTHON) scripts/side_by_side.py \
	    "payguard policies check: $(PAYGUARD) policies check --db-url $$admin" \
	  && $(PYTHON) scripts/side_by_side.py \
	    "payguard policies matrix --check: $(PAYGUARD) policies matrix --check --db-url $$admin"

schema-check: $(SETUP) ## The schema files (supabase/schemas/) build the same database as the migrations
	@$(PAYGUARD) schema check

pgtap: $(SETUP) ## pg_prove over tests/sql, files spread over several processes
	@$(PAYGUARD) test --sql $(if $(JOBS),--jobs $(JOBS))

deno: $(SETUP) ## The Edge Functions: deno fmt --check, lint, check, and their tests (real database, local Stripe)
	@cd $(FUNCTIONS) && $(CURDIR)/$(DENO) fmt --check --quiet
	@cd $(FUNCTIONS) && $(CURDIR)/$(DENO) lint --quiet
	@cd $(FUNCTIONS) && $(CURDIR)/$(DENO) check --frozen --quiet */index.ts tests/*.ts
	@$(PYTHON) scripts/functions_test.py $(if $(JOBS),--jobs $(JOBS)) -- --no-check

pytest: $(SETUP) ## pytest over tests/py, modules spread over pytest-xdist workers
	@$(PAYGUARD) test --py $(if $(JOBS),--jobs $(JOBS))

test-model: $(SETUP) ## The money model alone (PAYGUARD_MODEL_SEED=N replays a run)
	@$(PAYGUARD) test --py --jobs 2 -k money_model

soak: $(SETUP) ## The money model for STEPS steps (make soak STEPS=20000), a new seed unless given
	@$(PAYGUARD) test --py --jobs 2 -k money_model --steps $(STEPS)

bench: setup ## Benchmarks (a script, not a test): RLS overhead as ratios to the owner's query
	@$(PAYGUARD) bench

clean: ## Stop the embedded database and delete it, wherever it lives
	@test ! -x $(PAYGUARD) || $(PAYGUARD) db destroy
	@rm -rf .payguard
