# Developer and CI entry points. `scripts/setup` must have run once (it installs PostgreSQL,
# the system tools and the cargo tools used here).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# The test suite gives every test its own database; sqlx keeps its bookkeeping in this one,
# never in the production catalog.
TEST_DATABASE_URL ?= postgres://ntt:ntt@localhost:5432/ntt_test?sslmode=disable
# A scratch database for checking the committed .sqlx/ query data against the migrations.
CHECK_DATABASE_URL ?= postgres://ntt:ntt@localhost:5432/ntt_sqlx_check
ADMIN_DATABASE_URL ?= postgres://ntt:ntt@localhost:5432/postgres
CARGO_BIN := $(or $(CARGO_HOME),$(HOME)/.cargo)/bin
export PATH := $(CARGO_BIN):$(PATH)


.PHONY: crdgen setup build fmt fmt-check lint test test-unit test-db test-cluster test-root test-tiers-cover sqlx-prepare sqlx-check test-database bench bench-imaging bench-enumerate bench-copy bench-ingest bench-search bench-verify bench-archive bench-deleted

setup:
	scripts/setup

build:
	cargo build --release --locked --workspace --bins

# Regenerate the CRD YAML in the chart from crds/src; commit the result.
crdgen:
	cargo run --locked -q -p ntt-crds --bin crdgen

fmt:
	cargo fmt --all

fmt-check:
	cargo fmt --all --check

# Clippy, then the repository guards: README length, working doc links, no path outside the
# checkout in sources or tests.
lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings
	scripts/check-repo

# The test tiers (nextest filter expressions); docs/testing.md says what each proves.
# unit: no database, no root, no helm. db: PostgreSQL. cluster: the in-memory API server and
# the chart (helm). root: loop devices, mounts, FUSE, ddrescue (and PostgreSQL).
TIER_UNIT := (kind(lib) & !package(ntt-tests)) | kind(bin) | (package(ntt-controller) & binary(plan)) | (package(ntt-crds) & binary(crds)) | (package(ntt-agent) & (binary(architecture) | binary(volumes)))
TIER_DB := (package(ntt-tests) & binary(db)) | (package(ntt-agent) & binary(cli))
TIER_CLUSTER := package(ntt-tests) & (kind(lib) | binary(cluster))
TIER_ROOT := package(ntt-agent) & binary(root)
NEXTEST := DATABASE_URL=$(TEST_DATABASE_URL) cargo nextest run --workspace --locked --no-tests=fail

# The whole suite: formatting, lints, generated-file drift, every tier in one run, and a check
# that the tiers together hold every test.
test: fmt-check lint sqlx-check test-database test-tiers-cover
	$(NEXTEST)

test-unit:
	$(NEXTEST) -E '$(TIER_UNIT)'

test-db: test-database
	$(NEXTEST) -E '$(TIER_DB)'

test-cluster: test-database
	$(NEXTEST) -E '$(TIER_CLUSTER)'

test-root: test-database
	@[ "$$(id -u)" -eq 0 ] || { echo "the root tier needs root (loop devices, mounts)" >&2; exit 1; }
	$(NEXTEST) -E '$(TIER_ROOT)'

# Every test belongs to a tier: a new test binary must be added to one.
test-tiers-cover:
	@left=$$(cargo nextest list --workspace --locked --message-format oneline \
	  -E 'not ($(TIER_UNIT) | $(TIER_DB) | $(TIER_CLUSTER) | $(TIER_ROOT))'); \
	[ -z "$$left" ] || { echo "tests in no tier (add their binary to a TIER_ in the Makefile):" >&2; echo "$$left" >&2; exit 1; }

test-database:
	@psql -qAt "$(ADMIN_DATABASE_URL)" -c "select 1 from pg_database where datname = 'ntt_test'" | grep -q 1 \
	  || psql -q "$(ADMIN_DATABASE_URL)" -c "create database ntt_test"

# Regenerate .sqlx/ after changing a query or a migration; commit the result.
sqlx-prepare:
	DATABASE_URL=$(CHECK_DATABASE_URL) sqlx database reset -y --source migrations
	DATABASE_URL=$(CHECK_DATABASE_URL) cargo sqlx prepare --workspace -- --all-targets

# Fails when .sqlx/ no longer matches the queries and the migrations.
sqlx-check:
	DATABASE_URL=$(CHECK_DATABASE_URL) sqlx database reset -y --source migrations
	DATABASE_URL=$(CHECK_DATABASE_URL) cargo sqlx prepare --workspace --check -- --all-targets

# ntt image vs plain ddrescue on a 2 GiB loop device (root); prints the throughput ratio.
bench: bench-imaging bench-enumerate bench-copy bench-ingest bench-search bench-verify bench-archive bench-deleted

bench-archive: build
	bench/archive.sh

bench-deleted: build
	bench/deleted.sh

bench-verify: build
	bench/verify.sh

bench-ingest: build
	bench/ingest.sh

bench-search: build
	cargo build --release --locked --example search_bench
	bench/search.sh

bench-copy: build
	bench/copy.sh

bench-enumerate: build
	bench/enumerate.sh

bench-imaging: build
	bench/imaging.sh 2048
