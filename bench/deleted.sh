#!/usr/bin/env bash
# Benchmark: recovering deleted files. `ntt ingest` of an NTFS image whose files were written
# and half of them deleted (live and deleted entries listed, deleted content recovered with
# `icat -r`, checked against the live allocation, hashed and stored) against the same work by
# hand with The Sleuth Kit, in one run.
#
#   bench/deleted.sh [FILES] [IMAGE_SIZE]     (default 4000 files, 512M; root)
#
# The image is built once (mkntfs, files written through ntfs-3g, every second one deleted;
# cached under BENCH_DIR). Then for each round (ROUNDS=N, default 2; order alternating) the
# page cache is dropped and
#   ntt:   ntt ingest IMAGE --name NAME        (into a fresh catalog and store)
#   peers: fls -r -u -p and fls -r -d -p IMAGE; for every deleted file icat -r IMAGE ADDRESS |
#          b3sum; for every live file icat IMAGE ADDRESS | b3sum
# and the times and ntt's time over the peers' are printed.
set -euo pipefail
shopt -s inherit_errexit

files=${1:-4000}
size=${2:-512M}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ntt=${NTT_BIN:-$repo/target/release/ntt}
work=${BENCH_DIR:-/var/tmp/ntt-bench-deleted}
admin_url=${ADMIN_DATABASE_URL:-postgres://ntt:ntt@localhost:5432/postgres}
bench_db=ntt_bench_deleted

[ "$(id -u)" -eq 0 ] || { echo "run as root (FUSE, drop_caches)" >&2; exit 1; }
for tool in mkntfs ntfs-3g fls icat b3sum; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup" >&2; exit 1; }
done
[ -x "$ntt" ] || (cd "$repo" && cargo build --release --locked --bin ntt)
mkdir -p "$work"
export NTT_DATABASE_URL=postgres://ntt:ntt@localhost:5432/$bench_db?sslmode=disable
export NTT_DATA_DIR=$work/data NTT_LOCK_DIR=$work/lock NTT_MOUNT_DIR=$work/mnt NTT_STORE=$work/store
point=$work/build-mnt
driver=""
cleanup() {
  if mountpoint -q "$point" 2>/dev/null; then umount "$point" || true; fi
  [ -n "$driver" ] && wait "$driver" 2>/dev/null || true
}
trap cleanup EXIT

image=$work/ntfs-$files-$size.img
if [ ! -f "$image" ]; then
  echo "building the NTFS image ($files files, half deleted; once, cached in $work)..."
  rm -f "$image.partial"
  truncate -s "$size" "$image.partial"
  mkntfs -q -F -f "$image.partial"
  mkdir -p "$point"
  ntfs-3g -o no_detach "$image.partial" "$point" &
  driver=$!
  for _ in $(seq 200); do mountpoint -q "$point" && break; sleep 0.05; done
  mountpoint -q "$point" || { echo "ntfs-3g did not mount" >&2; exit 1; }
  /usr/bin/python3 - "$point" "$files" <<'EOF'
import os, random, sys
root, files = sys.argv[1], int(sys.argv[2])
rng = random.Random(1)
for d in range(files // 100 + 1):
    os.makedirs(f"{root}/d{d:03}", exist_ok=True)
for f in range(files):
    size = rng.choice([512, 4096, 20000, 65536, 300000])
    with open(f"{root}/d{f // 100:03}/f{f:05}.bin", "wb") as out:
        out.write(rng.randbytes(size))
os.sync()
for f in range(0, files, 2):
    os.remove(f"{root}/d{f // 100:03}/f{f:05}.bin")
EOF
  umount "$point"
  wait "$driver"
  driver=""
  mv "$image.partial" "$image"
fi
deleted=$(fls -r -d -p "$image" | grep -c '^-/r \* .*f[0-9]*\.bin$' || true)
echo "image: $(stat -c %s "$image") bytes, $files files written, $deleted deleted entries; $(nproc) cores"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
timed() { local start; start=$(date +%s.%N); "$@" > /dev/null; echo "$(date +%s.%N) - $start" | bc; }
run_ntt() {
  psql "$admin_url" -qc "drop database if exists $bench_db" -c "create database $bench_db"
  rm -rf "$NTT_STORE" "$NTT_DATA_DIR"
  "$ntt" db migrate >/dev/null
  "$ntt" init --adopt --replace >/dev/null
  "$ntt" ingest "$image" --name bench --json
}
run_peers() {
  local list
  list=$(mktemp)
  fls -r -u -p "$image" > "$list"
  fls -r -d -p "$image" >> "$list"
  # Regular files' data streams (not $FILE_NAME, not NTFS metadata): icat -r for deleted ones.
  grep -E '^(r/r|-/r) ' "$list" | grep -v '\$' | while IFS= read -r line; do
    address=$(echo "$line" | sed -E 's/^[^ ]+ (\* )?([0-9-]+):.*/\2/')
    if [[ "$line" == *" * "* ]]; then
      icat -r "$image" "$address" | b3sum --no-names
    else
      icat "$image" "$address" | b3sum --no-names
    fi
  done
  rm -f "$list"
}
declare -A best
rounds=${ROUNDS:-2}
for round in $(seq 1 "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="ntt peers"; else order="peers ntt"; fi
  for tool in $order; do
    cold
    took=$(timed "run_$tool")
    printf 'round %d %-5s %8.2f s\n' "$round" "$tool" "$took"
    if [ -z "${best[$tool]:-}" ] || (( $(echo "$took < ${best[$tool]}" | bc) )); then
      best[$tool]=$took
    fi
  done
done
report=$("$ntt" report bench --json)
recovered=$(echo "$report" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["recovered"]; print(r["copied_files"], r["files"], r["overwritten_files"])')
echo "ntt recovered (copied, deleted files, partly overwritten): $recovered"
printf 'best: ntt %.2f s, peers %.2f s; ntt time / peers time = %.2f\n' \
  "${best[ntt]}" "${best[peers]}" "$(echo "${best[ntt]} / ${best[peers]}" | bc -l)"
