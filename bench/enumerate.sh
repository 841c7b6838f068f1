#!/usr/bin/env bash
# Benchmark: `ntt enumerate` against `find -printf` on the same warm mount, and our loader's
# COPY rate against a plain `psql \copy` of the same rows, in one run.
#
#   bench/enumerate.sh [FILES] [IMAGE_SIZE]     (default 200000 8G; needs root)
#
# Builds the corpus of ../shared/bench/corpus-gen.py into an ext4 image (cached), registers it in
# a scratch catalog, mounts it with `ntt mount` (kernel, read-only), warms the cache with one
# `find`, then alternates 3 runs each of
#   find:  find MOUNT -xdev -printf '<inode kind mode uid gid nlink size mtime ctime atime path>\0'
#   ntt:   ntt enumerate MEDIUM --replace   (walk + binary COPY + index + swap)
# and prints the best times and the ratio ntt/find (target: within 1.5x). Then it exports the
# loaded rows in binary and times `psql \copy` of them into fresh tables, against our loader on
# the same rows (examples/loader.rs: the same walk done first, untimed, then the load's encoding
# and COPY timed; target: at least 0.8x psql's rate), and against the COPY time ntt reported
# during the runs above, where the COPY shares the CPU with the walk.
set -euo pipefail
shopt -s inherit_errexit  # a failing step inside $(...) fails the bench, not a bogus time

files=${1:-200000}
image_size=${2:-8G}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
loader=${NTT_LOADER_BIN:-$(dirname "$ntt")/examples/loader}
work=${BENCH_DIR:-/var/tmp/ntt-bench-enumerate}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_enumerate
bench_url=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
generator=${CORPUS_GEN:-$repo/../shared/bench/corpus-gen.py}

[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, mounts)" >&2; exit 1; }
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
[ -x "$loader" ] || (cd "$repo" && cargo build --release --locked --example loader)
mkdir -p "$work"
export NTT_DATABASE_URL=$bench_url NTT_DATA_DIR=$work/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$work/store

cleanup() { "$ntt" unmount bench-corpus >/dev/null 2>&1 || true; }
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
mount_json=$("$ntt" mount bench-corpus --json)
point=$(printf '%s' "$mount_json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["mount_point"])')
echo "corpus: $files files, mounted at $point"

fmt='%i %y %m %U %G %n %s %T@ %C@ %A@ %P\0'
find "$point" -xdev -printf "$fmt" > /dev/null   # warm the cache for both

best() { sort -n | head -1; }
find_times=() ntt_times=() report=""
for run in 1 2 3; do
  start=$(date +%s.%N)
  find "$point" -xdev -printf "$fmt" > /dev/null
  find_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
  replace=--replace; [ "$run" -eq 1 ] && replace=""
  start=$(date +%s.%N)
  report=$("$ntt" enumerate bench-corpus $replace --json)
  ntt_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
done
find_best=$(printf '%s\n' "${find_times[@]}" | best)
ntt_best=$(printf '%s\n' "${ntt_times[@]}" | best)
entries=$(printf '%s' "$report" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["entries"])')
inodes=$(printf '%s' "$report" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["inodes"])')
copy_seconds=$(printf '%s' "$report" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["counts"]["copy_seconds"])')

# The same rows through psql's \copy, into fresh unindexed tables (what our loader COPYs into).
id=$(psql "$bench_url" -Atc "select id from medium where name = 'bench-corpus'")
psql "$bench_url" -q \
  -c "\\copy (select medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, rdev, mtime_ns, ctime_ns, atime_ns, birth_ns, target, state from inode where medium_id = $id) to '$work/inode.bin' with (format binary)" \
  -c "\\copy (select medium_id, volume_no, path, ino, excluded_reason, name_id from path where medium_id = $id) to '$work/path.bin' with (format binary)"
psql_times=()
for run in 1 2 3; do
  psql "$bench_url" -q -c "drop table if exists bench_inode, bench_path" \
    -c "create table bench_inode (like inode including defaults)" \
    -c "create table bench_path (like path including defaults)"
  start=$(date +%s.%N)
  psql "$bench_url" -q \
    -c "\\copy bench_inode (medium_id, volume_no, ino, kind, mode, uid, gid, nlink, size, rdev, mtime_ns, ctime_ns, atime_ns, birth_ns, target, state) from '$work/inode.bin' with (format binary)" \
    -c "\\copy bench_path (medium_id, volume_no, path, ino, excluded_reason, name_id) from '$work/path.bin' with (format binary)"
  psql_times+=("$(echo "$(date +%s.%N) - $start" | bc)")
done
psql "$bench_url" -q -c "drop table if exists bench_inode, bench_path"
psql_best=$(printf '%s\n' "${psql_times[@]}" | best)
rows=$((entries + inodes))

# Our loader alone on the same rows (examples/loader.rs: the walk is done first, untimed, so the
# COPY has the machine to itself, like psql's): encoding and binary COPY, without index builds.
loader_times=()
for run in 1 2 3; do
  loader_times+=("$("$loader" "$id" bench-corpus "$point" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["load_seconds"])')")
done
loader_best=$(printf '%s\n' "${loader_times[@]}" | best)

echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
printf '%-34s %10s %12s\n' "what" "seconds" "per second"
printf '%-34s %10.2f %12.0f\n' "find -printf (warm)" "$find_best" "$(echo "$entries / $find_best" | bc -l)"
printf '%-34s %10.2f %12.0f\n' "ntt enumerate (walk+load+publish)" "$ntt_best" "$(echo "$entries / $ntt_best" | bc -l)"
printf '%-34s %10.2f %12.0f\n' "psql \\copy of the same rows" "$psql_best" "$(echo "$rows / $psql_best" | bc -l)"
printf '%-34s %10.2f %12.0f\n' "ntt COPY of those rows (in the run)" "$copy_seconds" "$(echo "$rows / $copy_seconds" | bc -l)"
printf '%-34s %10.2f %12.0f\n' "ntt loader alone, same rows" "$loader_best" "$(echo "$rows / $loader_best" | bc -l)"
echo
printf 'enumerate+load / find:      %.2fx  (target <= 1.5)\n' "$(echo "$ntt_best / $find_best" | bc -l)"
printf 'loader alone / psql \\copy:  %.2fx  (target >= 0.8)\n' "$(echo "$psql_best / $loader_best" | bc -l)"
printf 'loader in the run / psql:   %.2fx  (sharing 2 cores with the walk)\n' "$(echo "$psql_best / $copy_seconds" | bc -l)"
