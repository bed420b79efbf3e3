#!/bin/bash
# Stage 2 of a Xen lab host's dom0, run by stage 1 (dom0-init.sh) chrooted
# into the overlay of the host's root, so every tool here is the host's own
# (xen-utils-4.17, iproute2, bash, node). It starts Xen's toolstack
# (xenstored, xen-init-dom0, xenconsoled), makes the lab bridge, tells the
# orchestrator "ready" in /lab-io/state, then plays its role:
#   run  (host 1): waits for /lab-io/go, runs /lab-io/command in the project
#        checkout with stdout/stderr into /lab-io/stdout and /lab-io/stderr,
#        and writes "exit STATUS";
#   peer (host 2 of --hosts 2): serves lab-peer commands until /lab-io/stop.
# Every line it appends to /lab-io/state is read by scripts/xen-lab-lib/lab.mjs.
set -u
. /lab-io/lab.env
exec >>/lab-io/dom0.log 2>&1
# Xen's tools first: /usr/sbin/xl is Debian's wrapper that picks them by the
# running hypervisor's version; calling them directly skips that step.
export PATH=/lab-io/bin:/usr/lib/xen-4.17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root

state() { echo "$*" >> /lab-io/state; }
fail() {
  state "fail $*"
  echo "xen-lab dom0: FAILED: $*" > /dev/console
  exit 1
}

# Bounded wait for a condition (a shell command); $1 seconds, $2 what.
wait_for() {
  local secs=$1 what=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.2
  done
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# What udev would add to a devtmpfs (bash's process substitution needs /dev/fd).
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
# A fresh /run: the host's pid files and sockets must not show through.
# /tmp stays the overlay's (writes land in its tmpfs) because the project
# or the lab's cache may live under the host's /tmp.
mount -t tmpfs tmpfs /run

# The guest kernel's modules are on the host, unpacked in the lab's cache;
# bind them where modprobe looks, and have the kernel's own module requests
# (tc asking for sch_plug, ...) use busybox's modprobe, which needs no
# modules.dep.bin (the host may not have kmod at all).
mkdir -p "/lib/modules/$LAB_KVER"
mount --bind "$LAB_MODULES" "/lib/modules/$LAB_KVER" || fail "cannot bind the kernel modules"
echo /lab-io/bin/modprobe > /proc/sys/kernel/modprobe
# The last five are output commit's (IFB, plug qdisc, clsact, mirred, matchall):
# loaded here because busybox's modprobe cannot resolve the aliases
# ("rtnl-link-ifb") the kernel asks for on its own.
for m in xenfs xen-evtchn xen-privcmd xen-gntdev xen-gntalloc xen-netback xen-blkback bridge tun ifb sch_plug sch_ingress act_mirred cls_matchall $LAB_EXTRA_MODULES; do
  /lab-io/bin/modprobe "$m" || fail "modprobe $m"
done
state "modules"
mount -t xenfs xenfs /proc/xen || fail "cannot mount xenfs (is this dom0 under Xen?)"

# Scratch space for save files and the like: dom0's own RAM. Not the 9p
# share: libxc writes guest pages to the save fd straight from their foreign
# mapping, and a 9p file refuses those buffers (xl save fails with EFAULT,
# "Failed to write page data to stream (14 = Bad address)"). A 128 MiB
# guest's save file is about 130 MiB; this leaves dom0 room for two.
mkdir -p "$LAB_SCRATCH"
mount -t tmpfs -o size=320m,mode=1777 tmpfs "$LAB_SCRATCH" || fail "cannot mount the scratch tmpfs"
mkdir -p /run/xen /run/xenstored /var/lib/xen /var/lib/xenstored /var/log/xen/console
echo "lab-host$LAB_HOST_INDEX" > /proc/sys/kernel/hostname

xenstored --pid-file /run/xenstored.pid || fail "xenstored did not start"
wait_for 30 "the xenstored socket" test -S /run/xenstored/socket
xen-init-dom0 || fail "xen-init-dom0"
xenconsoled --pid-file=/run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console || fail "xenconsoled did not start"
xl info > /lab-io/xl-info || fail "xl info does not answer"
state "toolstack"

# The lab network: a bridge with dom0's address; guests' vifs join it
# (vif = ['bridge=xenbr0']). With two hosts the NIC joined to the other
# host's QEMU over a socket netdev is a port of the same bridge, so both
# dom0s and a guest on either host share one segment.
ip link set lo up
ip link add xenbr0 type bridge || fail "cannot create xenbr0"
ip link set xenbr0 type bridge stp_state 0 forward_delay 0
ip addr add "$LAB_DOM0_IP/24" dev xenbr0
ip link set xenbr0 up
if [ "$LAB_HOSTS" -gt 1 ]; then
  nic=
  for dev in /sys/class/net/*; do
    name=${dev##*/}
    [ -e "$dev/device" ] && { nic=$name; break; }
  done
  [ -n "$nic" ] || fail "no NIC for the link between the hosts"
  ip link set "$nic" master xenbr0 || fail "cannot add $nic to xenbr0"
  ip link set "$nic" up
fi
state "network"

cd "$LAB_PROJECT" || fail "project checkout $LAB_PROJECT not visible in dom0"

if [ "$LAB_ROLE" = peer ]; then
  # Host 2: a command server for lab-peer on host 1 (scripts/xen-lab-lib/peer.mjs).
  "$LAB_NODE" "$LAB_PEER_SCRIPT" serve "$LAB_DOM0_IP" "$LAB_PEER_PORT" /lab-io/peer-listening &
  wait_for 120 "the lab-peer server" test -e /lab-io/peer-listening
  state "ready"
  # The orchestrator writes stop once host 1's command is over; it kills
  # this QEMU itself if the stop never comes, so this wait is bounded there.
  while [ ! -e /lab-io/stop ]; do sleep 0.5; done
  state "stopped"
  exit 0
fi

if [ "$LAB_HOSTS" -gt 1 ]; then
  # Host 2's dom0 reported ready to the orchestrator before it wrote go;
  # check that the link between the hosts carries traffic from here too.
  wait_for 60 "host 2 ($LAB_PEER_IP) over the link" \
    timeout 3 bash -c 'exec 3<>"/dev/tcp/$LAB_PEER_IP/$LAB_PEER_PORT"'
fi
state "ready"
while [ ! -e /lab-io/go ]; do sleep 0.2; done
state "running"
bash -c "$(cat /lab-io/command)" < /dev/null > /lab-io/stdout 2> /lab-io/stderr
rc=$?
sync
state "exit $rc"
