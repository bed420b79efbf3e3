#!/bin/sh
# Stage 1 of a Xen lab host's dom0: the /init of its busybox initramfs.
# It loads the few modules needed to reach the host (virtio-pci, 9p,
# overlay; baked into this initramfs in dependency order by
# scripts/xen-lab-lib/build.mjs), mounts the host's root read-only over 9p
# with a tmpfs overlay on top (dom0's userland is the host's, with nothing to
# build), mounts this host's read-write lab-io share, and runs stage 2
# (dom0-stage2.sh, from the project checkout on the host) chrooted into the
# overlay. When stage 2 returns it powers the machine off, so QEMU exits.
export PATH=/bin
labio=

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "xen-lab dom0: $*" > /dev/console; }

# Lab-io is where the orchestrator on the host reads our progress; before it
# is mounted, failures can only be told on the console (the orchestrator
# prints its tail when "dom0 ready" never comes).
fail() {
  say "FAILED: $*"
  [ -n "$labio" ] && echo "fail $*" >> /lab-io/state
  sync
  end_machine
}

# Power off (ACPI S5 through Xen: QEMU exits). Should that not end the
# machine, a reboot does: QEMU runs with -no-reboot. The orchestrator kills
# QEMU anyway if neither happens.
end_machine() {
  sync
  poweroff -f
  sleep 5
  reboot -f
  sleep 3600
}

for m in /modules/*.ko; do
  insmod "$m" || fail "insmod $m"
done

mkdir -p /host /lab-io /ovl /newroot
opts=trans=virtio,version=9p2000.L,msize=512000
# The virtio devices are probed when virtio_pci loads; give the transport a
# few seconds to register its mount tags before calling the mount a failure.
mounted=
for i in 1 2 3 4 5 6 7 8 9 10; do
  if mount -t 9p -o "$opts,ro" hostroot /host 2>/dev/null; then mounted=1; break; fi
  sleep 1
done
[ -n "$mounted" ] || fail "cannot mount the host root (9p tag hostroot)"
mount -t 9p -o "$opts" labio /lab-io || fail "cannot mount lab-io (9p tag labio)"
labio=1
echo "stage1" >> /lab-io/state

mount -t tmpfs -o mode=0755 tmpfs /ovl || fail "tmpfs"
mkdir -p /ovl/upper /ovl/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/ovl/upper,workdir=/ovl/work /newroot \
  || fail "cannot mount the overlay on the host root"
mkdir -p /newroot/lab-io
mount --bind /lab-io /newroot/lab-io || fail "cannot bind lab-io into the new root"

[ -r /lab-io/lab.env ] || fail "no /lab-io/lab.env"
. /lab-io/lab.env
[ -r "/newroot$LAB_STAGE2" ] || fail "stage 2 not found at $LAB_STAGE2"

chroot /newroot /bin/bash "$LAB_STAGE2"
say "stage 2 exited with $?; powering off"
end_machine
