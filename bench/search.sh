#!/usr/bin/env bash
# Benchmark: `ntt find --name` (substring and glob) and `ntt where` on a synthetic catalog,
# beside `plocate -b` on the same paths, in one run.
#
#   bench/search.sh [PATHS] [MEDIA] [QUERIES]     (default 10000000 100 200)
#
# Builds the catalog once per size (cached in the database ntt_bench_search_PATHS_MEDIA and
# $work): every medium through the loader and the name indexer, as enumeration and copying do
# (examples/search_bench.rs), and the same paths as an mlocate database for plocate-build.
# Then runs QUERIES name-substring, QUERIES glob and QUERIES `where` queries, one process each
# (as a user types them), and prints p50/p99 per tool and the ratio. It fails if ntt and
# plocate print a different number of paths for any query.
set -euo pipefail
shopt -s inherit_errexit

paths=${1:-10000000}
media=${2:-100}
queries=${3:-200}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
bench=${NTT_SEARCH_BENCH_BIN:-$(dirname "$ntt")/examples/search_bench}
work=${BENCH_DIR:-/var/tmp/ntt-bench-search}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_search_${paths}_${media}
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable

command -v plocate >/dev/null && command -v plocate-build >/dev/null \
  || { echo "plocate is not installed (scripts/setup installs it)" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
[ -x "$bench" ] || (cd "$repo" && cargo build --release --locked --example search_bench)
mkdir -p "$work"
mlocate=$work/$bench_db.mlocate
plocate_db=$work/$bench_db.plocate

built=$(psql "$NTT_DATABASE_URL" -Atc "select 1 from bench_built" 2>/dev/null || true)
if [ "$built" != 1 ] || [ ! -f "$plocate_db" ]; then
  echo "building the catalog: $paths paths over $media media (once; cached in $bench_db)..."
  psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
  "$ntt" db migrate >/dev/null
  "$bench" build "$paths" "$media" "$mlocate"
  start=$(date +%s.%N)
  plocate-build --require-visibility no "$mlocate" "$plocate_db"
  printf 'plocate-build: %.1f s\n' "$(echo "$(date +%s.%N) - $start" | bc)"
  rm -f "$mlocate"
  psql "$NTT_DATABASE_URL" -qc "create table bench_built (done int)" -c "insert into bench_built values (1)"
fi

# A catalog cached by an older build: bring its schema up to this build's.
"$ntt" db migrate >/dev/null

# Warm both: the first query of each reads its index from disk.
"$ntt" find --name '*kalo*' --count >/dev/null || true
plocate -d "$plocate_db" -b -c kalo >/dev/null || true

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
"$bench" run "$ntt" "$plocate_db" "$queries"
