#!/bin/bash
# Runs in host 1's dom0 of a two-host Xen lab (scripts/xen-lab run --hosts 2
# 'bash test-xen/two-hosts.sh') for test-xen/two-hosts.test.ts: host 2 is
# reachable and runs commands (lab-peer), and the PVH guest migrates live
# from host 1 to host 2 over the link between the hosts (xl migrate through
# lab-peer, as through ssh), keeping its state and its address. Prints
# "LAB key value" lines; the test asserts on them. Every wait is bounded.
set -u
. "$(dirname "$0")/lab-lib.sh"

say peer_ip "$LAB_PEER_IP"
say peer_hostname "$(lab-peer 'cat /proc/sys/kernel/hostname')"
lab-peer 'exit 7'
say peer_exit $?
say peer_xen_version "$(lab-peer "xl info" | awk -F': *' '$1 ~ /^xen_major/ { a = $2 } $1 ~ /^xen_minor/ { b = $2 } END { print a "." b }')"

xl create "$LAB_GUEST_CFG"
say create_rc $?
say service_up_ms "$(wait_service 180)"
for _ in 1 2 3; do counter=$(rcmd INCR counter); done
say counter_before "$counter"
say run_id_before "$(run_id)"

t=$(now_ms)
xl migrate -s "" "$LAB_GUEST_NAME" "lab-peer xl migrate-receive" 2> >(quiet_progress)
say migrate_rc $?
say migrate_ms $(( $(now_ms) - t ))
xl list "$LAB_GUEST_NAME" > /dev/null 2>&1
say listed_on_host1 $?
lab-peer "xl list $LAB_GUEST_NAME" > /dev/null 2>&1
say listed_on_host2 $?
say service_after_ms "$(wait_service 60)"
say counter_after "$(rcmd INCR counter)"
say run_id_after "$(run_id)"
lab-peer "xl destroy $LAB_GUEST_NAME"
say destroy_rc $?
