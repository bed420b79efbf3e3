#!/bin/sh
# /init of the lab guest's initramfs (a PVH domU on the Debian kernel): brings
# up its vif and runs a real redis-server, whose whole state lives in guest
# RAM, so a checkpoint, save or migration that loses memory shows up as a
# counter that went back. The address comes from the kernel command line
# (xl's extra = "... lab.ip=10.77.0.10/24 lab.port=6379"), so one image
# serves several guests.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /data

say() { echo "lab-guest: $*" > /dev/console; }

ip=10.77.0.10/24
port=6379
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    lab.ip=*) ip=${arg#lab.ip=} ;;
    lab.port=*) port=${arg#lab.port=} ;;
  esac
done

for m in /modules/*.ko; do insmod "$m" || say "insmod $m failed"; done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
ip addr add "$ip" dev eth0 || say "no eth0: is there a vif?"
ip link set eth0 up

say "redis-server on $ip port $port"
cd /data
# No persistence: the state is RAM only, which is what checkpointing protects.
redis-server --bind 0.0.0.0 --port "$port" --protected-mode no --save '' \
  --appendonly no --daemonize no --dir /data --logfile '' &
wait $!
say "redis-server exited with $?; the guest stays up without its service"
# PID 1 must not exit (the kernel would panic and hide what happened).
while true; do sleep 3600; done
