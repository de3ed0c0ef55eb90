#!/usr/bin/env bash
# Benchmark `abssctl backup restore --dest` (abssd: one pass that reads, hashes,
# decompresses and unpacks, then makes the tree durable) against the shell
# `sha256sum -c` + `tar --zstd -xf` + `sync -f` on the same archive, in the same run.
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

BENCH_TOOLS=sync
# shellcheck source=bench/lib.sh
source bench/lib.sh

# --- daemon --------------------------------------------------------------


start_daemon

backup_cases

# --- measure -------------------------------------------------------------


RESTORES=$PREFIX/srv/restores
mkdir -p "$RESTORES"
# Each prints its wall seconds and removes what it unpacked afterwards (untimed).
time_abssd() {
  local dest=$RESTORES/abssd-$1
  local t0=$EPOCHREALTIME
  if ! "$ABSSCTL" --socket "$SOCK" --json backup restore "${ID[$1]}" --dest "$dest" \
    >"$WORK/restore.json" 2>"$WORK/abssctl.err"; then
    printf '\nbench: abssctl backup restore %s failed:\n' "${ID[$1]}" >&2
    cat "$WORK/abssctl.err" >&2
    return 1
  fi
  local t1=$EPOCHREALTIME
  rm -rf -- "$dest"
  elapsed "$t0" "$t1"
}
time_shell() {
  local dest=$RESTORES/shell-$1 archive=${ARCHIVE[$1]}
  local t0=$EPOCHREALTIME
  (cd "$(dirname "$archive")" && sha256sum --quiet -c "$(basename "$archive").sha256") || return 1
  mkdir "$dest"
  tar --zstd -xf "$archive" -C "$dest" || return 1
  sync -f "$dest"
  local t1=$EPOCHREALTIME
  rm -rf -- "$dest"
  elapsed "$t0" "$t1"
}

declare -A ABSSD_S SHELL_S
for name in "${CASES[@]}"; do
  printf '== %s (%s bytes of content, %s bytes of archive): warm-up' "$name" "${DATA_B[$name]}" "${ARCHIVE_B[$name]}"
  measure "$name"
  ABSSD_S[$name]=$BEST_A
  SHELL_S[$name]=$BEST_S
done
PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)

# --- report --------------------------------------------------------------

echo
echo "abssd backup restore --dest vs sha256sum -c + tar --zstd -xf + sync -f; best of $RUNS after a warm-up"
echo "machine: $(nproc) cores; $(tar --version | head -n 1); $(zstd --version | sed 's/^\*\*\* //; s/, by .*//')"
echo "MB = 10^6 bytes; MB/s = content MB / abssd s; ratio = abssd s / shell s"
echo
printf '%-20s %11s %11s %8s %11s %8s %7s\n' case "content MB" "archive MB" "abssd s" "abssd MB/s" "shell s" ratio
for name in "${CASES[@]}"; do
  printf '%-20s %11s %11s %8s %11s %8s %7s\n' "$name" "$(mb "${DATA_B[$name]}")" "$(mb "${ARCHIVE_B[$name]}")" \
    "${ABSSD_S[$name]}" \
    "$(awk -v b="${DATA_B[$name]}" -v s="${ABSSD_S[$name]}" 'BEGIN { printf "%.1f", b / 1e6 / s }')" \
    "${SHELL_S[$name]}" \
    "$(awk -v a="${ABSSD_S[$name]}" -v s="${SHELL_S[$name]}" 'BEGIN { printf "%.2f", a / s }')"
done
echo
echo "abssd peak RSS (VmHWM after all restores): $(mib "$PEAK_KIB") MiB"

echo
echo "targets (fsync of the unpacked tree included on both sides):"
for size in $SIZES; do
  name="bench-${size}m"
  ratio=$(awk -v a="${ABSSD_S[$name]}" -v s="${SHELL_S[$name]}" 'BEGIN { print a / s }')
  if ((size >= 1000)); then
    check "$name: <= 0.7x the shell (measured $(printf '%.2f' "$ratio"))" "$ratio <= 0.7"
  elif ((size >= 200)); then
    check "$name: <= 0.9x the shell (measured $(printf '%.2f' "$ratio"))" "$ratio <= 0.9"
  fi
done

strict_exit
