#!/usr/bin/env bash
# The main job on a fresh machine, sandboxed: build abssd + abssctl, generate a
# realistic Actual Budget instance in a throwaway prefix, start abssd there and
# back the instance up, list, show and verify the backup, call the socket API
# with curl, and look inside the archive.
#
# Usage: scripts/demo.sh            (prefix from mktemp -d)
#        DEMO_PREFIX=DIR scripts/demo.sh
#
# Touches nothing outside the prefix (and the cargo target dir); needs no root.
set -euo pipefail
shopt -s inherit_errexit

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' DIM=$'\033[2m' RESET=$'\033[0m'
else
  BOLD='' DIM='' RESET=''
fi

# say TEXT: a step header with a short explanation.
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
# note TEXT: an explanatory line.
note() { printf '%s    %s%s\n' "$DIM" "$*" "$RESET"; }
# show CMD...: print a command the way a user would type it, then run it.
show() {
  local shown=("$@")
  [[ ${shown[0]} == "$ABSSCTL" ]] && shown[0]=abssctl
  printf '%s$ %s%s\n' "$BOLD" "${shown[*]}" "$RESET"
  "$@"
}
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

for tool in cargo python3 curl tar sha256sum; do
  command -v "$tool" >/dev/null || die "'$tool' is required but not installed (scripts/test.sh installs the test tools)"
done

DAEMON_PID=''
PREFIX=''
LOG=''

cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if ((rc != 0)); then
    printf '\ndemo: failed (exit %d)\n' "$rc" >&2
    if [[ -n $LOG && -s $LOG ]]; then
      printf -- '--- last lines of %s ---\n' "$LOG" >&2
      tail -n 30 "$LOG" >&2
    fi
    [[ -n $PREFIX ]] && printf 'demo: prefix kept for inspection: %s\n' "$PREFIX" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ---------------------------------------------------------------

say "Building abssd and abssctl (release)"
cargo build --release -j2 --locked -p abssd -p abssctl-client
BIN_DIR=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd -P)
ABSSD=$BIN_DIR/abssd
ABSSCTL=$BIN_DIR/abssctl
[[ -x $ABSSD && -x $ABSSCTL ]] || die "build did not produce $ABSSD and $ABSSCTL"

# --- sandbox -------------------------------------------------------------

if [[ -n ${DEMO_PREFIX:-} ]]; then
  mkdir -p "$DEMO_PREFIX"
  PREFIX=$(cd "$DEMO_PREFIX" && pwd -P)
else
  PREFIX=$(mktemp -d -t abssd-demo.XXXXXX)
  PREFIX=$(cd "$PREFIX" && pwd -P)
fi
SOCK=$PREFIX/run/abssctl/abssd.sock
LOG=$PREFIX/abssd.log
# sun_path holds 108 bytes including the terminating NUL.
((${#SOCK} < 108)) || die "socket path too long for a Unix socket (${#SOCK} bytes): $SOCK; use a shorter DEMO_PREFIX"

say "Generating a sample Actual Budget instance 'demo' (~40 MB) in $PREFIX"
note "budget SQLite files, an account database, a systemd unit, an nginx site and a registry entry"
python3 scripts/sample-instance.py "$PREFIX" demo --size-mb 40 --force

say "Starting abssd --prefix $PREFIX"
note "every default path (config, registry, backups, socket, logs) lives under the prefix"
note "daemon log: $LOG"
NO_COLOR=1 "$ABSSD" --prefix "$PREFIX" >"$LOG" 2>&1 &
DAEMON_PID=$!
# Ready when the daemon answering on the socket is the one just started (a stale
# socket file, or another daemon on this prefix, must not pass for it).
daemon_pid() {
  "$ABSSCTL" --socket "$SOCK" --json daemon status 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null
}
ready=''
for _ in $(seq 1 100); do
  if ! kill -0 "$DAEMON_PID" 2>/dev/null; then
    rc=0
    wait "$DAEMON_PID" || rc=$?
    DAEMON_PID=''
    die "abssd exited during start-up (status $rc)"
  fi
  if [[ -S $SOCK && $(daemon_pid || true) == "$DAEMON_PID" ]]; then
    ready=1
    break
  fi
  sleep 0.1
done
[[ -n $ready ]] || die "abssd did not answer on $SOCK within 10 s"
note "abssd is running as pid $DAEMON_PID, socket $SOCK"
export ABSSCTL_SOCKET=$SOCK

# --- the tour ------------------------------------------------------------

say "Daemon status"
show "$ABSSCTL" daemon status

say "Back up the instance"
note "one streaming pass: walk -> tar -> zstd -> sha256 -> archive, then sidecar and index entry"
show "$ABSSCTL" backup create demo -m "demo backup" --label demo

say "List backups (newest first)"
show "$ABSSCTL" backup list

json_field() { python3 -c 'import json, sys
doc = json.load(sys.stdin)
for key in sys.argv[1:]:
    doc = doc[int(key)] if isinstance(doc, list) else doc[key]
print(doc)' "$@"; }

BACKUP_ID=$("$ABSSCTL" --json backup list --instance demo | json_field backups 0 id)
[[ -n $BACKUP_ID ]] || die "no backup id in 'abssctl --json backup list'"

say "Show backup $BACKUP_ID"
show "$ABSSCTL" backup show "$BACKUP_ID"

say "Verify backup $BACKUP_ID"
note "recomputes the archive's sha256 and records the result in the index"
show "$ABSSCTL" backup verify "$BACKUP_ID"

say "The same socket speaks JSON-RPC over HTTP: backup.list with curl"
REQUEST='{"jsonrpc":"2.0","id":1,"method":"backup.list","params":{}}'
printf "%s\$ curl --unix-socket %s -H 'content-type: application/json' -d '%s' http://localhost/%s\n" \
  "$BOLD" "$SOCK" "$REQUEST" "$RESET"
curl -sS --fail --unix-socket "$SOCK" -H 'content-type: application/json' -d "$REQUEST" http://localhost/ |
  python3 -m json.tool

ARCHIVE=$("$ABSSCTL" --json backup show "$BACKUP_ID" | python3 -c 'import json, sys
b = json.load(sys.stdin)["backup"]
print(b.get("path") or b["archive_path"])')
[[ -f $ARCHIVE ]] || die "archive $ARCHIVE from 'backup show' does not exist"

say "Inside the archive: $ARCHIVE"
if [[ $ARCHIVE == *.zst ]] && ! command -v zstd >/dev/null; then
  note "skipped: GNU tar needs the 'zstd' program to read .tar.zst (apt-get install zstd)"
else
  note "a plain tar stream with one top directory named after the backup id"
  LISTING=$PREFIX/archive-listing.txt
  tar -tvf "$ARCHIVE" >"$LISTING"
  printf '%s$ tar -tvf %s | head -n 20%s\n' "$BOLD" "$ARCHIVE" "$RESET"
  head -n 20 "$LISTING"
  note "... $(wc -l <"$LISTING") entries in all; top-level layout:"
  tar -tf "$ARCHIVE" | awk -F/ 'NF > 1 && $2 != "" { print "      " $1 "/" $2 "/" }' | sort -u
fi

say "The sidecar checksum works with standard tools"
(
  cd "$(dirname "$ARCHIVE")"
  show sha256sum -c "$(basename "$ARCHIVE").sha256"
)

# --- stop ----------------------------------------------------------------

say "Stopping abssd (SIGTERM)"
kill -TERM "$DAEMON_PID" 2>/dev/null || die "abssd (pid $DAEMON_PID) is no longer running"
rc=0
wait "$DAEMON_PID" || rc=$?
DAEMON_PID=''
((rc == 0)) || die "abssd exited with status $rc on SIGTERM (log: $LOG)"
note "abssd stopped cleanly"

say "Done"
cat <<EOF
Everything lives under the prefix: $PREFIX
    srv/demo/                              the sample instance
    srv/backups/backups.json               the backup index
    srv/backups/demo/                      archives and .sha256 sidecars
    var/log/abssctl/operations.jsonl       the operations log
    abssd.log                              the daemon's log
Run it again in the same place:  DEMO_PREFIX=$PREFIX scripts/demo.sh
Clean up:                        rm -rf '$PREFIX'
EOF
