# What the end-to-end scenarios share: output, running commands inside the
# booted system (ns, as, ctl), the assertions a scenario makes, and how abssd
# is started. Sourced by run.sh, not run; uses its globals (WORK, MODE, RESULT,
# IDLE_TIMEOUT, ...).

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' YELLOW=$'\033[33m' RESET=$'\033[0m'
else
  BOLD='' RED='' GREEN='' YELLOW='' RESET=''
fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '    %sNOTE%s  %s\n' "$YELLOW" "$RESET" "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

# ns CMD...: run CMD as root inside the booted system, with a clean environment.
ns() {
  nsenter -t "$SYSD_PID" -m -p -u -i -C -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    SYSTEMD_PAGER= SYSTEMD_COLORS=0 "$@"
}
# as USER CMD...: run CMD as USER (uid, gid, supplementary groups from the
# system's databases, environment reset), without PAM or a login session.
as() {
  local user=$1
  shift
  ns setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"
}

# ctl USER ARGS...: abssctl as USER (root: as root), 120 s at most.
ctl() {
  local user=$1
  shift
  if [[ $user == root ]]; then
    ns timeout 120 abssctl "$@"
  else
    as "$user" timeout 120 abssctl "$@"
  fi
}

# wait_http PORT PATH TEXT: until GET PATH returns TEXT (10 s).
wait_http() {
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(ns curl -fsS "http://127.0.0.1:$1/$2" 2>/dev/null) == "$3" ]] && return 0
    sleep 0.1
  done
  return 1
}

# --- assertions (inside a scenario's subshell: a failure ends the scenario) --

ok() { printf '    %sok%s    %s\n' "$GREEN" "$RESET" "$*"; }
fail() {
  printf '    %sFAIL%s  %s\n' "$RED" "$RESET" "$1"
  shift
  local detail
  for detail in "$@"; do
    printf '%s\n' "$detail" | sed 's/^/          /'
  done
  exit 1
}

# The ERR trap of a scenario: what failed, and where (line and function, innermost first).
on_err() {
  local rc=$1 cmd=$2 i=0 frame where=()
  while frame=$(caller "$i"); do
    frame=${frame% *}
    where+=("${frame/ /:}")
    i=$((i + 1))
  done
  fail "command failed (exit $rc): $cmd" "at (line:function, innermost first) ${where[*]}"
}

OUT='' ERR='' RC=0
# run CMD...: run, keep stdout/stderr in OUT/ERR files and the exit code in RC.
run() {
  OUT=$(mktemp -p "$WORK") ERR=$(mktemp -p "$WORK")
  # (`||`: a failing command is an outcome here, not an error for the ERR trap.)
  RC=0
  "$@" >"$OUT" 2>"$ERR" || RC=$?
}
# expect_rc CODE DESCRIPTION CMD...
expect_rc() {
  local want=$1 what=$2
  shift 2
  run "$@"
  if ((RC != want)); then
    local said
    said=$(json "$OUT" "d['error']['kind'] + ': ' + d['error']['message']" 2>/dev/null) ||
      said=$(tail -n 5 "$ERR")
    [[ -n $said ]] || said=$(tail -n 5 "$OUT")
    fail "$what: exit $RC, expected $want" "${said//$'\n'/$'\n'          }"
  fi
  ok "$what (exit $RC)"
}
# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
  [[ $2 == "$3" ]] || fail "$1: got '$3', expected '$2'"
  ok "$1: $3"
}
# json FILE PYTHON-EXPR: evaluate EXPR with d = the parsed document.
json() {
  /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); v=eval(sys.argv[2]); print(json.dumps(v) if isinstance(v,(dict,list,bool)) or v is None else v)' "$1" "$2"
}
unit_prop() { ns systemctl show -p "$2" --value "$1"; }
is_active() { ns systemctl is-active "$1" 2>/dev/null || true; }
# wait_state UNIT STATE SECONDS: poll until the unit is in STATE.
wait_state() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    [[ $(is_active "$1") == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}

# Everything a restore may leave behind for instance $1, and the journal.
leftovers() {
  ns sh -c "
    find /srv -maxdepth 1 \( -name '.$1.restore-*' -o -name '$1.pre-restore-*' \)
    find /etc/systemd/system -maxdepth 1 -name 'abssctl-$1.service.bak-*'
    find /etc/nginx/sites-available -maxdepth 1 -name 'abssctl-$1.conf.bak-*'
    find /etc/nginx/sites-enabled -maxdepth 1 -name '.abssctl-$1.conf.bak-*'
    find /srv/backups -name '*.partial'
    find /var/lib/abssctl/journal -mindepth 1 2>/dev/null
  "
}
expect_no_leftovers() {
  local left
  left=$(leftovers "$1")
  if [[ -n $left ]]; then
    local lines
    mapfile -t lines <<<"$left"
    fail "leftovers after the restore of $1" "${lines[@]}"
  fi
  ok "no staging, .pre-restore-*, .bak-*, .partial; journal dir empty"
}
treehash() { ns /usr/bin/python3 /abssd-e2e/bin/treehash.py "$@"; }

# --- how abssd is started ----------------------------------------------------

# socket: through abssd.socket (the design); direct: `systemctl start
# abssd.service` (only when socket activation does not work: the activation
# scenario fails then, and the others say they ran this way).
MODE=''

select_mode() {
  if [[ ${RESULT[activation]:-} == pass ]]; then
    MODE=socket
    return
  fi
  ns systemctl stop abssd.service abssd.socket >/dev/null 2>&1 || true
  ns systemctl reset-failed abssd.service abssd.socket >/dev/null 2>&1 || true
  if ns systemctl enable --now abssd.socket >/dev/null 2>&1 &&
    as e2e-op timeout 15 abssctl daemon status >/dev/null 2>&1; then
    MODE=socket
    info "abssd is started through abssd.socket"
    return
  fi
  MODE=direct
  ns systemctl disable --now abssd.socket >/dev/null 2>&1 || true
  ns systemctl stop abssd.service >/dev/null 2>&1 || true
  ns systemctl reset-failed abssd.service abssd.socket >/dev/null 2>&1 || true
  warn "socket activation does not work: the other scenarios start abssd.service directly"
}

# Make sure a call reaches abssd (starting it the way MODE says).
ensure_daemon() {
  ns systemctl reset-failed abssd.service abssd.socket >/dev/null 2>&1 || true
  local unit=abssd.service
  [[ $MODE == socket ]] && unit=abssd.socket
  if ! ns timeout 120 systemctl start "$unit" 2>"$WORK/start.err"; then
    fail "systemctl start $unit failed" "$(cat "$WORK/start.err")" \
      "$(ns journalctl -u abssd.service -n 8 --no-pager -o cat 2>&1)"
  fi
  local i
  for ((i = 0; i < 300; i++)); do
    as e2e-op timeout 10 abssctl daemon status >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  fail "abssd does not answer within 30 s (started by: $MODE)" "$(ns journalctl -u abssd.service -n 10 --no-pager -o cat 2>&1)"
}

# The next start after a stop: a call (socket) or systemctl start (direct).
next_activation() {
  if [[ $MODE == direct ]]; then
    ns timeout 120 systemctl start abssd.service
    # Type=simple: started is not serving yet (recovery runs first).
    local i
    for ((i = 0; i < 300; i++)); do
      as e2e-op timeout 10 abssctl daemon status >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  expect_rc 0 "next call after the stop ($([[ $MODE == socket ]] && echo 'socket activation' || echo 'after systemctl start'))" \
    as e2e-op timeout 60 abssctl daemon status --json
  cp "$OUT" "$WORK/status-after.json"
}

# --- scheduled backups (abssctl schedule) ------------------------------------

# timer_of NAME: the backup timer of instance NAME, or of every instance for --all.
timer_of() {
  if [[ $1 == --all ]]; then echo abssctl-backup-all.timer; else echo "abssctl-backup@$1.timer"; fi
}

# schedule_soon NAME|--all SECONDS [USER]: make the backup timer of NAME fire
# SECONDS from now, through the product (`abssctl schedule enable` as USER,
# default e2e-op). The shipped timers wait a fixed random delay of up to an hour
# (RandomizedDelaySec=1h) and elapse within a minute (AccuracySec's default),
# so first a runtime drop-in (90-e2e-soon.conf, in /run: gone at the next boot,
# and sorted after abssd's 50-abssctl-calendar.conf) sets both to nothing.
# The calendar is the booted system's local time SECONDS ahead, to the second.
# Leaves OUT/ERR/RC as expect_rc does, and the calendar in SCHEDULED_AT.
schedule_soon() {
  local name=$1 secs=$2 user=${3:-e2e-op} timer spec target
  timer=$(timer_of "$name")
  ns mkdir -p "/run/systemd/system/$timer.d"
  printf '[Timer]\nRandomizedDelaySec=0\nAccuracySec=1s\n' |
    ns sh -c "cat >'/run/systemd/system/$timer.d/90-e2e-soon.conf'"
  ns systemctl daemon-reload
  spec=$(ns date -d "+$secs seconds" '+%Y-%m-%d %H:%M:%S')
  if [[ $name == --all ]]; then target=(--all); else target=("$name"); fi
  expect_rc 0 "$user: schedule enable ${target[*]} --calendar '$spec' (in $secs s)" \
    ctl "$user" schedule enable "${target[@]}" --calendar "$spec" --json
  SCHEDULED_AT=$spec
}

# unschedule NAME|--all: disable the timer (as root) and drop schedule_soon's drop-in.
unschedule() {
  local timer target
  timer=$(timer_of "$1")
  if [[ $1 == --all ]]; then target=(--all); else target=("$1"); fi
  ctl root schedule disable "${target[@]}" >/dev/null 2>&1 || true
  ns rm -rf "/run/systemd/system/$timer.d"
  ns systemctl daemon-reload
}
