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

# Tandem across the hosts: the guest now runs on host 2, whose `tandem
# primary` protects it to `tandem secondary` here on host 1, over mutual TLS
# on the link. After checkpoints under a client ledger, host 2's primary is
# SIGKILLed and the domain there destroyed: host 1 must promote the guest,
# and the client (here) reach it at its address.
certs=$LAB_SCRATCH/tls
tandem certs init "$certs" --nodes host1,host2 > "$LAB_SCRATCH/certs.out" 2>&1
say certs_rc $?
tar -C "$certs" -cf - . | lab-peer "mkdir -p $certs && tar -C $certs -xf -"
say certs_copied $?
cat > "$LAB_SCRATCH/secondary.yaml" <<YAML
log_level: info
tls: { dir: "$certs", name: host1 }
heartbeat: { interval_ms: 200, timeout_ms: 3000 }
domain: { type: xen, service: "$LAB_GUEST_IP:$LAB_GUEST_PORT" }
secondary: { listen: "$LAB_DOM0_IP:7700" }
YAML
lab-peer "cat > $LAB_SCRATCH/primary.yaml" <<YAML
log_level: debug
tls: { dir: "$certs", name: host2 }
heartbeat: { interval_ms: 200, timeout_ms: 3000 }
domain: { type: xen, name: "$LAB_GUEST_NAME", service: "$LAB_GUEST_IP:$LAB_GUEST_PORT" }
primary: { secondary: "$LAB_DOM0_IP:7700", interval_ms: 200, ack_timeout_ms: 60000 }
YAML
tandem secondary --config "$LAB_SCRATCH/secondary.yaml" > "$LAB_SCRATCH/secondary.log" 2>&1 &
spid=$!
sleep 2
rpid=$(lab-peer "setsid tandem primary --config $LAB_SCRATCH/primary.yaml > $LAB_SCRATCH/primary.log 2>&1 < /dev/null & echo \$!")
say remote_primary_pid "$rpid"
remote_epochs() { local n; n=$(lab-peer "grep -c '\"msg\":\"epoch\"' $LAB_SCRATCH/primary.log"); echo "${n:-0}"; }
t=$(now_ms)
deadline=$((SECONDS + 600))
until lab-peer "grep -q 'protection: protected' $LAB_SCRATCH/primary.log" || [ $SECONDS -ge $deadline ]; do sleep 2; done
say tandem_protected_ms $(( $(now_ms) - t ))
say tandem_protected "$(lab-peer "grep -c 'protection: protected' $LAB_SCRATCH/primary.log")"
node dist/test-xen/ledger-probe.js "$LAB_GUEST_IP:$LAB_GUEST_PORT" > "$LAB_SCRATCH/ledger.out" 2>&1 &
lpid=$!
deadline=$((SECONDS + 300))
until [ "$(remote_epochs)" -ge 30 ] || [ $SECONDS -ge $deadline ]; do sleep 2; done
say tandem_checkpoints "$(remote_epochs)"
lab-peer "kill -9 $rpid; xl destroy $LAB_GUEST_NAME"
say remote_kill_rc $?
t=$(now_ms)
kill -USR1 $lpid
say tandem_failover_service_ms "$(wait_service 180)"
say tandem_failover_ms $(( $(now_ms) - t ))
kill -TERM $lpid
wait $lpid
grep '^LAB ' "$LAB_SCRATCH/ledger.out"
say tandem_promoted "$(grep -o 'FAILED OVER[^"]*' "$LAB_SCRATCH/secondary.log" | head -1)"
say tandem_counter_after "$(rcmd INCR counter)"
say tandem_run_id_after "$(run_id)"
xl list "$LAB_GUEST_NAME" > /dev/null 2>&1
say tandem_listed_on_host1 $?
lab-peer "xl list $LAB_GUEST_NAME" > /dev/null 2>&1
say tandem_listed_on_host2 $?
say secondary_log "$(grep -v '"level":20' "$LAB_SCRATCH/secondary.log" | tail -c 2000 | tr '\n' ' ')"
say primary_log "$(lab-peer "grep -v '\"level\":20' $LAB_SCRATCH/primary.log | tail -c 1500" | tr '\n' ' ')"
kill -TERM $spid
wait $spid
# The dead primary's output buffer on host 2 (its vif went with the domain).
lab-peer 'for d in /sys/class/net/tdm*; do [ -e "$d" ] && ip link del "${d##*/}"; done; true'
xl destroy "$LAB_GUEST_NAME"
say destroy_rc $?
# Either dom0 killing a process for memory is a failure of its own, said as such.
say oom_kills "$(( $(dmesg | grep -c 'Out of memory') + $(lab-peer "dmesg | grep -c 'Out of memory'") ))"
say oom_lines "$(dmesg | grep 'Out of memory' | tail -1) $(lab-peer "dmesg | grep 'Out of memory' | tail -1")"
