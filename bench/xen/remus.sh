#!/bin/bash
# Runs in a Xen lab dom0 (scripts/xen-lab run 'bash bench/xen/remus.sh'),
# for bench/xen.ts: Xen's own `xl remus -F -n -d -i 200` and Tandem (Remus,
# output commit on, interval 200 ms) on the same PVH guest in the same
# boot, alternating, ROUNDS times each. Per run: checkpoints per second and
# the fraction of time the guest is stopped (one external sampler of Xen's
# domain info for both), then the failover: the protecting process SIGKILLed
# and the primary domain destroyed, to the first reply of the guest's
# service from the backup. An open-loop writer loads the guest throughout.
# Prints "LAB key value" lines (run-prefixed); asserts nothing.
set -u
. "$(dirname "$0")/../../test-xen/lab-lib.sh"

ROUNDS=${XEN_BENCH_ROUNDS:-2}
WINDOW=${XEN_BENCH_SECONDS:-30}
HB_TIMEOUT=1000


cat > "$LAB_SCRATCH/local-ssh" <<EOF
#!/bin/sh
exec node $PWD/dist/bench/xen/tap.js "$LAB_SCRATCH/tap.count" "\$@"
EOF
chmod +x "$LAB_SCRATCH/local-ssh"

cat > "$LAB_SCRATCH/secondary.yaml" <<EOF
log_level: info
tls: { insecure: true }
heartbeat: { interval_ms: 100, timeout_ms: $HB_TIMEOUT }
domain: { type: xen, service: "$LAB_GUEST_IP:$LAB_GUEST_PORT" }
secondary: { listen: "127.0.0.1:7700" }
EOF
cat > "$LAB_SCRATCH/primary.yaml" <<EOF
log_level: info
tls: { insecure: true }
heartbeat: { interval_ms: 100, timeout_ms: $HB_TIMEOUT }
domain: { type: xen, name: "$LAB_GUEST_NAME", service: "$LAB_GUEST_IP:$LAB_GUEST_PORT" }
primary: { secondary: "127.0.0.1:7700", interval_ms: 200, ack_timeout_ms: 60000 }
EOF

# Starts protection by $1 (xen|tandem); returns once the backup holds a first checkpoint.
protect() {
  case $1 in
    xen)
      echo 0 > "$LAB_SCRATCH/tap.count"
      xl remus -F -n -d -i 200 -s "$LAB_SCRATCH/local-ssh" "$LAB_GUEST_NAME" localhost > "$LAB_SCRATCH/xen.log" 2>&1 &
      ppid=$!
      deadline=$((SECONDS + 300))
      until [ "$(cat "$LAB_SCRATCH/tap.count" 2>/dev/null || echo 0)" -ge 1 ] 2>/dev/null || [ $SECONDS -ge $deadline ] || ! kill -0 $ppid 2>/dev/null; do sleep 0.5; done
      ;;
    tandem)
      start_pair 300
      ;;
  esac
}

for round in $(seq 1 "$ROUNDS"); do
  for sys in xen tandem; do
    run="${sys}${round}"
    # A fresh guest for every run: a domain that xl remus's failover restored did not acknowledge
    # Tandem's suspend requests in this lab, and each system should start from the same state.
    xl destroy "$LAB_GUEST_NAME" > /dev/null 2>&1
    xl create "$LAB_GUEST_CFG" > /dev/null 2>&1
    say "${run}_service_up_ms" "$(wait_service 180)"
    node dist/bench/xen/load.js "$LAB_GUEST_IP:$LAB_GUEST_PORT" &
    lpid=$!
    domid=$(xl domid "$LAB_GUEST_NAME")
    t=$(now_ms)
    protect $sys
    say "${run}_protect_ms" $(( $(now_ms) - t ))
    say "${run}_protecting" "$(kill -0 $ppid 2>/dev/null && echo yes || echo no)"
    if [ $sys = tandem ] && ! grep -q 'protection: protected' "$LAB_SCRATCH/primary.log"; then
      say "${run}_primary_log" "$(tail -c 3000 "$LAB_SCRATCH/primary.log" | tr '\n' ' ')"
      say "${run}_secondary_log" "$(tail -c 3000 "$LAB_SCRATCH/secondary.log" | tr '\n' ' ')"
    fi
    # The window: the sampler watches the guest for WINDOW seconds of protection.
    node dist/bench/xen/sampler.js "$run" "$domid" > "$LAB_SCRATCH/sampler.out" 2> "$LAB_SCRATCH/sampler.err" &
    sampler=$!
    deadline=$((SECONDS + 120))
    until grep -q sampling "$LAB_SCRATCH/sampler.err" || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
    sleep "$WINDOW"
    kill -TERM $sampler
    wait $sampler
    grep '^LAB ' "$LAB_SCRATCH/sampler.out"
    say "${run}_own_checkpoints" "$(if [ $sys = xen ]; then cat "$LAB_SCRATCH/tap.count"; else grep -c 'epoch [0-9]* applied\|"msg":"epoch"' "$LAB_SCRATCH/primary.log"; fi)"
    # The failover: the protector dies, with the save helper it ran (which would otherwise hold the
    # stream open: Xen's receiver fails over only at its end), and its domain.
    kill -9 $ppid
    pkill -9 -f 'libxl-save-helper --save-domain'
    t=$(now_ms)
    xl destroy "$LAB_GUEST_NAME"
    ws=$(wait_service 180)
    say "${run}_failover_ms" "$(if [ "$ws" = timeout ]; then echo timeout; else echo $(( $(now_ms) - t )); fi)"
    say "${run}_failover_answer" "$(rcmd PING)"
    if [ "$ws" = timeout ]; then
      say "${run}_stuck" "$(xl list | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
      kill $lpid 2>/dev/null
      exit 0
    fi
    kill $lpid 2>/dev/null
    if [ $sys = tandem ]; then
      say "${run}_promoted" "$(grep -o '"tookMs":[0-9.]*' "$LAB_SCRATCH/secondary.log" | head -1)"
      kill -TERM $spid
      wait $spid
      ip link del "tdm$domid" 2>/dev/null
    else
      say "${run}_xen_log" "$(grep -v '^xc: progress' "$LAB_SCRATCH/xen.log" | tail -c 300 | tr '\n' ' ')"
      # The receiver finishes the failover and exits.
      sleep 2
    fi
    say "${run}_listed" "$(xl list | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
  done
done
xl destroy "$LAB_GUEST_NAME"
say done 1
