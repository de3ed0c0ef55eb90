#!/usr/bin/env bash
# Benchmark `abssctl backup create` (abssd, zstd level 3) against the shell
# two-pass `tar --zstd -cf` + `sha256sum` on the same data, in the same run.
# See bench/README.md for what it measures and the targets.
#
# Knobs (environment):
#   BENCH_QUICK=1           small run: 20 MiB, 100 MiB, 5000 small files
#   BENCH_SIZES="200 1024"  instance sizes in MiB (space-separated)
#   BENCH_SMALL_FILES=50000 number of 1-8 KB files in the small-files case (0: skip)
#   BENCH_RUNS=3            measured runs per tool (best is reported), after one warm-up
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir (prefix, archives, daemon log)
#   BENCH_STRICT=1          exit 1 when a target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=bench/lib.sh
source bench/lib.sh
# The case whose peak RSS is reported: the largest sized instance.
PEAK_CASE=''
largest=-1
for size in $SIZES; do
  if ((size > largest)); then largest=$size PEAK_CASE="bench-${size}m"; fi
done

# --- daemon --------------------------------------------------------------


start_daemon
sleep 1 # let start-up settle; no request has been made yet
IDLE_KIB=$(proc_kib "$DAEMON_PID" VmRSS)

# --- measure -------------------------------------------------------------


# Each prints its wall seconds; the abssd run leaves its JSON in $WORK/create.json
# and its stderr (notes such as lock waits, or the error) in $WORK/abssctl.err.
time_abssd() {
  local t0=$EPOCHREALTIME
  if ! "$ABSSCTL" --socket "$SOCK" --json backup create "$1" --compression zstd \
    >"$WORK/create.json" 2>"$WORK/abssctl.err"; then
    printf '\nbench: abssctl backup create %s failed:\n' "$1" >&2
    cat "$WORK/abssctl.err" >&2
    return 1
  fi
  elapsed "$t0" "$EPOCHREALTIME"
}
time_shell() {
  rm -f "$WORK/out.tar.zst"
  local t0=$EPOCHREALTIME
  tar --zstd -cf "$WORK/out.tar.zst" -C "$PREFIX/srv" "$1" || return 1
  sha256sum "$WORK/out.tar.zst" >/dev/null || return 1
  elapsed "$t0" "$EPOCHREALTIME"
}

declare -A DATA_B ABSSD_S SHELL_S ARCHIVE_B TAR_B
PEAK_KIB=''
for name in "${CASES[@]}"; do
  DATA_B[$name]=$(find "$PREFIX/srv/$name" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  printf '== %s (%s bytes): warm-up' "$name" "${DATA_B[$name]}"
  measure "$name"
  ABSSD_S[$name]=$BEST_A
  SHELL_S[$name]=$BEST_S
  ARCHIVE_B[$name]=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["size_bytes"])' <"$WORK/create.json")
  TAR_B[$name]=$(stat -c %s "$WORK/out.tar.zst")
  if [[ $name == "$PEAK_CASE" ]]; then PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM); fi
done
END_PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)
[[ -n $PEAK_KIB ]] || PEAK_KIB=$END_PEAK_KIB

# --- report --------------------------------------------------------------

echo
echo "abssd backup create (zstd level 3) vs tar --zstd -cf + sha256sum; best of $RUNS after a warm-up"
echo "machine: $(nproc) cores; $(tar --version | head -n 1); $(zstd --version | sed 's/^\*\*\* //; s/, by .*//')"
echo "MB = 10^6 bytes; data = sum of file sizes in the instance root; ratio = abssd s / shell s"
echo
printf '%-20s %9s %8s %11s %8s %7s %11s %8s\n' case "data MB" "abssd s" "abssd MB/s" "shell s" ratio "archive MB" "tar MB"
for name in "${CASES[@]}"; do
  printf '%-20s %9s %8s %11s %8s %7s %11s %8s\n' "$name" "$(mb "${DATA_B[$name]}")" \
    "${ABSSD_S[$name]}" \
    "$(awk -v b="${DATA_B[$name]}" -v s="${ABSSD_S[$name]}" 'BEGIN { printf "%.1f", b / 1e6 / s }')" \
    "${SHELL_S[$name]}" \
    "$(awk -v a="${ABSSD_S[$name]}" -v s="${SHELL_S[$name]}" 'BEGIN { printf "%.2f", a / s }')" \
    "$(mb "${ARCHIVE_B[$name]}")" "$(mb "${TAR_B[$name]}")"
done
echo
echo "abssd idle RSS (VmRSS after start, before any request): $(mib "$IDLE_KIB") MiB"
echo "abssd peak RSS (VmHWM after the ${PEAK_CASE:-last} creates): $(mib "$PEAK_KIB") MiB (at the end: $(mib "$END_PEAK_KIB") MiB)"

# Targets from the issue (meant for the full-size run on a 2-core machine).
echo
echo "targets:"
if [[ -n $PEAK_CASE ]]; then
  rate=$(awk -v b="${DATA_B[$PEAK_CASE]}" -v s="${ABSSD_S[$PEAK_CASE]}" 'BEGIN { print b / 1e6 / s }')
  ratio=$(awk -v a="${ABSSD_S[$PEAK_CASE]}" -v s="${SHELL_S[$PEAK_CASE]}" 'BEGIN { print a / s }')
  check "$PEAK_CASE: >= 450 MB/s (measured $(printf '%.0f' "$rate"))" "$rate >= 450"
  check "$PEAK_CASE: <= 0.6x the shell two-pass (measured $(printf '%.2f' "$ratio"))" "$ratio <= 0.6"
fi
if ((SMALL_FILES > 0)); then
  name="bench-${SMALL_FILES}files"
  ratio=$(awk -v a="${ABSSD_S[$name]}" -v s="${SHELL_S[$name]}" 'BEGIN { print a / s }')
  check "$name: no slower than the shell two-pass (measured $(printf '%.2f' "$ratio")x)" "$ratio <= 1.0"
fi
check "peak RSS < 64 MiB (measured $(mib "$PEAK_KIB"))" "$PEAK_KIB < 65536"
check "idle RSS < 16 MiB (measured $(mib "$IDLE_KIB"))" "$IDLE_KIB < 16384"

strict_exit
