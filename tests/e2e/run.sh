#!/usr/bin/env bash
# End-to-end tests of abssd + abssctl on a real systemd, in a throwaway system.
#
# What it does
#   1. builds abssd and abssctl and lays out the install tree (`make install
#      DESTDIR=...` when the checkout has a Makefile with an install target, else
#      by hand: binaries, systemd/ units, sysusers.d and tmpfiles.d files);
#   2. boots systemd as PID 1 of new PID, mount, UTS, IPC and cgroup namespaces,
#      on an overlay of the host's / whose writes go to a tmpfs (tests/e2e/boot.sh;
#      the host's files, /tmp and /dev are never touched, see shared NOTES.md);
#   3. installs the tree into the running root, runs systemd-sysusers and
#      systemd-tmpfiles, creates users, nginx and two instances whose units really
#      run (python3 http.server on 127.0.0.1);
#   4. runs the scenarios as unprivileged users, each with assertions that can
#      fail; prints a summary; powers the system off and removes everything.
#
# Scenarios (names for --only)
#   activation  abssd.socket starts abssd on the first call, abssd exits after
#               daemon.idle_timeout, the next call starts it again
#   restore     backup, change, live restore of a running instance: unit stopped
#               and started again, data and site are the backup's, real nginx -t
#               (a broken site elsewhere makes the restore fail and roll back)
#   authz       a reader outside the operator group may list, not mutate (exit 3);
#               a user without access to the socket is refused
#   stop        `systemctl stop abssd` in the middle of a restore of a 50 MB
#               instance: after the next activation the instance is all old or
#               all new, its unit runs, nothing is left over
#   kill        the same with SIGKILL (`systemctl kill -s KILL`): the next start
#               recovers the interrupted restore
#   writer      an instance whose unit writes its SQLite database continuously
#               (rollback journal, BEGIN IMMEDIATE): backed up with the default
#               consistency (snapshot, the unit keeps running) and with
#               --consistency stop (stopped and started again, downtime
#               reported), each restored with --dest: integrity_check and the
#               writer's invariant hold on the restored database
#
# Usage: tests/e2e/run.sh [--only NAME[,NAME...]] [--no-build] [--keep] [--hold]
#        tests/e2e/run.sh --preflight   say whether this machine can run it (exit 0/1)
#
#   --keep  keep the work directory (install tree, logs) after the run
#   --hold  before tearing down, print how to enter the system and wait for Enter
#
# Needs root, util-linux unshare/nsenter/setpriv, overlayfs, cgroup2, and
# /lib/systemd/systemd; installs nginx with apt when missing. Exit 0 only when
# every scenario passed.
#
# Environment
#   E2E_PROFILE=debug|release   cargo profile of the installed binaries (debug;
#                               with a Makefile, release lets `make install` build)
#   E2E_INSTALL=auto|make|manual  how the install tree is made (auto)
#   E2E_MAKE_ARGS="..."         extra arguments for `make install`
#   E2E_BIG_MB=50               size of the instance the stop/kill scenarios restore
#   E2E_XFAIL=name,...          scenarios expected to fail: reported, not fatal
#   E2E_LOG_DIR=DIR             where the journal and logs are kept (target/e2e)
#   E2E_SERVICE_DROPIN=FILE     installed as abssd.service.d/e2e-extra.conf (try a
#                               hardening set, Environment=RUST_LOG=debug, ...)
#   E2E_TIMEOUT=600             seconds before a watchdog kills the throwaway system
set -euo pipefail
shopt -s inherit_errexit

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
E2E=$SRC/tests/e2e

ALL_SCENARIOS=(activation restore authz stop kill writer)
IDLE_TIMEOUT=3
BIG_MB=${E2E_BIG_MB:-50}

if [[ -t 1 ]]; then
  BOLD=$'\033[1m' RED=$'\033[31m' GREEN=$'\033[32m' YELLOW=$'\033[33m' RESET=$'\033[0m'
else
  BOLD='' RED='' GREEN='' YELLOW='' RESET=''
fi
say() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
info() { printf '    %s\n' "$*"; }
warn() { printf '    %sNOTE%s  %s\n' "$YELLOW" "$RESET" "$*"; }
die() { printf 'e2e: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

ONLY='' BUILD=1 KEEP=0 HOLD=0 PREFLIGHT=0
while (($#)); do
  case $1 in
    --only) ONLY=${2:?--only needs a list}; shift 2 ;;
    --only=*) ONLY=${1#*=}; shift ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --hold) HOLD=1; shift ;;
    --preflight) PREFLIGHT=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
SCENARIOS=("${ALL_SCENARIOS[@]}")
if [[ -n $ONLY ]]; then
  IFS=, read -r -a SCENARIOS <<<"$ONLY"
  for s in "${SCENARIOS[@]}"; do
    [[ " ${ALL_SCENARIOS[*]} " == *" $s "* ]] || die "unknown scenario '$s' (one of: ${ALL_SCENARIOS[*]})"
  done
fi

# --- preflight -------------------------------------------------------------

# The cgroup2 hierarchy of the host: unified (/sys/fs/cgroup) or hybrid
# (/sys/fs/cgroup/unified). Prints nothing when there is none.
cgroup2_root() {
  local d
  for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    if [[ $(stat -f -c %T "$d" 2>/dev/null) == cgroup2fs ]]; then
      echo "$d"
      return
    fi
  done
}

# Why this machine cannot run the tests; empty when it can.
preflight_reason() {
  if [[ $(id -u) -ne 0 ]]; then
    echo "needs root (namespaces, overlay mounts, a private systemd); run as root, as CI does"
    return
  fi
  local cmd
  for cmd in unshare nsenter setpriv timeout curl tar mountpoint; do
    command -v "$cmd" >/dev/null || { echo "'$cmd' is not installed"; return; }
  done
  [[ -x /lib/systemd/systemd ]] || { echo "/lib/systemd/systemd is missing (apt-get install systemd)"; return; }
  [[ -x /usr/bin/python3 ]] || { echo "/usr/bin/python3 is missing (the instances' units run it)"; return; }
  grep -qw overlay /proc/filesystems || { echo "the kernel has no overlayfs"; return; }
  [[ -n $(cgroup2_root) ]] || { echo "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"; return; }
  if ! unshare --help 2>&1 | grep -q -- '--kill-child'; then
    echo "util-linux unshare is too old (no --kill-child)"
    return
  fi
  local out
  if ! out=$(unshare --pid --fork --mount --uts --ipc --cgroup --propagation private true 2>&1); then
    echo "cannot create namespaces here (unshare --pid --mount --cgroup ...: $out)"
    return
  fi
}

if ((PREFLIGHT)); then
  reason=$(preflight_reason)
  if [[ -n $reason ]]; then
    echo "$reason"
    exit 1
  fi
  echo "ok"
  exit 0
fi

reason=$(preflight_reason)
[[ -z $reason ]] || die "cannot run here: $reason"

if ! command -v nginx >/dev/null; then
  say "installing nginx (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends nginx || { apt-get update && apt-get install -y --no-install-recommends nginx; }
  command -v nginx >/dev/null || die "nginx is required and could not be installed"
fi

# --- state and teardown ----------------------------------------------------

T_START=$SECONDS
WORK=''          # host directory of this run
SHARE=''         # WORK/share, at /abssd-e2e inside
CG=''            # the cgroup the namespace lives in
UNSHARE_PID=''   # the unshare process (host)
SYSD_PID=''      # systemd, PID 1 inside (host pid)
SYSD_NS=''       # its PID namespace (/proc/PID/ns/pid), to never signal a reused pid
WATCHDOG_PID=''  # kills the namespace when the run takes too long
LOG_DIR=${E2E_LOG_DIR:-$SRC/target/e2e}
declare -A RESULT=() DURATION=() REMARK=()

# Whether SYSD_PID is still our namespace's PID 1 (not a reused pid).
sysd_alive() {
  [[ -n $SYSD_PID ]] || return 1
  if [[ -n $SYSD_NS ]]; then
    [[ $(readlink "/proc/$SYSD_PID/ns/pid" 2>/dev/null) == "$SYSD_NS" ]]
  else
    [[ $(awk '{print $4}' "/proc/$SYSD_PID/stat" 2>/dev/null) == "$UNSHARE_PID" ]]
  fi
}

# Power the system off and remove every trace; runs on every exit.
teardown() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  # (Its sleep gets SIGKILL from its pdeathsig.)
  [[ -n $WATCHDOG_PID ]] && kill -KILL "$WATCHDOG_PID" 2>/dev/null
  if sysd_alive && ((HOLD)); then
    printf '\nthe system is still up; enter it with:\n  nsenter -t %s -m -p -u -i -C bash\npress Enter to tear it down ' "$SYSD_PID"
    read -r _ </dev/tty || true
  fi
  if sysd_alive; then
    mkdir -p "$LOG_DIR"
    ns journalctl --no-pager -o short-monotonic >"$LOG_DIR/journal.txt" 2>&1
    ns cat /var/log/abssctl/operations.jsonl >"$LOG_DIR/operations.jsonl" 2>/dev/null
    say "shutting the throwaway system down (systemctl poweroff)"
    ns timeout 20 systemctl poweroff --no-block >/dev/null 2>&1
    local i
    for ((i = 0; i < 300; i++)); do
      kill -0 "$UNSHARE_PID" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$UNSHARE_PID" 2>/dev/null; then
      warn "systemd did not power off within 30 s: killing it (SIGKILL to the namespace's PID 1)"
      sysd_alive && kill -KILL "$SYSD_PID" 2>/dev/null
      for ((i = 0; i < 50; i++)); do
        kill -0 "$UNSHARE_PID" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$UNSHARE_PID" 2>/dev/null
    fi
  elif [[ -n $UNSHARE_PID ]] && kill -0 "$UNSHARE_PID" 2>/dev/null; then
    kill -KILL "$UNSHARE_PID" 2>/dev/null
  fi
  [[ -n $UNSHARE_PID ]] && wait "$UNSHARE_PID" 2>/dev/null
  if sysd_alive; then
    printf '%se2e: systemd (pid %s) is still running after teardown%s\n' "$RED" "$SYSD_PID" "$RESET" >&2
    rc=1
  fi
  if [[ -n $CG && -d $CG ]]; then
    for ((i = 0; i < 50; i++)); do
      find "$CG" -depth -type d -exec rmdir {} + 2>/dev/null
      [[ -d $CG ]] || break
      sleep 0.1
    done
    [[ -d $CG ]] && warn "could not remove cgroup $CG"
  fi
  if [[ -n $WORK && -d $WORK ]]; then
    mkdir -p "$LOG_DIR"
    cp -f "$WORK"/*.log "$SHARE"/*.log "$LOG_DIR"/ 2>/dev/null
    if ((KEEP)); then
      info "kept: $WORK"
    else
      rm -rf "$WORK"
    fi
  fi
  if ((rc != 0)); then
    printf '\n%se2e: FAILED (exit %d); journal and logs in %s%s\n' "$RED" "$rc" "$LOG_DIR" "$RESET" >&2
  fi
  exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

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

# --- build and install: the one place that knows how the product installs ---

INSTALL_HOW=''

# Lay out the install tree in $SHARE/stage (host side).
stage_product() {
  local stage=$SHARE/stage how=${E2E_INSTALL:-auto}
  mkdir -p "$stage"
  if [[ $how == auto ]]; then
    how=manual
    if [[ -f $SRC/Makefile ]] && make -C "$SRC" -n install DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1; then
      how="make"
    fi
  fi
  case $how in
    make)
      local margs=()
      if [[ ${E2E_PROFILE:-debug} == debug ]]; then
        # `make install` builds (release) only what is missing from $(RELEASE),
        # its directory of built files: point it at a debug build of the
        # binaries (and of abssctl's generated completions and man pages).
        local dir=${CARGO_TARGET_DIR:-target}
        [[ $dir == /* ]] || dir=$SRC/$dir
        dir=$dir/debug
        if ((BUILD)); then
          (cd "$SRC" && cargo build --locked -j2 -p abssd -p abssctl-client --bins)
          if [[ -x $dir/abssctl-gen ]]; then
            rm -rf "$dir/gen"
            "$dir/abssctl-gen" "$dir/gen" >/dev/null
          fi
        fi
        margs=(RELEASE="$dir")
      fi
      INSTALL_HOW="make install DESTDIR=<stage> PREFIX=/usr ${margs[*]} ${E2E_MAKE_ARGS:-}"
      say "install tree: $INSTALL_HOW"
      # shellcheck disable=SC2086 # E2E_MAKE_ARGS is a list of words
      make -C "$SRC" install DESTDIR="$stage" PREFIX=/usr "${margs[@]}" ${E2E_MAKE_ARGS:-}
      ;;
    manual)
      local profile=${E2E_PROFILE:-debug} flags=() dir
      [[ $profile == release ]] && flags=(--release)
      INSTALL_HOW="by hand ($profile binaries, systemd/ units, sysusers.d, tmpfiles.d)"
      say "install tree: $INSTALL_HOW"
      if ((BUILD)); then
        (cd "$SRC" && cargo build "${flags[@]}" --locked -j2 -p abssd -p abssctl-client)
      fi
      dir=${CARGO_TARGET_DIR:-target}
      [[ $dir == /* ]] || dir=$SRC/$dir
      dir=$dir/$profile
      [[ -x $dir/abssd && -x $dir/abssctl ]] || die "no binaries in $dir (build first, or drop --no-build)"
      install -D -m 0755 "$dir/abssd" "$stage/usr/sbin/abssd"
      install -D -m 0755 "$dir/abssctl" "$stage/usr/bin/abssctl"
      local unit
      for unit in "$SRC"/systemd/*.service "$SRC"/systemd/*.socket; do
        install -D -m 0644 "$unit" "$stage/usr/lib/systemd/system/$(basename "$unit")"
      done
      [[ -f $SRC/systemd/abssctl.sysusers.conf ]] &&
        install -D -m 0644 "$SRC/systemd/abssctl.sysusers.conf" "$stage/usr/lib/sysusers.d/abssctl.conf"
      [[ -f $SRC/systemd/abssctl.tmpfiles.conf ]] &&
        install -D -m 0644 "$SRC/systemd/abssctl.tmpfiles.conf" "$stage/usr/lib/tmpfiles.d/abssctl.conf"
      ;;
    *) die "E2E_INSTALL must be auto, make or manual (not '$how')" ;;
  esac
  local must
  for must in abssd abssctl abssd.service abssd.socket; do
    [[ -n $(find "$stage" -name "$must" \( -type f -o -type l \) -print -quit) ]] ||
      die "the install tree has no '$must' ($INSTALL_HOW)"
  done
  (cd "$stage" && find . ! -type d | sort | sed 's/^\./    /')
}

# Copy the install tree into the running root and let systemd pick it up.
install_into_root() {
  ns tar -C /abssd-e2e/stage -cf /tmp/stage.tar .
  ns tar -C / -xpf /tmp/stage.tar --keep-directory-symlink --no-overwrite-dir
  ns systemctl daemon-reload
  # sysusers.d and tmpfiles.d files of the tree, by their path in the tree.
  SYSUSERS=() TMPFILES=()
  local f
  while IFS= read -r f; do SYSUSERS+=("${f#"$SHARE/stage"}"); done < <(find "$SHARE/stage" -path '*/sysusers.d/*.conf' | sort)
  while IFS= read -r f; do TMPFILES+=("${f#"$SHARE/stage"}"); done < <(find "$SHARE/stage" -path '*/tmpfiles.d/*.conf' | sort)
  for f in "${SYSUSERS[@]}"; do ns systemd-sysusers "$(basename "$f")"; done
  for f in "${TMPFILES[@]}"; do ns systemd-tmpfiles --create "$(basename "$f")"; done
  if [[ -n ${E2E_SERVICE_DROPIN:-} ]]; then
    ns mkdir -p /etc/systemd/system/abssd.service.d
    ns sh -c 'cat >/etc/systemd/system/abssd.service.d/e2e-extra.conf' <"$E2E_SERVICE_DROPIN"
    ns systemctl daemon-reload
    info "abssd.service drop-in from $E2E_SERVICE_DROPIN"
  fi
  ns systemctl cat abssd.service abssd.socket >"$LOG_DIR/units.txt"
  info "abssd.service: $(ns systemd-analyze security --no-pager abssd.service 2>/dev/null | tail -n 1 | sed 's/^→ //')"
}

# --- boot ------------------------------------------------------------------

boot() {
  local name=abssd-e2e-$$ cgroot own t0=$SECONDS
  cgroot=$(cgroup2_root)
  own=$(sed -n 's/^0:://p' /proc/self/cgroup)
  CG=${cgroot}${own%/}/$name
  mkdir "$CG"
  say "booting systemd in namespaces ($name; overlay on /, cgroup $CG)"
  # The subshell moves itself into the new cgroup (which the cgroup namespace
  # will be rooted at), then becomes unshare: killed if this script dies
  # (pdeathsig), and unshare kills systemd, and so the namespace, if it dies.
  (
    echo "$BASHPID" >"$CG/cgroup.procs"
    exec setpriv --pdeathsig KILL -- unshare --pid --fork --kill-child=KILL --mount --uts --ipc \
      --cgroup --propagation private "$SHARE/bin/boot.sh" "$WORK/base" "$SHARE" "$name"
  ) >"$WORK/boot.log" 2>&1 </dev/null &
  UNSHARE_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    SYSD_PID=$(awk '{print $1}' "/proc/$UNSHARE_PID/task/$UNSHARE_PID/children" 2>/dev/null) || true
    [[ -n $SYSD_PID ]] && break
    kill -0 "$UNSHARE_PID" 2>/dev/null || { cat "$WORK/boot.log" >&2; die "unshare exited during boot"; }
    sleep 0.1
  done
  [[ -n $SYSD_PID ]] || die "no PID 1 in the namespace after 10 s"
  local state=''
  for ((i = 0; i < 600; i++)); do
    if [[ $(readlink "/proc/$SYSD_PID/exe" 2>/dev/null) == */systemd ]]; then
      state=$(ns systemctl is-system-running 2>/dev/null) || true
      [[ $state == running || $state == degraded ]] && break
    fi
    kill -0 "$UNSHARE_PID" 2>/dev/null || { cat "$WORK/boot.log" >&2; die "the namespace ended during boot"; }
    sleep 0.1
  done
  if [[ $state != running && $state != degraded ]]; then
    cat "$WORK/boot.log" >&2
    ns systemctl list-jobs --no-pager >&2 || true
    die "systemd did not reach running within 60 s (state: ${state:-unknown})"
  fi
  SYSD_NS=$(readlink "/proc/$SYSD_PID/ns/pid")
  info "systemd is $state (pid $SYSD_PID on the host) after $((SECONDS - t0)) s"
  if [[ $state == degraded ]]; then
    ns systemctl --failed --no-pager --plain | sed 's/^/    /'
  fi
}

# --- the system under test -------------------------------------------------

# Free TCP ports on 127.0.0.1 (the network namespace is the host's): $1 from
# the ephemeral range, then $2 from the privileged one (below 1024, as real
# sites use 80 and 443: `nginx -t` binds them and needs CAP_NET_BIND_SERVICE).
free_ports() {
  /usr/bin/python3 - "$1" "${2:-0}" <<'EOF'
import random, socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
candidates = random.sample(range(600, 1024), 424)
for _ in range(int(sys.argv[2])):
    while True:
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", candidates.pop()))
        except OSError:
            s.close()
            continue
        socks.append(s)
        break
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

setup_system() {
  say "installing abssd into the booted system"
  install_into_root
  ns getent group abssctl >/dev/null ||
    die "the install created no 'abssctl' group (sysusers.d file missing or not applied)"

  say "users, configuration, nginx, instances"
  # Readers may connect to the socket; operators (group abssctl) may mutate.
  # With the shipped 0660/abssctl socket only operators could connect at all, so
  # the host opens reading to a second group: socket group in the daemon config
  # (abssd binding its own socket), SocketGroup= for abssd.socket, and the group
  # of /run/abssctl in a tmpfiles.d override of the shipped file.
  ns groupadd --system abssctl-readers
  ns useradd --no-create-home --user-group --shell /usr/sbin/nologin --groups abssctl,abssctl-readers e2e-op
  ns useradd --no-create-home --user-group --shell /usr/sbin/nologin --groups abssctl-readers e2e-reader
  ns useradd --no-create-home --user-group --shell /usr/sbin/nologin e2e-nobody
  ns mkdir -p /etc/abssctl /etc/systemd/system/abssd.socket.d /etc/tmpfiles.d
  ns sh -c "printf '%s\n' 'daemon:' '  idle_timeout: $IDLE_TIMEOUT' '  socket_group: abssctl-readers' >/etc/abssctl/config.yml"
  ns sh -c "printf '%s\n' '[Socket]' 'SocketGroup=abssctl-readers' >/etc/systemd/system/abssd.socket.d/e2e-readers.conf"
  local f
  for f in "${TMPFILES[@]}"; do
    # Same name in /etc/tmpfiles.d replaces the shipped file.
    ns sed -E 's#^([dDe][[:space:]]+/run/abssctl/?[[:space:]]+[^[:space:]]+[[:space:]]+[^[:space:]]+[[:space:]]+)abssctl([[:space:]]|$)#\1abssctl-readers\2#' \
      "/abssd-e2e/stage$f" >"$WORK/tmpfiles-override"
    ns sh -c "cat >'/etc/tmpfiles.d/$(basename "$f")'" <"$WORK/tmpfiles-override"
    ns systemd-tmpfiles --create "$(basename "$f")"
  done
  ns systemctl daemon-reload
  info "run dir: $(ns stat -c '%A %U:%G %n' /run/abssctl 2>/dev/null || echo 'not created by tmpfiles')"

  read -r PORT_A PORT_B NGINX_B NGINX_A < <(free_ports 3 1)
  ns /abssd-e2e/bin/instance.sh alpha 2 "$PORT_A" "$NGINX_A"
  info "alpha: 2 MB, abssctl-alpha.service on 127.0.0.1:$PORT_A, nginx on 127.0.0.1:$NGINX_A"
  local t=$SECONDS
  ns /abssd-e2e/bin/instance.sh bravo "$BIG_MB" "$PORT_B" "$NGINX_B"
  info "bravo: $(ns du -sh /srv/bravo | cut -f1) ($((SECONDS - t)) s to generate), abssctl-bravo.service on 127.0.0.1:$PORT_B, nginx on 127.0.0.1:$NGINX_B"
  ns nginx -t -q
  ns systemctl start nginx.service
  wait_http "$NGINX_A" e2e.txt "original alpha" || die "nginx does not proxy alpha"
  info "nginx.service: $(ns systemctl is-active nginx.service), nginx -t passes with the real /etc/nginx"
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

# --- scenarios ---------------------------------------------------------------

sc_activation() {
  ns systemctl stop abssd.service abssd.socket >/dev/null 2>&1 || true
  ns systemctl reset-failed abssd.service abssd.socket >/dev/null 2>&1 || true
  ns systemctl enable --now abssd.socket
  expect_eq "abssd.socket" active "$(is_active abssd.socket)"
  expect_eq "abssd.service before the first call" inactive "$(is_active abssd.service)"

  expect_rc 0 "first call, through the socket (abssctl daemon status, 15 s at most)" \
    as e2e-op timeout 15 abssctl daemon status --json
  local pid1 main
  pid1=$(json "$OUT" "d['pid']")
  main=$(unit_prop abssd.service MainPID)
  expect_eq "abssd.service after the first call" active "$(is_active abssd.service)"
  expect_eq "the daemon that answered is abssd.service's main process (pid)" "$main" "$pid1"

  local t0=$SECONDS
  if ! wait_state abssd.service inactive $((IDLE_TIMEOUT + 15)); then
    fail "abssd.service still $(is_active abssd.service) $((IDLE_TIMEOUT + 15)) s after the call (daemon.idle_timeout: $IDLE_TIMEOUT)"
  fi
  ok "abssd.service inactive again after $((SECONDS - t0)) s idle (idle_timeout $IDLE_TIMEOUT s)"
  expect_eq "it exited cleanly (Result)" success "$(unit_prop abssd.service Result)"
  expect_eq "abssd.socket still listening" active "$(is_active abssd.socket)"

  expect_rc 0 "next call starts it again" as e2e-op timeout 15 abssctl daemon status --json
  local pid2
  pid2=$(json "$OUT" "d['pid']")
  [[ $pid2 != "$pid1" ]] || fail "the second call was answered by the same process ($pid1)"
  ok "answered by a new abssd (pid $pid2, was $pid1)"
}

sc_restore() {
  ensure_daemon
  [[ $(ns curl -fsS "http://127.0.0.1:$PORT_A/e2e.txt") == "original alpha" ]] ||
    fail "alpha does not serve its original e2e.txt"
  ok "abssctl-alpha.service serves 'original alpha'"

  expect_rc 0 "operator: backup create alpha" ctl e2e-op backup create alpha -m "e2e: before the change" --json
  local id archive
  id=$(json "$OUT" "d['result']['id']")
  archive=$(json "$OUT" "d['result']['archive']")
  ns sh -c "cd '$(dirname "$archive")' && sha256sum -c --quiet '$(basename "$archive").sha256'" ||
    fail "sha256sum -c does not accept $archive.sha256"
  ok "archive $archive and its .sha256 check out"

  # The change: data edited, a file added, the site edited.
  ns sh -c 'echo "changed alpha" >/srv/alpha/data/e2e.txt; echo added >/srv/alpha/data/added.txt;
            echo "# edited after the backup" >>/etc/nginx/sites-available/abssctl-alpha.conf'
  [[ $(ns curl -fsS "http://127.0.0.1:$PORT_A/e2e.txt") == "changed alpha" ]] || fail "the change is not served"
  ok "the changed data is served"

  # nginx -t is the real one on the real /etc/nginx: a broken site elsewhere
  # makes the restore fail, and it is rolled back.
  trap 'ns rm -f /etc/nginx/sites-enabled/zz-e2e-broken.conf' EXIT
  ns sh -c 'echo "this is not nginx syntax" >/etc/nginx/sites-enabled/zz-e2e-broken.conf'
  expect_rc 4 "restore with a broken nginx configuration fails (service error)" \
    ctl e2e-op backup restore "$id" --yes --instance alpha --no-pre-backup --json
  grep -q nginx "$OUT" "$ERR" || fail "the error does not mention nginx" "$(cat "$OUT" "$ERR")"
  ok "the error names nginx: $(json "$OUT" "d['error']['message']" 2>/dev/null | cut -c1-150)"
  ns rm /etc/nginx/sites-enabled/zz-e2e-broken.conf
  wait_http "$PORT_A" e2e.txt "changed alpha" || fail "after the rollback alpha does not serve the changed data"
  expect_eq "abssctl-alpha.service after the rollback" active "$(is_active abssctl-alpha.service)"
  expect_no_leftovers alpha

  local pid0 start0
  pid0=$(unit_prop abssctl-alpha.service MainPID)
  start0=$(unit_prop abssctl-alpha.service ExecMainStartTimestampMonotonic)
  expect_rc 0 "operator: live restore of $id (--yes)" \
    ctl e2e-op backup restore "$id" --yes --instance alpha --json
  cp "$OUT" "$WORK/restore-alpha.json"
  local pid1 start1 stopped
  pid1=$(unit_prop abssctl-alpha.service MainPID)
  start1=$(unit_prop abssctl-alpha.service ExecMainStartTimestampMonotonic)
  stopped=$(unit_prop abssctl-alpha.service InactiveEnterTimestampMonotonic)
  expect_eq "abssctl-alpha.service after the restore" active "$(is_active abssctl-alpha.service)"
  ((stopped > start0 && start1 > stopped)) ||
    fail "the unit was not stopped and started again (start $start0 -> $start1, last stop $stopped, monotonic µs)"
  ok "the unit was stopped during the restore and started again (pid $pid0 -> $pid1)"
  expect_eq "result: unit_running" true "$(json "$OUT" "d['result']['unit_running']")"
  wait_http "$PORT_A" e2e.txt "original alpha" || fail "alpha does not serve the backup's e2e.txt"
  ok "the unit serves the backup's data ('original alpha')"
  [[ $(ns curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT_A/added.txt") == 404 ]] ||
    fail "added.txt, added after the backup, is still there"
  ok "added.txt (added after the backup) is gone"
  ns grep -q "edited after the backup" /etc/nginx/sites-available/abssctl-alpha.conf &&
    fail "the nginx site is not the backup's"
  ok "the nginx site is the backup's"
  expect_eq "result: nginx_reloaded (the site changed)" true "$(json "$OUT" "d['result']['nginx_reloaded']")"
  expect_eq "nginx.service" active "$(is_active nginx.service)"
  wait_http "$NGINX_A" e2e.txt "original alpha" || fail "nginx does not proxy the restored alpha"
  ok "nginx proxies the restored data"
  local pre
  pre=$(json "$OUT" "d['result']['pre_restore_backup']")
  [[ -n $pre && $pre != null ]] || fail "no pre-restore backup was taken"
  expect_rc 0 "backup show of the pre-restore backup" ctl e2e-op backup show "$pre" --json
  ns grep -q last_restored_at /var/lib/abssctl/registry/instances.yml ||
    fail "the registry entry has no last_restored_at"
  ok "registry: alpha has last_restored_at"
  expect_no_leftovers alpha
}

sc_authz() {
  ensure_daemon
  local n_before id
  expect_rc 0 "reader (not an operator): backup list" ctl e2e-reader backup list --json
  n_before=$(json "$OUT" "len(d['backups'])")
  id=$(json "$OUT" "d['backups'][0]['id'] if d['backups'] else ''")
  if [[ -z $id ]]; then
    expect_rc 0 "root: backup create alpha (for an id to restore)" ctl root backup create alpha --json
    id=$(json "$OUT" "d['result']['id']")
    n_before=$((n_before + 1))
  fi
  expect_rc 0 "reader: daemon status" ctl e2e-reader daemon status --json
  expect_eq "reader: caller_may_mutate" false "$(json "$OUT" "d['caller_may_mutate']")"
  expect_rc 3 "reader: backup create alpha is refused" ctl e2e-reader backup create alpha --json
  expect_eq "error kind" forbidden "$(json "$OUT" "d['error']['kind']")"
  expect_rc 3 "reader: backup restore is refused" ctl e2e-reader backup restore "$id" --yes --json
  expect_eq "error kind" forbidden "$(json "$OUT" "d['error']['kind']")"
  expect_rc 3 "reader: backup verify --all (writes the index) is refused" ctl e2e-reader backup verify --all --json
  expect_rc 0 "reader: backup list still works" ctl e2e-reader backup list --json
  expect_eq "number of backups (nothing was created)" "$n_before" "$(json "$OUT" "len(d['backups'])")"
  expect_rc 0 "operator: daemon status" ctl e2e-op daemon status --json
  expect_eq "operator: caller_may_mutate" true "$(json "$OUT" "d['caller_may_mutate']")"
  expect_rc 3 "a user without access to the socket: backup list is refused" ctl e2e-nobody backup list
}

# The stop and kill scenarios: restore bravo ($BIG_MB MB) and interrupt it once
# its staging directory exists. $1: stop | kill.
interrupted_restore() {
  local how=$1
  ensure_daemon
  local h_backup h_old id
  h_backup=$(treehash /srv/bravo)
  # The comparison below is byte for byte with the live tree, and bravo's unit
  # writes no SQLite: a plain copy. (A snapshot's database differs from the
  # live file in its header's change counter and SQLite version; the writer
  # scenario checks snapshots by their content.)
  expect_rc 0 "operator: backup create bravo" ctl e2e-op backup create bravo --consistency none --json
  id=$(json "$OUT" "d['result']['id']")
  info "backup $id: $(json "$OUT" "d['result']['size_bytes']") bytes"
  ns sh -c "echo 'changed bravo ($how)' >/srv/bravo/data/e2e.txt; echo '$how' >>/srv/bravo/config.json;
            rm -f /srv/bravo/data/server-files/account.sqlite; mkdir -p /srv/bravo/data/new-dir; echo x >/srv/bravo/data/new-dir/x"
  h_old=$(treehash /srv/bravo)
  [[ $h_old != "$h_backup" ]] || fail "the change did not change the tree"
  wait_http "$PORT_B" e2e.txt "changed bravo ($how)" || fail "bravo does not serve the change"

  local t0=$SECONDS
  (
    trap - ERR
    ctl e2e-op backup restore "$id" --yes --instance bravo --json
  ) >"$WORK/$how-client.out" 2>"$WORK/$how-client.err" &
  local client=$!
  # shellcheck disable=SC2064 # the pid is meant to be expanded now
  trap "kill -KILL $client 2>/dev/null || true" EXIT
  local i seen=''
  for ((i = 0; i < 1200; i++)); do
    if [[ -n $(ns find /srv -maxdepth 1 -name '.bravo.restore-*' -print -quit) ]]; then
      seen=1
      break
    fi
    kill -0 "$client" 2>/dev/null || break
    sleep 0.05
  done
  [[ -n $seen ]] || fail "the restore ended before it could be interrupted (make E2E_BIG_MB larger)" "$(cat "$WORK/$how-client.err")"
  ok "restore running: staging directory appeared after $((SECONDS - t0)) s"

  local t1=$SECONDS result
  if [[ $how == stop ]]; then
    ns timeout 200 systemctl stop abssd.service
    result=$(unit_prop abssd.service Result)
    ok "systemctl stop abssd.service returned after $((SECONDS - t1)) s (Result=$result)"
  else
    ns systemctl kill --signal=SIGKILL abssd.service
    ok "abssd.service killed with SIGKILL"
  fi
  local rc=0
  for ((i = 0; i < 600; i++)); do
    kill -0 "$client" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$client" 2>/dev/null; then
    kill -KILL "$client" 2>/dev/null || true
    info "the client was still waiting 60 s after the daemon went away (killed)"
  else
    wait "$client" || rc=$?
    info "the client exited $rc: $(json "$WORK/$how-client.out" "d.get('error', {}).get('message', 'finished')" 2>/dev/null | cut -c1-220)"
  fi
  local op
  op=$(grep -o 'op watch [0-9a-f-]*' "$WORK/$how-client.out" | awk '{print $3}' | head -n 1) || true

  next_activation
  if [[ $how == kill ]]; then
    local recovered
    recovered=$(json "$WORK/status-after.json" "[o.get('command') for o in d.get('recovered', [])]")
    info "daemon status: recovered $recovered"
  fi
  local h_now state
  h_now=$(treehash /srv/bravo)
  if [[ $h_now == "$h_backup" ]]; then
    state="all new (the backup's)"
  elif [[ $h_now == "$h_old" ]]; then
    state="all old (rolled back)"
  else
    treehash /srv/bravo --list >"$WORK/$how-now.list"
    fail "the instance is neither the old nor the restored tree" "$(head -c 600 "$WORK/$how-now.list")"
  fi
  ok "instance bravo is $state"
  expect_rc 0 "operator: backup show $id" ctl e2e-op backup show "$id" --json
  local restored
  restored=$(json "$OUT" "d['backup'].get('last_restored_at') or ''")
  if [[ $state == all\ new* ]]; then
    [[ -n $restored ]] || fail "the data is restored but the index entry of $id has no last_restored_at"
    ok "the index records the restore (last_restored_at $restored)"
  else
    [[ -z $restored ]] || fail "the data was rolled back but the index entry of $id says restored at $restored"
    ok "the index does not record a restore"
  fi
  wait_state abssctl-bravo.service active 15 || fail "abssctl-bravo.service is $(is_active abssctl-bravo.service)"
  ok "abssctl-bravo.service is active"
  local want="original bravo"
  [[ $state == all\ old* ]] && want="changed bravo ($how)"
  wait_http "$PORT_B" e2e.txt "$want" || fail "bravo does not serve '$want'"
  ok "it serves '$want'"
  expect_no_leftovers bravo
  expect_rc 0 "operator: backup list --instance bravo" ctl e2e-op backup list --instance bravo --json
  if [[ -n $op ]]; then
    # What the client advised; informational.
    run ctl e2e-op op watch "$op" --json
    info "as the client advised, abssctl op watch $op: exit $RC$( ((RC == 0)) || printf ': %s' "$(json "$OUT" "d['error']['message']" 2>/dev/null | cut -c1-160)")"
  fi
}

# Instance charlie: a small sample instance whose unit runs writer.py on
# user-files/group-e2e.sqlite (the sync server's group database) instead of a
# web server. Returns once the writer has committed a few transactions.
writer_instance() {
  ns python3 /abssd-e2e/bin/sample-instance.py / charlie --size-mb 1 --force --quiet
  ns sh -c 'cat >/etc/systemd/system/abssctl-charlie.service' <<'EOF'
[Unit]
Description=Actual Budget sync server (charlie), e2e stand-in writing its group database

[Service]
Type=simple
ExecStart=/usr/bin/python3 /abssd-e2e/bin/writer.py run /srv/charlie/data/user-files/group-e2e.sqlite

[Install]
WantedBy=multi-user.target
EOF
  ns systemctl daemon-reload
  # Enabled, as on a host (an unreferenced unit's timestamps go when it stops).
  ns systemctl enable --now --quiet abssctl-charlie.service
  local i
  for ((i = 0; i < 100; i++)); do
    (($(writer_check /srv/charlie/data/user-files/group-e2e.sqlite last_id 2>/dev/null || echo 0) > 20)) && return 0
    sleep 0.1
  done
  fail "the writer of charlie does not commit" "$(ns journalctl -u abssctl-charlie.service -n 10 --no-pager -o cat 2>&1)"
}

# writer_check DB [FIELD]: writer.py check of DB (its JSON, or one field).
writer_check() {
  local out
  out=$(ns /usr/bin/python3 /abssd-e2e/bin/writer.py check "$1") || return 1
  if [[ -n ${2:-} ]]; then
    printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
  else
    printf '%s\n' "$out"
  fi
}

# The database of backup $1, restored with --dest into /srv/restores/$2 (the
# instance root: config.json and data/),
# passes integrity_check and the writer's invariant, and holds rows.
expect_restored_db_sound() {
  local id=$1 dest=/srv/restores/$2 check
  expect_rc 0 "operator: restore $id --dest $dest" ctl e2e-op backup restore "$id" --dest "$dest" --json
  check=$WORK/$2-check.json
  writer_check "$dest/data/user-files/group-e2e.sqlite" >"$check" 2>&1 ||
    fail "writer.py check of the restored database failed" "$(cat "$check")" \
      "$(ns ls -la "$dest/data/user-files" 2>&1)" "create warnings: $CREATE_WARNINGS"
  info "restored database: $(cat "$check")"
  expect_eq "restored database: PRAGMA integrity_check" ok "$(json "$check" "d['integrity']")"
  expect_eq "restored database: as many credit rows as debit rows" \
    "$(json "$check" "d['rows']")" "$(json "$check" "d['credit_rows']")"
  expect_eq "restored database: sum(credit) = sum(debit)" "$(json "$check" "d['debit']")" "$(json "$check" "d['credit']")"
  (($(json "$check" "d['rows']") > 0)) || fail "the restored database holds no rows"
  ok "the restored database holds $(json "$check" "d['rows']") row pairs"
}

sc_writer() {
  ensure_daemon
  trap 'ns systemctl disable --now abssctl-charlie.service >/dev/null 2>&1 || true' EXIT
  writer_instance
  local db=/srv/charlie/data/user-files/group-e2e.sqlite
  ok "abssctl-charlie.service writes $db ($(writer_check "$db" last_id) transactions so far)"

  # --consistency stop: the dry run says so; the text output shows the downtime.
  local start0 start1 id
  expect_rc 0 "operator: backup create charlie --consistency stop --dry-run" \
    ctl e2e-op backup create charlie --consistency stop --dry-run
  grep -q "the unit will be stopped" "$OUT" || fail "the dry run does not say the unit will be stopped" "$(cat "$OUT")"
  ok "the dry run says the unit will be stopped"
  start0=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  expect_rc 0 "operator: backup create charlie --consistency stop" \
    ctl e2e-op backup create charlie --consistency stop
  grep -q "^  downtime: " "$OUT" || fail "the text output shows no downtime" "$(cat "$OUT")"
  ok "$(grep '^  downtime: ' "$OUT" | sed 's/^ *//')"
  id=$(sed -n 's/^Created backup \([^ ]*\)$/\1/p' "$OUT")
  CREATE_WARNINGS=$(grep -i warning "$OUT" "$ERR" || true)
  [[ -n $id ]] || fail "no backup id in the output" "$(cat "$OUT")"
  local stopped
  start1=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  stopped=$(unit_prop abssctl-charlie.service ActiveExitTimestampMonotonic)
  expect_eq "abssctl-charlie.service" active "$(is_active abssctl-charlie.service)"
  ((stopped > start0 && start1 > stopped)) ||
    fail "the unit was not stopped and started again (start $start0 -> $start1, left active at $stopped)" \
      "$(ns systemctl show abssctl-charlie.service -p InactiveEnterTimestampMonotonic -p ActiveExitTimestampMonotonic -p InactiveExitTimestampMonotonic 2>&1)"
  ok "the unit was stopped for the backup and started again"
  expect_rc 0 "operator: backup show $id" ctl e2e-op backup show "$id" --json
  expect_eq "metadata.consistency" stop "$(json "$OUT" "d['backup']['metadata']['consistency']")"
  expect_restored_db_sound "$id" charlie-stop

  # The default consistency (snapshot), while the writer runs on. (Second:
  # it is another branch's work; stop mode is checked whatever becomes of it.)
  local before after
  start0=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  before=$(writer_check "$db" last_id)
  expect_rc 0 "operator: backup create charlie (default consistency)" ctl e2e-op backup create charlie --json
  id=$(json "$OUT" "d['result']['id']")
  CREATE_WARNINGS=$(json "$OUT" "d['result'].get('warnings', [])")
  expect_eq "capture" snapshot "$(json "$OUT" "d['result']['capture']")"
  expect_eq "downtime_ms (none without a stop)" null "$(json "$OUT" "d['result'].get('downtime_ms')")"
  start1=$(unit_prop abssctl-charlie.service ExecMainStartTimestampMonotonic)
  expect_eq "abssctl-charlie.service" active "$(is_active abssctl-charlie.service)"
  [[ $start1 == "$start0" ]] || fail "the unit was restarted by a snapshot backup"
  after=$(writer_check "$db" last_id)
  ((after > before)) || fail "the writer made no progress across the backup ($before -> $after)"
  ok "the unit ran on, never restarted; the writer went on ($before -> $after transactions)"
  expect_restored_db_sound "$id" charlie-snapshot
  expect_no_leftovers charlie
}

sc_stop() { interrupted_restore stop; }
sc_kill() { interrupted_restore kill; }

describe() {
  case $1 in
    activation) echo "socket activation and idle exit" ;;
    restore) echo "live restore of a running instance, real nginx -t" ;;
    authz) echo "readers may list, only operators mutate" ;;
    stop) echo "systemctl stop abssd during a ${BIG_MB} MB restore" ;;
    kill) echo "SIGKILL to abssd during a ${BIG_MB} MB restore" ;;
    writer) echo "backups of an instance whose unit writes SQLite, restored and checked" ;;
  esac
}

run_scenario() {
  local name=$1 t0=$SECONDS since rc
  say "scenario $name: $(describe "$name")"
  since=$(ns date +%s)
  set +e
  (
    set -eE
    trap 'on_err $? "$BASH_COMMAND"' ERR
    "sc_$name"
  )
  rc=$?
  set -e
  DURATION[$name]=$((SECONDS - t0))
  if ((rc == 0)); then
    RESULT[$name]=pass
  else
    RESULT[$name]=fail
    printf '    --- journal since the scenario started (abssd, units, nginx) ---\n'
    ns journalctl --no-pager -o short-monotonic --since "@$((since - 1))" \
      -u abssd.service -u abssd.socket -u 'abssctl-*.service' -u nginx.service 2>&1 |
      tail -n 40 | sed 's/^/    | /'
  fi
  if [[ $name != activation && -n $MODE && $MODE != socket ]]; then
    REMARK[$name]="abssd started with systemctl start (socket activation not working)"
  fi
}

# --- main --------------------------------------------------------------------

# What a run killed with SIGKILL (no teardown) left: its namespace died with it
# (pdeathsig), but an empty cgroup and its work directory remain. Only those
# whose run.sh (the pid in the name) is gone are removed.
for stale in "$(cgroup2_root)"/abssd-e2e-* /tmp/abssd-e2e-*.*; do
  [[ -d $stale ]] || continue
  pid=${stale##*/abssd-e2e-}
  pid=${pid%%.*}
  if [[ ! $pid =~ ^[0-9]+$ ]] || kill -0 "$pid" 2>/dev/null; then
    continue
  fi
  if [[ $stale == /sys/* ]]; then
    find "$stale" -depth -type d -exec rmdir {} + 2>/dev/null || warn "stale cgroup $stale is not empty"
  else
    rm -rf "$stale"
  fi
done

WORK=$(mktemp -d "/tmp/abssd-e2e-$$.XXXXXX")
SHARE=$WORK/share
mkdir -p "$WORK/base" "$SHARE/bin" "$LOG_DIR"
rm -f "$LOG_DIR"/*.txt "$LOG_DIR"/*.log "$LOG_DIR"/operations.jsonl
install -m 0755 "$E2E"/boot.sh "$E2E"/system-setup.sh "$E2E"/instance.sh "$E2E"/treehash.py "$E2E"/writer.py \
  "$SRC/scripts/sample-instance.py" "$SHARE/bin/"

stage_product
boot
# Whatever hangs, the system is killed after E2E_TIMEOUT s: every command run
# inside it then ends, and the run fails and tears down as usual. The watchdog
# and its sleep die with this script (pdeathsig), and it kills only the PID 1 of
# our namespace (pids are reused quickly: pid_max may be 32768).
# shellcheck disable=SC2016 # expanded by the watchdog's bash
setpriv --pdeathsig KILL -- bash -c '
  setpriv --pdeathsig KILL -- sleep "$1"
  if [[ $(readlink "/proc/$2/ns/pid" 2>/dev/null) == "$3" ]]; then
    printf "\ne2e: watchdog: still running after %s s, killing the throwaway system\n" "$1" >&2
    kill -KILL "$2"
  fi' watchdog "${E2E_TIMEOUT:-600}" "$SYSD_PID" "$SYSD_NS" </dev/null &
WATCHDOG_PID=$!
disown "$WATCHDOG_PID" # (no "Killed" job report when teardown ends it)
setup_system

for s in "${SCENARIOS[@]}"; do
  if [[ $s != activation && -z $MODE ]]; then
    select_mode
  fi
  run_scenario "$s"
done

say "summary ($((SECONDS - T_START)) s in all)"
IFS=, read -r -a XFAIL <<<"${E2E_XFAIL:-}"
passed=0 failed=0 xfailed=0
for s in "${SCENARIOS[@]}"; do
  r=${RESULT[$s]}
  expected_fail=0
  [[ " ${XFAIL[*]} " == *" $s "* ]] && expected_fail=1
  if [[ $r == pass ]]; then
    passed=$((passed + 1))
    tag="${GREEN}PASS${RESET}"
    ((expected_fail)) && tag="${GREEN}PASS${RESET} (listed in E2E_XFAIL: remove it)"
  elif ((expected_fail)); then
    xfailed=$((xfailed + 1))
    tag="${YELLOW}XFAIL${RESET}"
  else
    failed=$((failed + 1))
    tag="${RED}FAIL${RESET}"
  fi
  printf '  %-11s %b  %3ss  %s%s\n' "$s" "$tag" "${DURATION[$s]}" "$(describe "$s")" "${REMARK[$s]:+ — ${REMARK[$s]}}"
done
info "install: $INSTALL_HOW; abssd started by: ${MODE:-socket activation only}"
if ((xfailed)); then
  printf 'e2e: %d passed, %d failed, %d skipped\n' "$passed" "$failed" "$xfailed"
else
  printf 'e2e: %d passed, %d failed\n' "$passed" "$failed"
fi
((failed == 0))
