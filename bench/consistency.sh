#!/usr/bin/env bash
# Benchmark `abssctl backup create --consistency snapshot` (every SQLite
# database read in place under SQLite's read lock, blobs read until they hold
# still) against
# `--consistency none` (the plain file copy) on the same instances, in the same
# run, alternating. (bench/verify-deep.sh measures deep verification.)
# See bench/README.md for what it measures and the targets.
#
# Knobs (environment):
#   BENCH_QUICK=1           small run: 20 MiB, 100 MiB
#   BENCH_SIZES="200 1024"  instance sizes in MiB (space-separated)
#   BENCH_RUNS=5            measured runs per mode (best and median reported), after one warm-up
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir (prefix, last archives, daemon log)
#   BENCH_STRICT=1          exit 1 when a target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The sized instances only, laid out as the sync server keeps them (group
# databases and .migrate beside the budgets and blobs).
BENCH_SMALL_FILES=0
BENCH_RUNS=${BENCH_RUNS:-5}
SAMPLE_ARGS=--group-dbs
# shellcheck source=bench/lib.sh
source bench/lib.sh

# --- daemon --------------------------------------------------------------

# No systemd here: the bus named below does not exist, so a create cannot ask
# whether the unit runs and `snapshot` snapshots (as on a host where the unit
# runs), while `none` copies the files.
mkdir -p "$PREFIX/etc/abssctl"
printf 'systemd:\n  bus_address: "unix:path=%s/no-system-bus"\n' "$WORK" >"$PREFIX/etc/abssctl/abssd.yml"
start_daemon

# --- measure -------------------------------------------------------------

# time_create NAME MODE: one create, its wall seconds on stdout; checks how it
# read the instance, notes its snapshot count in $WORK/snapshots-MODE, and
# removes the archive afterwards (untimed) so the runs do not fill the disk.
time_create() {
  local out=$WORK/create-$2.json
  local t0=$EPOCHREALTIME
  if ! "$ABSSCTL" --socket "$SOCK" --json backup create "$1" --compression zstd --consistency "$2" \
    >"$out" 2>"$WORK/abssctl.err"; then
    printf '\nbench: abssctl backup create %s --consistency %s failed:\n' "$1" "$2" >&2
    cat "$WORK/abssctl.err" >&2
    return 1
  fi
  local t1=$EPOCHREALTIME
  local capture snapshots archive
  capture=$(json result capture <"$out")
  snapshots=$(json result snapshots <"$out")
  archive=$(json result archive <"$out")
  [[ $capture == "$2" ]] || die "$1: --consistency $2 read the instance as '$capture'"
  if [[ $2 == snapshot ]] && ! ((snapshots > 0)); then
    die "$1: --consistency snapshot took no snapshot (snapshots=$snapshots)"
  fi
  echo "$snapshots" >"$WORK/snapshots-$2"
  rm -f -- "$archive" "$archive.sha256"
  elapsed "$t0" "$t1"
}

# stats VALUES...: "best median"
stats() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
  m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
  printf "%.3f %.3f", v[1], m }'; }

declare -A DATA_B DBS SNAP_BEST SNAP_MED NONE_BEST NONE_MED SNAPSHOTS
for name in "${CASES[@]}"; do
  DATA_B[$name]=$(find "$PREFIX/srv/$name" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
  DBS[$name]=$(find "$PREFIX/srv/$name" -type f -size +0 -exec sh -c \
    'for f; do if head -c 15 "$f" | grep -q "^SQLite format 3"; then echo "$f"; fi; done' sh {} + | wc -l)
  printf '== %s (%s bytes, %s SQLite databases): warm-up' "$name" "${DATA_B[$name]}" "${DBS[$name]}"
  time_create "$name" snapshot >/dev/null
  time_create "$name" none >/dev/null
  snap=() none=()
  for ((i = 1; i <= RUNS; i++)); do
    # Alternate which mode goes first, so neither always follows the other.
    if ((i % 2)); then
      s=$(time_create "$name" snapshot)
      n=$(time_create "$name" none)
    else
      n=$(time_create "$name" none)
      s=$(time_create "$name" snapshot)
    fi
    printf ', snapshot %ss / none %ss' "$s" "$n"
    snap+=("$s") none+=("$n")
  done
  echo
  read -r "SNAP_BEST[$name]" "SNAP_MED[$name]" <<<"$(stats "${snap[@]}")"
  read -r "NONE_BEST[$name]" "NONE_MED[$name]" <<<"$(stats "${none[@]}")"
  SNAPSHOTS[$name]=$(cat "$WORK/snapshots-snapshot")
done
PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)

# --- report --------------------------------------------------------------

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
echo "abssd backup create --consistency snapshot vs none (zstd level 3); best / median of $RUNS after a warm-up"
echo "machine: $(nproc) cores; systemd not reachable (snapshot mode snapshots)"
echo "MB = 10^6 bytes; data = sum of file sizes in the instance root; ratio = snapshot s / none s"
echo
printf '%-14s %8s %4s %10s %10s %9s %9s %7s %7s %6s\n' case "data MB" DBs "snap best" "snap med" "none best" "none med" "r best" "r med" snaps
for name in "${CASES[@]}"; do
  printf '%-14s %8s %4s %10s %10s %9s %9s %7s %7s %6s\n' "$name" "$(mb "${DATA_B[$name]}")" "${DBS[$name]}" \
    "${SNAP_BEST[$name]}" "${SNAP_MED[$name]}" "${NONE_BEST[$name]}" "${NONE_MED[$name]}" \
    "$(ratio "${SNAP_BEST[$name]}" "${NONE_BEST[$name]}")" "$(ratio "${SNAP_MED[$name]}" "${NONE_MED[$name]}")" \
    "${SNAPSHOTS[$name]}"
done
echo
echo "abssd peak RSS (VmHWM after all runs): $(mib "$PEAK_KIB") MiB"

echo
echo "targets (issue 12):"
for name in "${CASES[@]}"; do
  r=$(ratio "${SNAP_BEST[$name]}" "${NONE_BEST[$name]}")
  check "$name: snapshot <= 1.15x none, best of $RUNS (measured ${r}x)" "$r <= 1.15"
done

strict_exit
