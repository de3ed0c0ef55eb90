#!/usr/bin/env bash
# The main job on a fresh machine, sandboxed: build abssd + abssctl, generate a
# realistic Actual Budget instance in a throwaway prefix, start abssd there and
# back the instance up, list, show and verify (also deep) the backup, call the socket API
# with curl, look inside the archive, then damage the instance and restore it
# live (systemd simulated by `fake-systemd` on a private D-Bus, nginx checked by
# the real `nginx -t` when installed) and into a new directory with --dest.
#
# Under real systemd the same restore talks to PID 1 over the system bus:
# `make && sudo make install`, the steps in README "Installing" (group,
# directories, `systemctl enable --now abssd.socket`), then the same abssctl
# commands without --socket.
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
FAKE_PID=''
PREFIX=''
LOG=''

cleanup() {
  local rc=$?
  trap - EXIT
  if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null || true
    wait "$DAEMON_PID" 2>/dev/null || true
  fi
  if [[ -n ${FAKE_PID:-} ]] && kill -0 "$FAKE_PID" 2>/dev/null; then
    kill -TERM "$FAKE_PID" 2>/dev/null || true
    wait "$FAKE_PID" 2>/dev/null || true
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

# The live restore needs a D-Bus daemon for the simulated systemd.
HAVE_DBUS=''
command -v dbus-daemon >/dev/null && command -v dbus-send >/dev/null && HAVE_DBUS=1

say "Building abssd and abssctl (release)"
cargo build --release -j2 --locked -p abssd -p abssctl-client
if [[ -n $HAVE_DBUS ]]; then
  cargo build --release -j2 --locked -p abssd-tests --bin fake-systemd
fi
BIN_DIR=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd -P)
ABSSD=$BIN_DIR/abssd
ABSSCTL=$BIN_DIR/abssctl
FAKE_SYSTEMD=$BIN_DIR/fake-systemd
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

BUS_ARGS=()
if [[ -n $HAVE_DBUS ]]; then
  say "Starting fake-systemd: systemd's D-Bus API on a private bus"
  note "it keeps unit state and answers start/stop/daemon-reload like PID 1 would"
  FAKE_OUT=$PREFIX/fake-systemd.out
  "$FAKE_SYSTEMD" --unit-dir "$PREFIX/etc/systemd/system" >"$FAKE_OUT" 2>"$PREFIX/fake-systemd.log" &
  FAKE_PID=$!
  BUS=''
  for _ in $(seq 1 100); do
    BUS=$(head -n 1 "$FAKE_OUT" 2>/dev/null || true)
    [[ -n $BUS ]] && break
    kill -0 "$FAKE_PID" 2>/dev/null || die "fake-systemd exited during start-up"
    sleep 0.1
  done
  [[ -n $BUS ]] || die "fake-systemd did not print its bus address"
  note "bus: $BUS"
  # fake METHOD ARGS...: drive fake-systemd's test interface (see fake-systemd --help).
  fake() {
    dbus-send --bus="$BUS" --print-reply=literal --dest=org.freedesktop.systemd1 \
      /org/abssd/FakeSystemd "org.abssd.FakeSystemd.$1" "${@:2}"
  }
  # The instance's service is running, as it would be on a real host.
  fake SetUnit string:abssctl-demo.service boolean:true boolean:true >/dev/null
  BUS_ARGS=(--bus "$BUS")
else
  note "dbus-daemon is not installed: the live restore is skipped (apt-get install dbus-daemon)"
fi

# nginx -t on a sandboxed nginx.conf that includes the prefix's sites-enabled/*.
mkdir -p "$PREFIX/etc/nginx/logs" "$PREFIX/etc/abssctl"
if command -v nginx >/dev/null; then
  N=$PREFIX/etc/nginx
  printf '%s\n' "pid $N/nginx.pid;" "error_log $N/logs/error.log;" 'events {}' 'http {' \
    '  access_log off;' "  client_body_temp_path $N/tmp;" "  proxy_temp_path $N/tmp;" \
    "  fastcgi_temp_path $N/tmp;" "  uwsgi_temp_path $N/tmp;" "  scgi_temp_path $N/tmp;" \
    "  include $N/sites-enabled/*;" '}' >"$N/nginx.conf"
  NGINX_TEST="[nginx, -t, -q, -p, \"$N\", -c, \"$N/nginx.conf\"]"
else
  note "nginx is not installed: the site check is 'true' (apt-get install nginx for the real nginx -t)"
  NGINX_TEST='["true"]'
fi
# abssd's own settings go to abssd.yml: config.yml is the Python abssctl's, which
# refuses keys it does not know.
printf 'nginx:\n  test_command: %s\n' "$NGINX_TEST" >"$PREFIX/etc/abssctl/abssd.yml"

say "Starting abssd --prefix $PREFIX ${BUS_ARGS[*]}"
note "every default path (config, registry, backups, socket, logs) lives under the prefix"
note "daemon log: $LOG"
NO_COLOR=1 "$ABSSD" --prefix "$PREFIX" "${BUS_ARGS[@]}" >"$LOG" 2>&1 &
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
export ABSSD_SOCKET=$SOCK

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

say "Deep-verify backup $BACKUP_ID"
note "reads the archive through: every SQLite database passes integrity_check and has Actual's tables,"
note "every budget blob is a whole zip, .migrate and the files account.sqlite lists are there"
show "$ABSSCTL" backup verify --deep "$BACKUP_ID"

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

# --- restore -------------------------------------------------------------

DATA=$PREFIX/srv/demo
say "Damage the instance: overwrite a budget file, add a stray file, change the nginx site"
BUDGET=$(find "$DATA" -name '*.sqlite' -type f | sort | head -n 1)
[[ -n $BUDGET ]] || die "no .sqlite file in $DATA"
BEFORE=$(sha256sum <"$BUDGET")
show sh -c "echo oops > '$BUDGET'"
show touch "$DATA/stray-file"
SITE=$PREFIX/etc/nginx/sites-available/abssctl-demo.conf
show sh -c "echo 'server { listen 127.0.0.1:1; }' > '$SITE'"

say "Restore plan (--dry-run: nothing changes)"
show "$ABSSCTL" backup restore "$BACKUP_ID" --dry-run

if [[ -n $HAVE_DBUS ]]; then
  say "Live restore (--yes instead of the interactive prompt)"
  note "pre-restore backup, staged extraction with checksum, stop unit, swap, assets, daemon-reload,"
  note "registry, start unit, nginx -t + reload, clean-up; any failure rolls all of it back"
  show "$ABSSCTL" backup restore "$BACKUP_ID" --yes
  [[ $(sha256sum <"$BUDGET") == "$BEFORE" ]] || die "the budget file was not restored"
  [[ ! -e $DATA/stray-file ]] || die "the stray file survived the restore"
  note "the budget file has its old content again, the stray file is gone, the site is back"

  say "What systemd was asked to do (fake-systemd's call log)"
  fake Calls

  say "A restore that fails half-way is rolled back completely"
  note "stop the (simulated) service and make its next start fail; damage the data again;"
  note "then restore with --restart, whose start step fails after the data was swapped"
  fake SetUnit string:abssctl-demo.service boolean:false boolean:true >/dev/null
  fake Fail string:abssctl-demo.service string:start string:failed >/dev/null
  show touch "$DATA/stray-file"
  rc=0
  show "$ABSSCTL" backup restore "$BACKUP_ID" --yes --no-pre-backup --restart || rc=$?
  ((rc == 4)) || die "expected exit 4 from the failed restore, got $rc"
  [[ -e $DATA/stray-file ]] || die "the failed restore was not rolled back"
  note "exit $rc: the instance is exactly as before the attempt (stray file included)"
  fake Fail string:abssctl-demo.service string:start string: >/dev/null
fi

say "Restore into a new directory (--dest: no service, site or registry change)"
show "$ABSSCTL" backup restore "$BACKUP_ID" --dest "$PREFIX/srv/restores/demo-copy"
show ls "$PREFIX/srv/restores/demo-copy"

# --- reconcile -----------------------------------------------------------

say "Reconcile: the index against the archives on disk"
note "cheap enough for cron: a directory walk and one stat per archive, no archive is read"
show "$ABSSCTL" backup reconcile

say "Drift: an index entry lost, and an archive gone from disk"
note "a new backup whose index entry is then dropped (as if an older backups.json had been put back),"
note "and the first backup's archive moved away"
"$ABSSCTL" --quiet backup create demo -m "forgotten by the index" >/dev/null
FORGOTTEN=$("$ABSSCTL" --json backup list --instance demo | json_field backups 0 id)
python3 - "$PREFIX/srv/backups/backups.json" "$FORGOTTEN" <<'PY'
import json, sys
path, drop = sys.argv[1], sys.argv[2]
with open(path) as f:
    index = json.load(f)
index["backups"] = [b for b in index["backups"] if b["id"] != drop]
with open(path, "w") as f:
    json.dump(index, f, indent=2)
PY
show mv "$ARCHIVE" "$PREFIX/moved-away.tar.zst"
show "$ABSSCTL" backup reconcile
note "exit 0: the report ran (as the Python abssctl answers); --check makes drift an exit code"
rc=0
show "$ABSSCTL" backup reconcile --check || rc=$?
((rc == 3)) || die "expected exit 3 (drift found, not fixed) from reconcile --check, got $rc"
note "exit 3 with --check: drift found and not fixed, so a cron job can alert"

say "Fix it: --apply marks the missing entry, --adopt reads and hashes the orphan and indexes it"
show "$ABSSCTL" backup reconcile --apply --adopt
show "$ABSSCTL" backup list --instance demo

say "The archive comes back: reconcile notices, --apply makes it available again"
show mv "$PREFIX/moved-away.tar.zst" "$ARCHIVE"
show "$ABSSCTL" backup reconcile --apply
show "$ABSSCTL" backup reconcile

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
    srv/restores/demo-copy/                the --dest restore
    var/log/abssctl/operations.jsonl       the operations log
    abssd.log                              the daemon's log
Run it again in the same place:  DEMO_PREFIX=$PREFIX scripts/demo.sh
Clean up:                        rm -rf '$PREFIX'
The same under systemd (socket activation, real PID 1; README "Installing"):
    make && sudo make install       # then sysusers, tmpfiles, enable --now abssd.socket
    abssctl backup create demo      # the first call starts abssd
EOF
