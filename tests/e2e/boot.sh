#!/usr/bin/env bash
# Inside fresh namespaces, build a throwaway root and exec systemd in it as PID 1.
#
# Not run by hand: tests/e2e/run.sh starts it as
#
#   unshare --pid --fork --mount --uts --ipc --cgroup --propagation private \
#       tests/e2e/boot.sh BASE SHARE NAME
#
# BASE   an empty host directory: a tmpfs is mounted on it (in this mount namespace
#        only) that holds the overlay's upper and work directories, so every write
#        of the booted system lands in memory and disappears with the namespace.
# SHARE  a host directory bind-mounted at /abssd-e2e inside: the harness puts the
#        staged install tree and its helpers there, systemd's console goes to
#        SHARE/console.log.
# NAME   the container name (systemd's $container) and host name.
#
# The root is an overlay with lowerdir=/ (the host's root filesystem, read-only
# through the overlay), proc is a new instance, /sys is the host's read-only with
# a cgroup2 mount rooted at the cgroup run.sh prepared (cgroup namespace), /dev is
# a minimal tmpfs (null, zero, full, random, urandom, tty, a private devpts), /run
# and /tmp are fresh tmpfs. The host's own /, /tmp and /dev are never written:
# systemd must never run against them (its tmpfiles service would empty /tmp).
set -euo pipefail

base=$1 share=$2 name=$3

die() { printf 'boot.sh: %s\n' "$*" >&2; exit 1; }

[[ $$ -eq 1 ]] || die "must be PID 1 of a new PID namespace (run through unshare --pid --fork)"
[[ -d $base && -d $share ]] || die "BASE and SHARE must be existing directories"

# Nothing below may propagate back to the host, whatever unshare was told.
mount --make-rprivate /

mount -t tmpfs -o mode=0755,size=8G abssd-e2e "$base"
mkdir -p "$base/upper" "$base/work" "$base/root"
mount -t overlay -o "lowerdir=/,upperdir=$base/upper,workdir=$base/work" abssd-e2e-root "$base/root"
root=$base/root

# /proc: a new instance for the new PID namespace; /proc/sys read-only so that
# nothing in the throwaway system (systemd-sysctl, a unit's sysctl) sets the
# host kernel's values.
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$root/proc/sys"

# /sys: the host's, read-only (no udev, no writes to kernel objects), and under
# it a cgroup2 hierarchy that, mounted from inside the cgroup namespace, is
# rooted at the sub-cgroup run.sh moved us into: systemd manages only that.
mount --rbind /sys "$root/sys"
if mountpoint -q "$root/sys/fs/cgroup"; then
  umount -R "$root/sys/fs/cgroup"
fi
mount -o remount,bind,ro,nosuid,nodev,noexec "$root/sys"
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"

# /dev: only the basic nodes, bound from the host, and a private devpts.
mount -t tmpfs -o mode=0755,nosuid,size=4m dev "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev shm "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
# The console is a file in SHARE: systemd's status lines and anything a unit
# sends to the console end up there, readable from the host.
: >"$share/console.log"
touch "$root/dev/console"
mount --bind "$share/console.log" "$root/dev/console"

mount -t tmpfs -o mode=0755,nosuid,nodev,size=512m run "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=2g tmp "$root/tmp"

mkdir -p "$root/abssd-e2e"
mount --bind "$share" "$root/abssd-e2e"

hostname "$name"

cd "$root"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot

# The system configuration of the throwaway root, before systemd reads it:
# see system-setup.sh. Run only now, inside the new root, so that no path it
# writes or removes can lead out of the overlay (an absolute symlink on the
# host's / resolves inside it now).
/abssd-e2e/bin/system-setup.sh / "$name"

exec env -i container="$name" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --unit=abssd-e2e.target --show-status=no \
  </dev/null >/dev/console 2>&1
