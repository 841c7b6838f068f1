#!/usr/bin/env bash
# Benchmark: `ntt ingest DEVICE` end to end against the same work done by hand with the peer
# tools one after another, cold page cache, in one run.
#
#   bench/ingest.sh [FILES] [IMAGE_SIZE]      (default 200000 8G; needs root and ~4x IMAGE_SIZE
#                                              of free disk under BENCH_DIR)
#
# The corpus image of bench/enumerate.sh (built if missing) is attached read-only to a loop
# device, the "drive". Then:
#   peers: ddrescue -d DEVICE img map; mount img read-only; find -printf; cp -a; b3sum every file
#   ntt:   ntt ingest DEVICE   (identify, ddrescue passes, volumes, enumerate+load, copy+hash+dedup,
#                               verify a sample, report)
# and prints both times and the ratio.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) fails the bench, not a bogus time

files=${1:-200000}
image_size=${2:-8G}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-enumerate}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_ingest
generator=${CORPUS_GEN:-$repo/../shared/bench/corpus-gen.py}

[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, mounts, drop_caches)" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
mkdir -p "$work"
out=$work/e2e
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
export NTT_DATA_DIR=$out/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$out/store

device="" peer_mount=$out/peer-mnt
cleanup() {
  umount "$peer_mount" 2>/dev/null || true
  [ -n "$device" ] && losetup -d "$device" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

image=$work/corpus-$files-$image_size.img
if [ ! -f "$image" ]; then
  echo "building the corpus: $files files in a $image_size ext4 image (once; cached in $work)..."
  /usr/bin/python3 "$generator" --image "$image.partial" --image-size "$image_size" --files "$files" --seed 1
  mv "$image.partial" "$image"
fi
device=$(losetup --find --show --read-only "$image")
echo "drive: $device ($image_size, $files files)"
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }

rm -rf "$out"; mkdir -p "$out/peers" "$peer_mount"
cold
start=$(date +%s.%N)
ddrescue -d -q "$device" "$out/peers/img" "$out/peers/map"
mount -o ro,noload,loop "$out/peers/img" "$peer_mount"
find "$peer_mount" -xdev -printf '%i %y %m %U %G %n %s %T@ %C@ %A@ %P\0' > "$out/peers/listing"
cp -a "$peer_mount/." "$out/peers/copy/"
(cd "$peer_mount" && find . -type f -print0 | xargs -0 -P 2 -n 64 b3sum > "$out/peers/sums")
peers=$(echo "$(date +%s.%N) - $start" | bc)
umount "$peer_mount"
rm -rf "$out/peers"

psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
"$ntt" db migrate >/dev/null
rm -f "$NTT_DATA_DIR/.ntt-root" "$NTT_STORE/.ntt-root"  # scratch roots of an earlier bench catalog
"$ntt" init --adopt --replace >/dev/null
cold
start=$(date +%s.%N)
"$ntt" ingest "$device" --name bench-drive > "$out/report.txt"
ours=$(echo "$(date +%s.%N) - $start" | bc)
cat "$out/report.txt"

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
printf '%-62s %8.1f s\n' "ddrescue + mount + find + cp -a + b3sum, one after another" "$peers"
printf '%-62s %8.1f s\n' "ntt ingest (image, volumes, enumerate, copy+dedup, verify sample)" "$ours"
printf 'ntt / peers: %.2fx\n' "$(echo "$ours / $peers" | bc -l)"
