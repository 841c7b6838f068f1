#!/usr/bin/env bash
# Benchmark: `ntt verify --all` (re-hash every blob of the store, record each outcome) against
# parallel `b3sum` over the same blob files (`xargs -P CORES`), cold page cache, in one run.
#
#   bench/verify.sh [FILES] [MAX_KIB]     (default 4000 files of 1..2048 KiB, about 4 GB; root)
#
# Builds a directory of random files once (cached under BENCH_DIR), ingests it into a fresh
# catalog and store, then for each round: drop the page cache, time one tool; drop it again,
# time the other (the order alternates between rounds; ROUNDS=N, default 2), and prints each
# tool's best time, MB/s and the ratio of ntt's throughput to b3sum's.
set -euo pipefail
shopt -s inherit_errexit

files=${1:-4000}
max_kib=${2:-2048}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-verify}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_verify
cores=$(nproc)

[ "$(id -u)" -eq 0 ] || { echo "run as root (drop_caches)" >&2; exit 1; }
command -v b3sum >/dev/null || { echo "b3sum is missing: run scripts/setup" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
mkdir -p "$work"
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
export NTT_DATA_DIR=$work/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$work/store

corpus=$work/corpus-$files-$max_kib
if [ ! -d "$corpus" ]; then
  echo "building the corpus: $files random files of 1..$max_kib KiB (once; cached in $work)..."
  rm -rf "$corpus.partial"
  mkdir -p "$corpus.partial"
  /usr/bin/python3 - "$corpus.partial" "$files" "$max_kib" <<'EOF'
import os, random, sys
root, files, max_kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
for i in range(files):
    sub = os.path.join(root, f"d{i % 64:02}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i:06}"), "wb") as f:
        f.write(os.urandom(rng.randint(1, max_kib) * 1024))
EOF
  mv "$corpus.partial" "$corpus"
fi
psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
"$ntt" db migrate >/dev/null
rm -rf "$NTT_STORE" "$NTT_DATA_DIR"
"$ntt" init --adopt --replace >/dev/null
"$ntt" ingest "$corpus" --name bench-verify >/dev/null
blobs=$(psql "$NTT_DATABASE_URL" -Atc "select count(*) from blob")
bytes=$(psql "$NTT_DATABASE_URL" -Atc "select sum(size) from blob")
echo "store: $blobs blobs, $((bytes / 1000000)) MB; $cores cores"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local start; start=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $start" | bc; }
run_ntt() { "$ntt" verify --all --jobs "$cores"; }
run_b3sum() {
  find "$NTT_STORE" -mindepth 3 -maxdepth 3 -type f -regextype egrep -regex '.*/[0-9a-f]{64}' -print0 \
    | xargs -0 -P "$cores" -n 64 b3sum --no-names
}
declare -A best
rounds=${ROUNDS:-2}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="ntt b3sum"; else order="b3sum ntt"; fi
  for tool in $order; do
    cold
    took=$(timed "run_$tool")
    printf 'round %d %-6s %8.2f s\n' "$round" "$tool" "$took"
    if [ -z "${best[$tool]:-}" ] || [ "$(echo "$took < ${best[$tool]}" | bc)" = 1 ]; then
      best[$tool]=$took
    fi
  done
done
checked=$(psql "$NTT_DATABASE_URL" -Atc "select count(*) from blob where verify_outcome = 'ok'")
[ "$checked" = "$blobs" ] || { echo "ntt verified $checked of $blobs blobs as ok" >&2; exit 1; }
echo
printf '%-28s %8s %10s\n' tool seconds MB/s
for tool in ntt b3sum; do
  printf '%-28s %8.2f %10.0f\n' "$tool" "${best[$tool]}" "$(echo "$bytes / 1000000 / ${best[$tool]}" | bc -l)"
done
printf 'ntt verify / parallel b3sum throughput: %.2fx (target >= 0.8x)\n' \
  "$(echo "${best[b3sum]} / ${best[ntt]}" | bc -l)"
