#!/usr/bin/env bash
# Benchmark `abssctl backup verify --deep` (one pass: read, sha256, decompress,
# every entry checked as restore would, and every SQLite database, blob and
# listed file of the Actual data directory checked through private copies)
# next to the plain `backup verify` (the same pass without the content checks)
# on the same archive, in the same run. See bench/README.md.
#
# Knobs (environment):
#   BENCH_QUICK=1           small run: 20 MiB and 100 MiB instances
#   BENCH_SIZES="1024"      instance sizes in MiB (space-separated)
#   BENCH_RUNS=3            measured runs per kind (best is reported), after one warm-up
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir (prefix, archives, daemon log)
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ${BENCH_QUICK:-0} != 1 ]]; then
  BENCH_SIZES=${BENCH_SIZES:-1024}
fi
BENCH_SMALL_FILES=${BENCH_SMALL_FILES:-0}
# shellcheck source=bench/lib.sh
source bench/lib.sh

start_daemon

backup_cases
declare -A DEEP_S PLAIN_S FACTS

# time_verify NAME [--deep]: wall seconds of one verify; fails unless the
# archive is available (and, deep, passed its content checks).
time_verify() {
  local t0=$EPOCHREALTIME
  if ! "$ABSSCTL" --socket "$SOCK" --json backup verify "${ID[$1]}" "${@:2}" \
    >"$WORK/verify.json" 2>"$WORK/abssctl.err"; then
    printf '\nbench: abssctl backup verify %s %s failed:\n' "${ID[$1]}" "${*:2}" >&2
    cat "$WORK/abssctl.err" "$WORK/verify.json" >&2
    return 1
  fi
  local t1=$EPOCHREALTIME
  elapsed "$t0" "$t1"
}

for name in "${CASES[@]}"; do
  printf '== %s (%s bytes of content, %s bytes of archive): warm-up' "$name" "${DATA_B[$name]}" "${ARCHIVE_B[$name]}"
  time_verify "$name" --deep >/dev/null
  time_verify "$name" >/dev/null
  best_d='' best_p=''
  for ((i = 1; i <= RUNS; i++)); do
    d=$(time_verify "$name" --deep)
    p=$(time_verify "$name")
    printf ', deep %ss / plain %ss' "$d" "$p"
    best_d=$(min "$best_d" "$d")
    best_p=$(min "$best_p" "$p")
  done
  echo
  DEEP_S[$name]=$best_d
  PLAIN_S[$name]=$best_p
  time_verify "$name" --deep >/dev/null
  FACTS[$name]=$(python3 -c 'import json, sys
d = json.load(sys.stdin)["results"][0]["deep"]
print("%d databases, %d blobs, %d listed files, ok=%s" % (d["databases"], d["blobs"], d["listed_files"], d["ok"]))' <"$WORK/verify.json")
done
PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)

# --- report --------------------------------------------------------------

rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1e6 / s }'; }

echo
echo "abssd backup verify --deep vs plain backup verify; best of $RUNS after a warm-up"
echo "machine: $(nproc) cores"
echo "MB = 10^6 bytes; archive MB/s = archive MB / s; data MB/s = content MB / s"
echo
printf '%-14s %10s %10s %8s %10s %10s %8s %10s %10s %7s\n' case "content MB" "archive MB" \
  "deep s" "arch MB/s" "data MB/s" "plain s" "arch MB/s" "data MB/s" ratio
for name in "${CASES[@]}"; do
  printf '%-14s %10s %10s %8s %10s %10s %8s %10s %10s %7s\n' "$name" \
    "$(mb "${DATA_B[$name]}")" "$(mb "${ARCHIVE_B[$name]}")" \
    "${DEEP_S[$name]}" "$(rate "${ARCHIVE_B[$name]}" "${DEEP_S[$name]}")" "$(rate "${DATA_B[$name]}" "${DEEP_S[$name]}")" \
    "${PLAIN_S[$name]}" "$(rate "${ARCHIVE_B[$name]}" "${PLAIN_S[$name]}")" "$(rate "${DATA_B[$name]}" "${PLAIN_S[$name]}")" \
    "$(awk -v a="${DEEP_S[$name]}" -v s="${PLAIN_S[$name]}" 'BEGIN { printf "%.2f", a / s }')"
done
echo
for name in "${CASES[@]}"; do
  echo "$name deep check: ${FACTS[$name]}"
done
echo "abssd peak RSS (VmHWM after all verifies): $(mib "$PEAK_KIB") MiB"
