#!/usr/bin/env bash
# Configure the throwaway root before systemd boots in it (called by boot.sh
# after pivot_root, with ROOT=/: writes land in the overlay's tmpfs upper layer
# only). Never run it on a host's own root.
#
# * boots into abssd-e2e.target: basic.target and nothing of the host's
#   multi-user/graphical targets (no postgres, no getty, no timers);
# * masks every unit that would touch the shared kernel or host hardware
#   (udev, sysctl, modules, binfmt, pstore, time sync, kernel mounts), since the
#   kernel, the network namespace and the devices are the host's;
# * a minimal nginx.conf that includes only sites-enabled/* (the default site on
#   port 80 is removed): the network namespace is shared, so every listener of
#   the throwaway system binds 127.0.0.1 on a port run.sh picked.
#
# Usage: system-setup.sh ROOT NAME
set -euo pipefail

root=${1%/} name=$2
etc=$root/etc/systemd/system

[[ -d /abssd-e2e && $(stat -f -c %T /) == overlayfs ]] ||
  { echo "system-setup.sh: only inside the e2e namespace (overlay root, /abssd-e2e)" >&2; exit 1; }

# Start from a host without abssd: whatever an earlier install left on the host
# (binaries, units, enablement links, state, instances) is hidden in the
# overlay (whiteouts in the upper layer; the host keeps its files).
shopt -s nullglob
rm -rf "$root"/srv/* "$root"/etc/abssctl "$root"/var/lib/abssctl "$root"/var/log/abssctl \
  "$root"/usr/local/bin/abssctl "$root"/usr/local/sbin/abssd "$root"/usr/{sbin/abssd,bin/abssctl} \
  "$root"/{usr/lib,etc}/systemd/system/abssd.* "$root"/etc/systemd/system/*.wants/abssd.* \
  "$root"/etc/systemd/system/abssctl-* "$root"/etc/nginx/sites-{available,enabled}/abssctl-* \
  "$root"/{usr/lib,etc}/{tmpfiles,sysusers}.d/abssctl.conf
shopt -u nullglob

mkdir -p "$etc"
cat >"$etc/abssd-e2e.target" <<'EOF'
[Unit]
Description=abssd end-to-end test system
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
ln -sfn abssd-e2e.target "$etc/default.target"

masked=(
  # devices and the kernel are the host's
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service
  systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service
  systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
  dev-hugepages.mount sys-fs-fuse-connections.mount sys-kernel-config.mount
  sys-kernel-debug.mount sys-kernel-tracing.mount systemd-pstore.service
  systemd-journald-audit.socket systemd-random-seed.service
  # clocks, disks, file systems
  systemd-timesyncd.service systemd-time-wait-sync.service systemd-repart.service
  systemd-remount-fs.service systemd-fsck-root.service fstrim.service fstrim.timer
  e2scrub_reap.service e2scrub_all.timer
  # first boot, TPM
  systemd-firstboot.service systemd-machine-id-commit.service
  systemd-pcrphase.service systemd-pcrphase-sysinit.service systemd-pcrphase-initrd.service
  # logins and consoles
  getty.target getty@tty1.service console-getty.service container-getty@.service
  serial-getty@.service getty-static.service
  # scheduled jobs and anything else the host enables
  timers.target apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer man-db.timer
  cron.service anacron.service postgresql.service ssh.service
  # network management: the network namespace is the host's
  systemd-networkd.service systemd-networkd.socket systemd-resolved.service
  networking.service NetworkManager.service
)
for unit in "${masked[@]}"; do
  ln -sfn /dev/null "$etc/$unit"
done

# nginx: minimal, only our sites.
if [[ -d $root/etc/nginx ]]; then
  mkdir -p "$root/etc/nginx/sites-available" "$root/etc/nginx/sites-enabled"
  find "$root/etc/nginx/sites-enabled" -mindepth 1 -delete
  cat >"$root/etc/nginx/nginx.conf" <<'EOF'
# abssd e2e: only the sites in sites-enabled, each on 127.0.0.1.
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
events { worker_connections 64; }
http {
  access_log off;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  include /etc/nginx/sites-enabled/*;
}
EOF
fi

echo "$name" >"$root/etc/hostname"
