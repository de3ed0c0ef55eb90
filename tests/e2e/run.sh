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
#   4. runs the scenarios (tests/e2e/scenarios/*.sh, on tests/e2e/lib.sh) as
#      unprivileged users, each with assertions that can fail; prints a
#      summary; powers the system off and removes everything.
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
#   schedule    timers: the shipped ones installed disabled; schedule enable
#               writes the calendar drop-in, systemd enables, starts and reads
#               it; a reader may show, not enable; a bad calendar changes
#               nothing; the backup service runs as an operator; disable
#   remote      off-host copies to an S3 server on 127.0.0.1: the shipped
#               sandbox (IPAddressDeny=any) lets remote test fail; with the
#               drop-in remote-network.conf it passes, and a backup is pushed,
#               deleted here, pulled back and verified
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

ALL_SCENARIOS=(activation restore authz stop kill writer schedule remote)
IDLE_TIMEOUT=3
BIG_MB=${E2E_BIG_MB:-50}

# shellcheck source=tests/e2e/lib.sh
source "$E2E/lib.sh"
# Each file of scenarios/ defines sc_NAME, and DESCRIPTION[NAME] for the
# summary, of its scenarios.
declare -A DESCRIPTION=()
for f in "$E2E"/scenarios/*.sh; do
  # shellcheck source=/dev/null
  source "$f"
done
for s in "${ALL_SCENARIOS[@]}"; do
  declare -F "sc_$s" >/dev/null && [[ -n ${DESCRIPTION[$s]:-} ]] ||
    die "scenario '$s' has no sc_$s or DESCRIPTION[$s] in $E2E/scenarios"
done

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
      for unit in "$SRC"/systemd/*.service "$SRC"/systemd/*.socket "$SRC"/systemd/*.timer; do
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
  # config.yml holds only the Python abssctl's keys: the unit dir systemd reads
  # (without it both tools default to runtime_dir/systemd). abssd's own settings,
  # the nginx dirs the instances' sites are in among them, go to abssd.yml.
  ns sh -c "printf '%s\n' 'systemd:' '  unit_dir: /etc/systemd/system' >/etc/abssctl/config.yml"
  ns sh -c "printf '%s\n' 'daemon:' '  idle_timeout: $IDLE_TIMEOUT' '  socket_group: abssctl-readers' \
    'nginx:' '  sites_available: /etc/nginx/sites-available' '  sites_enabled: /etc/nginx/sites-enabled' \
    'backups:' '  retention:' '    keep_last: 2' \
    >/etc/abssctl/abssd.yml"
  ns sh -c "printf '%s\n' '[Socket]' 'SocketGroup=abssctl-readers' >/etc/systemd/system/abssd.socket.d/e2e-readers.conf"
  # The scheduled-backup services reach the socket through its group too (they
  # run with the operator group, abssctl): README.md, "Scheduled backups".
  local svc
  for svc in abssctl-backup@.service abssctl-backup-all.service; do
    ns mkdir -p "/etc/systemd/system/$svc.d"
    ns sh -c "printf '%s\n' '[Service]' 'SupplementaryGroups=abssctl-readers' >'/etc/systemd/system/$svc.d/e2e-readers.conf'"
  done
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

# --- scenarios (scenarios/*.sh) ----------------------------------------------

describe() { printf '%s\n' "${DESCRIPTION[$1]}"; }

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
