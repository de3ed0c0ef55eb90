#!/usr/bin/env bash
# Benchmark the backup index at scale (issue 18): for each size in
# BENCH_INDEX_SIZES, a backups root made by bench/gen-backups.py (N index
# entries over 20 instances, as many archives with sidecars, 1% drift), a fresh
# abssd on it, and these calls:
#
#   cold first page   backup.list limit 50, the first call after the index file changed
#   first page        backup.list limit 50 (the parsed index cached)
#   show              backup.show of an entry in the middle of the index
#   list --all        abssctl --json backup list --all (every page, 2000 a call)
#   reconcile         abssctl --json backup reconcile (read-only)
#   prune plan        backup.prune dry run (restic's example policy)
#
# Single calls go through curl over the socket and are timed by curl
# (time_total: connect, request, the whole answer read); the abssctl ones are
# wall time of the client process. Peak RSS is abssd's VmHWM, reset before
# each row (/proc/PID/clear_refs), so it is that row's own peak.
# See bench/README.md for the targets.
#
# Knobs (environment):
#   BENCH_INDEX_SIZES="10000 100000"   index sizes
#   BENCH_RUNS=5            measured runs of the fast calls (best and median), after a warm-up
#   BENCH_DIR=DIR           where to create the temporary work dir (default: $TMPDIR)
#   BENCH_KEEP=1            keep the work dir
#   BENCH_STRICT=1          exit 1 when a target is missed
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C # '.' as decimal separator in $EPOCHREALTIME and printf

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SIZES_INDEX=${BENCH_INDEX_SIZES:-"10000 100000"}
BENCH_RUNS=${BENCH_RUNS:-5}
BENCH_INSTANCES=0
BENCH_TOOLS=curl
# shellcheck source=bench/lib.sh
source bench/lib.sh

# rpc METHOD PARAMS: one call with curl; prints its time_total; the answer is
# in $WORK/answer.json; fails on an error answer.
rpc() {
  local t
  t=$(curl -sS --unix-socket "$SOCK" -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" \
    -o "$WORK/answer.json" -w '%{time_total}' http://localhost/)
  python3 -c 'import json, sys; sys.exit("result" not in json.load(open(sys.argv[1])))' "$WORK/answer.json" || return 1
  printf '%.4f' "$t"
}
# failure: what the last failed call answered, in one line.
failure() {
  python3 -c 'import json, sys
try:
    e = json.load(open(sys.argv[1]))["error"]
    print(e.get("message", ""), e.get("data", "") or "")
except Exception:
    lines = open(sys.argv[2]).read().strip().splitlines()
    print(lines[-1] if lines else "no answer")' "$WORK/answer.json" "$WORK/abssctl.err" 2>/dev/null | head -c 200
}
# client ARGS...: wall seconds of one abssctl run (exit 0 or 3 both fine).
client() {
  local t0=$EPOCHREALTIME rc=0
  "$ABSSCTL" --socket "$SOCK" --json "$@" >"$WORK/answer.json" 2>"$WORK/abssctl.err" || rc=$?
  local t1=$EPOCHREALTIME
  ((rc == 0 || rc == 3)) || return 1
  elapsed "$t0" "$t1"
}
reset_peak() { echo 5 >"/proc/$DAEMON_PID/clear_refs"; }
peak_mib() { mib "$(proc_kib "$DAEMON_PID" VmHWM)"; }
# series LABEL RUNS CMD...: a warm-up, then RUNS timed runs of CMD; prints a
# row and sets BEST.
series() {
  local label=$1 runs=$2 times=() i sorted median
  shift 2
  reset_peak
  : >"$WORK/abssctl.err"
  if ! "$@" >/dev/null; then
    BEST=failed
    printf '  %-18s FAILED: %s (peak RSS %s MiB)\n' "$label" "$(failure)" "$(peak_mib)"
    return 0
  fi
  for ((i = 1; i <= runs; i++)); do
    times+=("$("$@")")
  done
  sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  BEST=$(head -n 1 <<<"$sorted")
  median=$(sed -n "$(((runs + 1) / 2))p" <<<"$sorted")
  printf '  %-18s best %8ss  median %8ss  peak RSS %6s MiB\n' "$label" "$BEST" "$median" "$(peak_mib)"
}

POLICY='{"keep_last":3,"keep_daily":7,"keep_weekly":4,"keep_monthly":6,"keep_within":"2d","dry_run":true}'
declare -A COLD FIRST SHOW RECONCILE RECONCILE_PEAK
for n in $SIZES_INDEX; do
  if [[ -n $DAEMON_PID ]]; then
    kill -TERM "$DAEMON_PID" && wait "$DAEMON_PID" || true
    DAEMON_PID=''
  fi
  rm -rf "$PREFIX"
  echo "== generate $n index entries and their archives in $PREFIX/srv/backups"
  python3 bench/gen-backups.py "$PREFIX/srv/backups" "$n"
  index=$PREFIX/srv/backups/backups.json
  start_daemon
  mid=$(python3 -c 'import json, sys
b = json.load(open(sys.argv[1]))["backups"]
print(b[len(b) // 2]["id"])' "$index")

  echo
  echo "$n entries ($(mb "$(stat -c %s "$index")") MB of JSON); abssd idle RSS $(mib "$(proc_kib "$DAEMON_PID" VmRSS)") MiB"
  # Cold: the first call after the file changed (a new inode, as a writer
  # makes it), each time.
  cold() {
    cp -p "$index" "$index.new" && mv "$index.new" "$index"
    rpc backup.list '{"limit":50}'
  }
  series "cold first page" 3 cold
  COLD[$n]=$BEST
  series "first page" "$RUNS" rpc backup.list '{"limit":50}'
  FIRST[$n]=$BEST
  series "show" "$RUNS" rpc backup.show "{\"id\":\"$mid\"}"
  SHOW[$n]=$BEST
  series "list --all" 1 client backup list --all
  series "reconcile" 1 client backup reconcile
  RECONCILE[$n]=$BEST
  RECONCILE_PEAK[$n]=$(peak_mib)
  series "prune plan" 1 rpc backup.prune "$POLICY"
done

echo
echo "machine: $(nproc) cores; curl's time_total for single calls, the client's wall time for abssctl"
echo "targets (at 100000 entries):"
n=100000
if [[ -n ${FIRST[$n]:-} ]]; then
  check "first page < 20 ms (measured ${FIRST[$n]} s)" "${FIRST[$n]} < 0.020"
  check "show < 10 ms (measured ${SHOW[$n]} s)" "${SHOW[$n]} < 0.010"
  check "cold first page < 0.5 s (measured ${COLD[$n]} s)" "${COLD[$n]} < 0.5"
  if [[ ${RECONCILE[$n]} == failed ]]; then
    check "reconcile (failed)" 0
  else
    check "reconcile < 2 s (measured ${RECONCILE[$n]} s)" "${RECONCILE[$n]} < 2"
    check "reconcile peak RSS < 64 MiB (measured ${RECONCILE_PEAK[$n]} MiB)" "${RECONCILE_PEAK[$n]} < 64"
  fi
else
  echo "  (no 100000-entry run)"
fi
strict_exit
