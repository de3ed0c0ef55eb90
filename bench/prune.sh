#!/usr/bin/env bash
# Benchmark the plan of `backup.prune` (a dry run) over the socket: an index of
# BENCH_ENTRIES entries spread over 20 instances, one backup an hour, a tenth
# of them verified, a few protected, pre-restore, removed or corrupt; the
# policy restic's docs use as their example (keep-last 3, keep-daily 7,
# keep-weekly 4, keep-monthly 6, keep-within 2d). The plan reads only the
# index, so no archive files are made. Reports wall time from the client (one
# JSON-RPC call with curl, the answer read whole) and abssd's peak RSS; then
# times one real prune of the same policy (empty archive files).
# See bench/README.md for the target.
#
# Knobs (environment):
#   BENCH_ENTRIES=10000     index entries
#   BENCH_RUNS=5            measured runs (best and median reported), after one warm-up
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
BENCH_TOOLS=curl
# shellcheck source=bench/lib.sh
source bench/lib.sh

echo "== generate $ENTRIES index entries in $PREFIX/srv/backups"
python3 - "$PREFIX/srv/backups" "$ENTRIES" <<'PY'
import json, os, sys
from datetime import datetime, timedelta, timezone
root, n = sys.argv[1], int(sys.argv[2])
instances = [f"inst-{i:02d}" for i in range(20)]
start = datetime(2024, 1, 1, tzinfo=timezone.utc)
entries = []
for i in range(n):
    inst = instances[i % len(instances)]
    at = start + timedelta(hours=i // len(instances))
    ident = f"{at:%Y%m%d-%H%M%S}-{inst}-{i:06x}"
    checksum = {"algorithm": "sha256", "value": f"{i:064x}"}
    if i % 10 == 0:
        checksum["last_verified"] = (at + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = {
        "id": ident, "instance": inst,
        "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "path": os.path.join(root, inst, ident + ".tar.zst"), "algorithm": "zstd",
        "compression_level": None, "size_bytes": 1_000_000 + i, "checksum": checksum,
        "status": "available", "message": "nightly", "created_by": "root",
        "metadata": {"data_only": False, "labels": ["nightly"]},
    }
    if i % 997 == 0:
        entry["protected"] = True
    if i % 499 == 0:
        entry["metadata"]["labels"] = ["pre-restore"]
    if i % 101 == 0:
        entry["status"] = "removed"
        entry["removed_at"] = (at + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif i % 103 == 0:
        entry["status"] = "corrupt"
    entries.append(entry)
os.makedirs(root, exist_ok=True)
with open(os.path.join(root, "backups.json"), "w") as f:
    json.dump({"backups": entries}, f, indent=2)
PY
INDEX_BYTES=$(stat -c %s "$PREFIX/srv/backups/backups.json")

start_daemon
IDLE_KIB=$(proc_kib "$DAEMON_PID" VmRSS)

PARAMS='{"keep_last":3,"keep_daily":7,"keep_weekly":4,"keep_monthly":6,"keep_within":"2d","purge_index":90,"dry_run":true}'
REQUEST="{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"backup.prune\",\"params\":$PARAMS}"

# time_plan: wall seconds of one dry run, from the client; fails on an error answer.
time_plan() {
  local t0=$EPOCHREALTIME
  curl -sS --unix-socket "$SOCK" -H 'content-type: application/json' -d "$REQUEST" \
    http://localhost/ >"$WORK/plan.json"
  local t1=$EPOCHREALTIME
  if ! python3 -c 'import json, sys; sys.exit("result" not in json.load(open(sys.argv[1])))' "$WORK/plan.json"; then
    printf '\nbench: backup.prune failed:\n' >&2
    head -c 2000 "$WORK/plan.json" >&2
    return 1
  fi
  elapsed "$t0" "$t1"
}
counts() {
  python3 -c 'import json, sys
p = json.load(open(sys.argv[1]))["result"]["plan"]
print("backups=%d keep=%d remove=%d purge=%d" % (len(p["backups"]), p["keep"], p["remove"], len(p["purge"])))' "$WORK/plan.json"
}

time_plan >/dev/null
times=()
for ((i = 1; i <= RUNS; i++)); do
  times+=("$(time_plan)")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
BEST=$(head -n 1 <<<"$sorted")
MEDIAN=$(sed -n "$(((RUNS + 1) / 2))p" <<<"$sorted")
PEAK_KIB=$(proc_kib "$DAEMON_PID" VmHWM)

echo
echo "backup.prune dry run over $ENTRIES index entries ($INDEX_BYTES bytes of JSON), 20 instances"
echo "policy: $PARAMS"
echo "machine: $(nproc) cores; wall time from the client (curl), best and median of $RUNS after a warm-up"
echo
printf '%-24s best %ss  median %ss  (%s; answer %s bytes)\n' "plan (dry run)" "$BEST" "$MEDIAN" \
  "$(counts)" "$(stat -c %s "$WORK/plan.json")"
echo
echo "abssd idle RSS (VmRSS after start): $(mib "$IDLE_KIB") MiB"
echo "abssd peak RSS (VmHWM after all runs): $(mib "$PEAK_KIB") MiB"

# Then once, for real: every archive the index names made (empty files, so
# the figure is the index, journal and unlink work, not the disk), and the
# same policy with yes: true.
python3 - "$PREFIX/srv/backups/backups.json" <<'PY'
import json, os, sys
for e in json.load(open(sys.argv[1]))["backups"]:
    if e["status"] != "removed":
        os.makedirs(os.path.dirname(e["path"]), exist_ok=True)
        open(e["path"], "w").close()
PY
REQUEST=${REQUEST/\"dry_run\":true/\"yes\":true}
REMOVE_TIME=$(time_plan)
REMOVED=$(python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["result"]["result"]
print("%d removed, %d kept" % (sum(i["removed"] for i in r["items"]), sum(not i["removed"] for i in r["items"])))' "$WORK/plan.json")
printf '%-24s %ss  (%s; plan, then removal in batches of 256)\n' "prune (removal)" "$REMOVE_TIME" "$REMOVED"
echo "abssd peak RSS (VmHWM after the removal): $(mib "$(proc_kib "$DAEMON_PID" VmHWM)") MiB"

echo
echo "target:"
check "plan for $ENTRIES entries < 0.1 s (measured $BEST s)" "$BEST < 0.1"
strict_exit
