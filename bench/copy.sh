#!/usr/bin/env bash
# Benchmark: `ntt copy` against `cp -a`, `restic backup`, `borg create` and the read-and-hash
# limit (`b3sum` over every file), cold page cache, on the same mounted corpus, in one run.
#
#   bench/copy.sh [FILES] [IMAGE_SIZE]     (default 200000 8G; needs root and ~3x the file data
#                                           of free disk under BENCH_DIR)
#
# Uses the corpus image of bench/enumerate.sh (built if missing), mounts it with `ntt mount`,
# enumerates it once, then for each tool: drop the page cache, copy everything into a fresh
# destination on the same disk, and time it. ntt's run gets a fresh store and a fresh load
# (`enumerate --replace`), so it copies and hashes every file. Prints MB/s of file data and the
# ratio of ntt to each peer, and ntt's peak resident memory.
#
# ROUNDS=N repeats the whole set N times, each round in another order (the first as listed, the
# second reversed, ...), and reports each tool's best time: the disk of a shared machine changes
# speed by 2x within an hour, and whichever tool runs last after gigabytes were written and
# deleted pays for it, so one round in a fixed order favours the tools that run first.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) fails the bench, not a bogus time

files=${1:-200000}
image_size=${2:-8G}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-enumerate}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_copy
generator=${CORPUS_GEN:-$repo/../shared/bench/corpus-gen.py}

[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, mounts, drop_caches)" >&2; exit 1; }
for tool in restic borg b3sum; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup" >&2; exit 1; }
done
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
mkdir -p "$work"
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
export NTT_DATA_DIR=$work/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$work/out/store
out=$work/out

cleanup() { "$ntt" unmount bench-corpus >/dev/null 2>&1 || true; rm -rf "$out"; }
trap cleanup EXIT

image=$work/corpus-$files-$image_size.img
if [ ! -f "$image" ]; then
  echo "building the corpus: $files files in a $image_size ext4 image (once; cached in $work)..."
  /usr/bin/python3 "$generator" --image "$image.partial" --image-size "$image_size" --files "$files" --seed 1
  mv "$image.partial" "$image"
fi
psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
"$ntt" db migrate >/dev/null
rm -f "$NTT_DATA_DIR/.ntt-root" "$NTT_STORE/.ntt-root"  # scratch roots of an earlier bench catalog
"$ntt" init --adopt --replace >/dev/null
"$ntt" image "$image" --name bench-corpus >/dev/null
point=$("$ntt" mount bench-corpus --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["mount_point"])')
"$ntt" enumerate bench-corpus >/dev/null
data_bytes=$(psql "$NTT_DATABASE_URL" -Atc "select sum(size) from inode where kind = 'file'")
echo "corpus: $files files, $((data_bytes / 1000000)) MB of file data, mounted at $point"

# The disk under the work directory, for settle().
disk=$(lsblk -no PKNAME "$(df --output=source "$work" | tail -1)" 2>/dev/null || true)
[ -n "$disk" ] || disk=$(basename "$(df --output=source "$work" | tail -1)")
# Waits until the disk has been idle (no writes, no discards) for 3 s, at most 5 min: deleting
# the previous tool's output (gigabytes) goes on in the background and would slow whichever
# tool runs next, which made results depend on the order of the runs.
settle() {
  local before after idle=0 waited=0
  before=$(awk -v d="$disk" '$3 == d {print $8, $10, $15, $17}' /proc/diskstats)
  while [ "$idle" -lt 3 ] && [ "$waited" -lt 300 ]; do
    sleep 1; waited=$((waited + 1))
    after=$(awk -v d="$disk" '$3 == d {print $8, $10, $15, $17}' /proc/diskstats)
    if [ "$after" = "$before" ]; then idle=$((idle + 1)); else idle=0; fi
    before=$after
  done
}
cold() { sync; settle; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local start; start=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $start" | bc; }
declare -A seconds
rounds=${ROUNDS:-1}
run_tool() {
  local tool=$1 took
  rm -rf "$out"; mkdir -p "$out"
  case $tool in
    cp) cold; took=$(timed cp -a "$point/." "$out/cp/") ;;
    restic)
      export RESTIC_PASSWORD=bench
      restic init --repo "$out/restic" >/dev/null
      cold; took=$(timed restic --repo "$out/restic" backup --quiet "$point") ;;
    borg)
      borg init --encryption none "$out/borg" >/dev/null 2>&1
      cold; took=$(timed borg create "$out/borg::bench" "$point") ;;
    b3sum) cold; took=$(timed sh -c "cd '$point' && find . -type f -print0 | xargs -0 -P 2 -n 64 b3sum") ;;
    ntt)
      "$ntt" init --replace >/dev/null  # the store went with the previous round's output
      "$ntt" enumerate bench-corpus --replace >/dev/null
      cold
      local start; start=$(date +%s.%N)
      rss=$( { /usr/bin/time -f '%M' "$ntt" copy bench-corpus > /dev/null; } 2>&1 | tail -1 )
      took=$(echo "$(date +%s.%N) - $start" | bc) ;;
  esac
  echo "round $round: $tool $took s" >&2
  if [ -z "${seconds[$tool]:-}" ] || [ "$(echo "$took < ${seconds[$tool]}" | bc)" -eq 1 ]; then
    seconds[$tool]=$took
  fi
  round_seconds[$tool]=$took
}
tools=(cp restic borg b3sum ntt)
for round in $(seq "$rounds"); do
  declare -A round_seconds=()
  order=("${tools[@]}")
  if [ $((round % 2)) -eq 0 ]; then order=(ntt b3sum borg restic cp); fi
  if [ $((round % 3)) -eq 0 ]; then order=(b3sum ntt cp borg restic); fi
  for tool in "${order[@]}"; do run_tool "$tool"; done
  echo "round $round (${order[*]}): ntt/cp $(echo "${round_seconds[cp]} / ${round_seconds[ntt]}" | bc -l | cut -c1-4)x, ntt/b3sum $(echo "${round_seconds[b3sum]} / ${round_seconds[ntt]}" | bc -l | cut -c1-4)x" >&2
done
rm -rf "$out"

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "best of $rounds round(s):"
printf '%-30s %10s %10s %14s\n' "tool" "seconds" "MB/s" "ntt speed-up"
for tool in cp restic borg b3sum ntt; do
  s=${seconds[$tool]}
  printf '%-30s %10.1f %10.1f %13.2fx\n' "$tool" "$s" "$(echo "$data_bytes / 1000000 / $s" | bc -l)" \
    "$(echo "$s / ${seconds[ntt]}" | bc -l)"
done
echo "ntt copy peak resident memory: $((rss / 1024)) MiB"
echo "(speed-up > 1: ntt is faster; targets: >= 1.2 vs cp, >= 1.0 vs restic and borg, >= 0.67 vs b3sum)"
