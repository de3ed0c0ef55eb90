#!/usr/bin/env bash
# Benchmark `abssctl backup reconcile` on a large backups root: an index of
# BENCH_ENTRIES entries and as many archive files (each with its sidecar),
# spread over 20 instance directories, with 1% of the entries missing their
# archive and 1% of the archives orphaned. Reports wall time from the client
# (read-only with drift, --apply, read-only in sync) and abssd's peak RSS.
# See bench/README.md for the target.
#
# Knobs (environment):
#   BENCH_ENTRIES=10000     index entries (and archive files)
#   BENCH_RUNS=5            measured read-only runs (best and median reported), after one warm-up
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir
#   BENCH_STRICT=1          exit 1 when the target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENTRIES=${BENCH_ENTRIES:-10000}
BENCH_RUNS=${BENCH_RUNS:-5}
BENCH_INSTANCES=0
# shellcheck source=bench/lib.sh
source bench/lib.sh

echo "== generate $ENTRIES index entries and $ENTRIES archive files in $PREFIX/srv/backups"
python3 bench/gen-backups.py "$PREFIX/srv/backups" "$ENTRIES"
INDEX_BYTES=$(stat -c %s "$PREFIX/srv/backups/backups.json")

start_daemon
IDLE_KIB=$(proc_kib "$DAEMON_PID" VmRSS)

# time_reconcile ARGS...: wall seconds of one client run (exit 0 or 3 both fine).
time_reconcile() {
  local t0=$EPOCHREALTIME rc=0
  "$ABSSCTL" --socket "$SOCK" --json backup reconcile "$@" >"$WORK/reconcile.json" 2>"$WORK/abssctl.err" || rc=$?
  local t1=$EPOCHREALTIME
  if ((rc != 0 && rc != 3)); then
    printf '\nbench: abssctl backup reconcile %s failed (exit %d):\n' "$*" "$rc" >&2
    cat "$WORK/abssctl.err" >&2
    return 1
  fi
  elapsed "$t0" "$t1"
}
counts() {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join(f"{k}={len(d[k])}" for k in ("missing", "orphaned", "mismatched")), "unresolved=" + str(d["unresolved"]))' "$WORK/reconcile.json"
}
# series LABEL ARGS...: warm-up, RUNS timed runs; prints best and median.
series() {
  local label=$1 times=() i
  shift
  time_reconcile "$@" >/dev/null
  for ((i = 1; i <= RUNS; i++)); do
    times+=("$(time_reconcile "$@")")
  done
  local sorted
  sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  BEST=$(head -n 1 <<<"$sorted")
  MEDIAN=$(sed -n "$(((RUNS + 1) / 2))p" <<<"$sorted")
  printf '%-34s best %ss  median %ss  (%s)\n' "$label" "$BEST" "$MEDIAN" "$(counts)"
}

echo
echo "abssctl backup reconcile over $ENTRIES index entries ($INDEX_BYTES bytes of JSON) and $ENTRIES archives + sidecars"
echo "machine: $(nproc) cores; wall time from the client, best and median of $RUNS after a warm-up"
echo
series "read-only, 1% missing, 1% orphans" 
READ_BEST=$BEST
APPLY_S=$(time_reconcile --apply --adopt)
printf '%-34s %ss  (%s)\n' "--apply --adopt (reads 1% orphans)" "$APPLY_S" "$(counts)"
series "read-only, in sync after --apply"
SYNC_BEST=$BEST
PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)
echo
echo "abssd idle RSS (VmRSS after start): $(awk -v k="$IDLE_KIB" 'BEGIN { printf "%.1f", k / 1024 }') MiB"
echo "abssd peak RSS (VmHWM after all runs): $(awk -v k="$PEAK_KIB" 'BEGIN { printf "%.1f", k / 1024 }') MiB"

echo
echo "target:"
check "read-only reconcile with drift < 0.5 s (measured $READ_BEST s)" "$READ_BEST < 0.5"
check "read-only reconcile in sync < 0.5 s (measured $SYNC_BEST s)" "$SYNC_BEST < 0.5"
strict_exit
