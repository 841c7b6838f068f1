#!/usr/bin/env bash
# Benchmark: `ntt archive` (zstd frames, read back and compared before the raw image goes)
# against `zstd -T0` of the same raw image, in one run; and the ratio on the raw fixtures.
#
#   bench/archive.sh [FILES] [IMAGE_SIZE]     (default 20000 files, 2G; root)
#
# Builds the shared corpus image once (../shared/bench/corpus-gen.py, cached under BENCH_DIR),
# images it from a read-only loop device into a fresh catalog (so the raw image is NTT's), then
# for each round (ROUNDS=N, default 2; order alternating) drops the page cache and times
#   ntt:   ntt archive MEDIUM --to OUT --keep-raw   (compress, write, sync, read back, compare)
#   zstd:  zstd -T0 -3 RAW -o OUT/peer.zst && zstd -t OUT/peer.zst   (compress, then test)
# and prints sizes, ratios, MB/s and ntt's speed over zstd's. Then archives each raw fixture of
# tests/fixtures/third-party the same way and prints its ratio.
set -euo pipefail
shopt -s inherit_errexit

files=${1:-20000}
size=${2:-2G}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-archive}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_archive
generator=${CORPUS_GEN:-$repo/../shared/bench/corpus-gen.py}

[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, drop_caches)" >&2; exit 1; }
command -v zstd >/dev/null || { echo "zstd is missing: run scripts/setup" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
mkdir -p "$work"
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
export NTT_DATA_DIR=$work/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$work/store
devices=()
cleanup() { for d in "${devices[@]}"; do losetup -d "$d" 2>/dev/null || true; done; }
trap cleanup EXIT

corpus=$work/corpus-$files-$size.img
if [ ! -f "$corpus" ]; then
  echo "building the corpus image ($files files, $size; once, cached in $work)..."
  /usr/bin/python3 "$generator" --image "$corpus.partial" --image-size "$size" --files "$files" --seed 1 >/dev/null
  mv "$corpus.partial" "$corpus"
fi
psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
"$ntt" db migrate >/dev/null
rm -rf "$NTT_STORE" "$NTT_DATA_DIR" "$work/out"
mkdir -p "$work/out"
"$ntt" init --adopt --replace >/dev/null

# Image a file through a read-only loop device: the raw image is then NTT's.
image_of() {
  local device
  device=$(losetup --find --show --read-only "$1")
  devices+=("$device")
  "$ntt" image "$device" --name "$2" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["image_path"])'
  losetup -d "$device"
}
raw=$(image_of "$corpus" corpus)
raw_bytes=$(stat -c %s "$raw")
echo "corpus image: $raw_bytes bytes; $(nproc) cores"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local start; start=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $start" | bc; }
forget() {
  rm -f "$work/out/"*
  psql "$NTT_DATABASE_URL" -qc "update medium set archive_path = null, archive_bytes = null, archived_at = null"
}
run_ntt() { forget; "$ntt" archive corpus --to "$work/out" --keep-raw; }
run_zstd() { rm -f "$work/out/peer.zst"; zstd -q -T0 -3 "$raw" -o "$work/out/peer.zst" && sync && zstd -q -t "$work/out/peer.zst"; }
declare -A best size_of
rounds=${ROUNDS:-2}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="ntt zstd"; else order="zstd ntt"; fi
  for tool in $order; do
    cold
    took=$(timed "run_$tool")
    if [ "$tool" = ntt ]; then
      size_of[ntt]=$(stat -c %s "$work/out/"*.img.zst)
    else
      size_of[zstd]=$(stat -c %s "$work/out/peer.zst")
    fi
    printf 'round %d %-5s %8.2f s\n' "$round" "$tool" "$took"
    if [ -z "${best[$tool]:-}" ] || [ "$(echo "$took < ${best[$tool]}" | bc)" = 1 ]; then
      best[$tool]=$took
    fi
  done
done
echo
printf '%-44s %8s %12s %7s %8s\n' tool seconds bytes ratio MB/s
for tool in ntt zstd; do
  label=$([ "$tool" = ntt ] && echo "ntt archive (write, sync, read back)" || echo "zstd -T0 -3, then zstd -t")
  printf '%-44s %8.2f %12d %7.2f %8.0f\n' "$label" "${best[$tool]}" "${size_of[$tool]}" \
    "$(echo "$raw_bytes / ${size_of[$tool]}" | bc -l)" "$(echo "$raw_bytes / ${best[$tool]} / 1000000" | bc -l)"
done
printf 'ntt speed / zstd speed: %.2f\n' "$(echo "${best[zstd]} / ${best[ntt]}" | bc -l)"

echo
printf '%-24s %10s %10s %7s\n' fixture bytes archived ratio
for fixture in "$repo"/tests/fixtures/third-party/*.raw "$repo"/tests/fixtures/third-party/*.dd; do
  name=$(basename "$fixture")
  medium="fixture-${name//[^A-Za-z0-9]/-}"
  image_of "$fixture" "$medium" >/dev/null
  out=$("$ntt" archive "$medium" --to "$work/out" --json)
  /usr/bin/python3 - "$name" "$out" <<'PY'
import json, sys
name, report = sys.argv[1], json.loads(sys.argv[2])
print(f"{name:<24} {report['image_bytes']:>10} {report['archive_bytes']:>10} {report['ratio']:>7.2f}")
PY
done
