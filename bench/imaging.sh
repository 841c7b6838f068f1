#!/usr/bin/env bash
# Benchmark: `ntt image` against plain GNU ddrescue on the same source device, in one run.
#
#   bench/imaging.sh [SIZE_MIB]        (default 2048; needs root, ~3x SIZE of free disk)
#
# Builds a SIZE_MIB file of incompressible data, attaches it read-only to a loop device (a real
# block device, read with direct I/O by both tools), then alternates cold-cache runs:
#   plain:  ddrescue -d DEVICE plain.img plain.map           (what an archivist would type)
#   ntt:    ntt image DEVICE                                  (identify, passes, digest, catalog)
# and prints each throughput and the ratio ntt/plain (best of 3 runs each).
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) fails the bench, not a bogus time

size_mib=${1:-2048}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-imaging}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_url=${BENCH_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/ntt_bench?sslmode=disable}

[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, drop_caches)" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)

mkdir -p "$work"
device=""
cleanup() {
  [ -n "$device" ] && losetup -d "$device" 2>/dev/null || true
  rm -rf "$work/out"
}
trap cleanup EXIT

source_file=$work/source-${size_mib}M.bin
if [ ! -f "$source_file" ] || [ "$(stat -c %s "$source_file")" -ne $((size_mib * 1048576)) ]; then
  echo "making a ${size_mib} MiB source of incompressible data..."
  # AES-CTR keystream from openssl would be faster; /dev/urandom needs nothing extra.
  head -c $((size_mib * 1048576)) /dev/urandom > "$source_file.partial"
  mv "$source_file.partial" "$source_file"
fi
device=$(losetup --find --show --read-only "$source_file")
echo "source: $device ($size_mib MiB, backed by $source_file)"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
seconds() { date +%s.%N; }

run_plain() {
  rm -rf "$work/out"; mkdir -p "$work/out"
  cold
  local start end
  start=$(seconds)
  ddrescue -d -q "$device" "$work/out/plain.img" "$work/out/plain.map"
  sync
  end=$(seconds)
  echo "$end - $start" | bc
}

run_ntt() {
  rm -rf "$work/out"; mkdir -p "$work/out"
  psql -q "$admin_url" -c "drop database if exists ntt_bench" -c "create database ntt_bench" >/dev/null
  NTT_DATABASE_URL=$bench_url "$ntt" db migrate >/dev/null
  NTT_DATABASE_URL=$bench_url NTT_DATA_DIR=$work/out/images NTT_STORE=$work/out/store "$ntt" init >/dev/null
  cold
  local start end
  start=$(seconds)
  NTT_DATABASE_URL=$bench_url NTT_DATA_DIR=$work/out/images NTT_STORE=$work/out/store NTT_LOCK_DIR=$work/lock \
    "$ntt" image "$device" --name bench >/dev/null
  sync
  end=$(seconds)
  # The run counts only if it made the whole image.
  local made
  made=$(stat -c %s "$work"/out/images/*.img)
  [ "$made" -eq $((size_mib * 1048576)) ] || { echo "ntt image made $made bytes, not $((size_mib * 1048576))" >&2; exit 1; }
  echo "$end - $start" | bc
}

best_plain=""; best_ntt=""
for round in 1 2 3; do
  p=$(run_plain); n=$(run_ntt)
  echo "round $round: ddrescue ${p}s, ntt image ${n}s"
  if [ -z "$best_plain" ] || (( $(echo "$p < $best_plain" | bc) )); then best_plain=$p; fi
  if [ -z "$best_ntt" ] || (( $(echo "$n < $best_ntt" | bc) )); then best_ntt=$n; fi
done
psql -q "$admin_url" -c "drop database if exists ntt_bench" >/dev/null

mib_s() { echo "scale=1; $size_mib / $1" | bc; }
echo
printf '%-22s %10s %12s\n' tool seconds MiB/s
printf '%-22s %10.2f %12s\n' "ddrescue -d (plain)" "$best_plain" "$(mib_s "$best_plain")"
printf '%-22s %10.2f %12s\n' "ntt image" "$best_ntt" "$(mib_s "$best_ntt")"
printf 'ratio ntt/ddrescue throughput: %s (target >= 0.95)\n' "$(echo "scale=3; $best_plain / $best_ntt" | bc)"
