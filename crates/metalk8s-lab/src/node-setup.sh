#!/bin/sh
# Prepares the debootstrapped root filesystem of a lab node; runs chrooted into it.
# Part of the image recipe: any change here gives a new image tag.
set -eu

# A real server gets security and point-release updates too.
cat > /etc/apt/sources.list <<'SOURCES'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES

# Every node must get its own identity: systemd fills an empty machine-id at boot, and
# ssh.service (below) generates host keys that do not exist yet.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
cat > /etc/systemd/system/ssh.service.d/metalk8s-lab.conf <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/usr/bin/ssh-keygen -A
ExecStartPre=/usr/sbin/sshd -t
UNIT
ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ssh.service

# Root logs in with the lab key only.
cat > /etc/ssh/sshd_config.d/metalk8s-lab.conf <<'SSHD'
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
SSHD
passwd -l root >/dev/null
install -d -m 0700 /root/.ssh

# Docker mounts /proc/sys read-only; a real server's kernel parameters are writable, and
# the sysctl resource must be able to repair them. Network parameters are per network
# namespace, so a node only changes its own.
cat > /etc/systemd/system/metalk8s-lab-proc-sys.service <<'UNIT'
[Unit]
Description=Make /proc/sys writable as on a real server
DefaultDependencies=no
Before=sysinit.target systemd-sysctl.service

[Service]
Type=oneshot
ExecStart=/bin/mount -o remount,rw /proc/sys
RemainAfterExit=yes

[Install]
WantedBy=sysinit.target
UNIT
mkdir -p /etc/systemd/system/sysinit.target.wants
ln -sf /etc/systemd/system/metalk8s-lab-proc-sys.service /etc/systemd/system/sysinit.target.wants/metalk8s-lab-proc-sys.service

# Units that make no sense in a container (no console, read-only /sys, no
# device-mapper) or that would wake up during tests: masked so boot is fast and clean.
for unit in \
    getty.target getty@.service serial-getty@.service console-getty.service \
    systemd-remount-fs.service systemd-firstboot.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
    fstrim.timer lvm2-monitor.service lvm2-lvmpolld.socket dm-event.socket \
    dm-event.service
do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done

# Nodes run `apt-get update` before installing anything, as on a fresh server.
apt-get clean
rm -rf /var/lib/apt/lists/*
