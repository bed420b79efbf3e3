#!/bin/bash
# Runs in a Xen lab dom0 (scripts/xen-lab run 'bash test-xen/remus.sh') for
# test-xen/remus.test.ts: Tandem protects the running PVH guest on one host,
# as `xl remus ... localhost` would: `tandem secondary` (Xen's restore fed
# whole epochs) and `tandem primary` (Xen's save helper, xenstore suspend,
# output commit on the vif) in this dom0, a client ledger loading the guest's
# redis-server over its vif. After at least 100 checkpoints the primary is
# SIGKILLed and its domain destroyed; the secondary must fail over, and the
# ledger must find every acknowledged write. Prints "LAB key value" lines;
# asserts nothing itself. Every wait is bounded.
set -u
. "$(dirname "$0")/lab-lib.sh"

CHECKPOINTS=${REMUS_CHECKPOINTS:-100}
log() { tail -c "${2:-1500}" "$1" | tr '\n' ' '; }
epochs() { local n; n=$(grep -c '"msg":"epoch"' "$LAB_SCRATCH/primary.log" 2>/dev/null); echo "${n:-0}"; }

xl create "$LAB_GUEST_CFG"
say create_rc $?
say service_up_ms "$(wait_service 180)"
rcmd SET note written-before-protection > /dev/null
say counter_before "$(rcmd INCR counter)"
say run_id_before "$(run_id)"
domid=$(xl domid "$LAB_GUEST_NAME")

# One host: both nodes on loopback, where plain TCP is allowed (the two-host test uses certificates).
cat > "$LAB_SCRATCH/secondary.yaml" <<EOF
log_level: info
tls: { insecure: true }
heartbeat: { interval_ms: 200, timeout_ms: 3000 }
domain: { type: xen, service: "$LAB_GUEST_IP:$LAB_GUEST_PORT" }
secondary: { listen: "127.0.0.1:7700" }
EOF
cat > "$LAB_SCRATCH/primary.yaml" <<EOF
log_level: debug
tls: { insecure: true }
heartbeat: { interval_ms: 200, timeout_ms: 3000 }
domain: { type: xen, name: "$LAB_GUEST_NAME", service: "$LAB_GUEST_IP:$LAB_GUEST_PORT", suspend_timeout_ms: 5000 }
primary: { secondary: "127.0.0.1:7700", interval_ms: 200, ack_timeout_ms: 60000 }
monitor: { listen: "127.0.0.1:7790" }
EOF

# Protected: the secondary holds checkpoint 1 (the whole of RAM through Xen's helper).
t=$(now_ms)
start_pair 300
say protected_ms $(( $(now_ms) - t ))
say protected "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")"
logs() {
  say secondary_log "$(grep -v '"level":20' "$LAB_SCRATCH/secondary.log" | tail -c 2500 | tr '\n' ' ')"
  say primary_log "$(grep -v '"level":20' "$LAB_SCRATCH/primary.log" | tail -c 2500 | tr '\n' ' ')"
}
if ! grep -q 'protection: protected' "$LAB_SCRATCH/primary.log"; then
  # Nothing to fail over to: say why, clean up, and let the test fail on what is missing.
  logs
  kill -TERM $ppid $spid 2>/dev/null
  wait
  xl destroy "$LAB_GUEST_NAME"
  exit 0
fi

node dist/test-xen/ledger-probe.js "$LAB_GUEST_IP:$LAB_GUEST_PORT" > "$LAB_SCRATCH/ledger.out" 2>&1 &
lpid=$!
t=$(now_ms)
deadline=$((SECONDS + 600))
until [ "$(epochs)" -ge "$CHECKPOINTS" ] || [ $SECONDS -ge $deadline ] || ! kill -0 $ppid 2>/dev/null; do sleep 1; done
load_ms=$(( $(now_ms) - t ))
say load_ms $load_ms
say checkpoints "$(epochs)"
say primary_alive "$(kill -0 $ppid 2>/dev/null && echo yes || echo no)"
# The primary's own account of its epochs: pause and totals, for the figures.
grep '"msg":"epoch"' "$LAB_SCRATCH/primary.log" | node -e '
  const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const later = lines.filter((e) => e.epoch > 1);
  const med = (xs) => xs.length ? [...xs].sort((a, b) => a - b)[xs.length >> 1] : 0;
  console.log(`LAB epoch_pause_median_ms ${(med(later.map((e) => e.pauseUs)) / 1000).toFixed(1)}`);
  console.log(`LAB epoch_total_median_ms ${med(later.map((e) => e.totalMs)).toFixed(1)}`);
  console.log(`LAB epoch_pages_median ${med(later.map((e) => e.dirtyPages))}`);
  const paused = later.reduce((n, e) => n + e.pauseUs / 1000, 0);
  console.log(`LAB paused_ms_total ${paused.toFixed(0)}`);
'
# What the pause is made of: the xenstore suspend (the guest acknowledging, then shutting down for it) and the fast resume.
for what in suspend resume; do
  say "xen_${what}_median_ms" "$(grep "\"msg\":\"xen $what\"" "$LAB_SCRATCH/primary.log" | node -e '
    const ms = require("fs").readFileSync(0, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l).ms).sort((a, b) => a - b);
    console.log(ms.length ? ms[ms.length >> 1].toFixed(1) : "none");')"
done
say plug_before_kill "$(tc qdisc show dev "tdm$domid" 2>&1 | head -1)"
# The monitor works for a Xen domain as for the sim: its status and its metrics.
node -e '
  const get = (p) => fetch(`http://127.0.0.1:7790${p}`).then((r) => r.text());
  Promise.all([get("/api/status"), get("/metrics")]).then(([status, metrics]) => {
    const s = JSON.parse(status);
    console.log(`LAB monitor_role ${s.node}`);
    console.log(`LAB monitor_state ${s.state}`);
    console.log(`LAB monitor_last_epoch ${s.lastEpoch}`);
    console.log(`LAB monitor_epochs ${(metrics.match(/^tandem_epochs_total\{(?=[^}]*node="primary")(?=[^}]*domain="[^"]+")[^}]*\} (\d+)/m) ?? [])[1] ?? "none"}`);
  }, (e) => console.log(`LAB monitor_error ${e.message}`));
'

# The primary dies without a word, and its domain after it: the domain is
# destroyed only once the secondary has taken over and found it still here
# (as when its host's teardown is slow). It must wait for the domain to go,
# never run a second copy beside it.
kill -9 $ppid
t=$(now_ms)
deadline=$((SECONDS + 60))
until grep -q 'is still on this host: waiting' "$LAB_SCRATCH/secondary.log" || [ $SECONDS -ge $deadline ]; do sleep 0.2; done
say waited_for_name "$(grep -c 'is still on this host: waiting' "$LAB_SCRATCH/secondary.log")"
say listed_while_waiting "$(xl list | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
xl destroy "$LAB_GUEST_NAME"
say destroy_rc $?
kill -USR1 $lpid
say failover_service_ms "$(wait_service 180)"
say failover_ms $(( $(now_ms) - t ))
kill -TERM $lpid
wait $lpid
grep '^LAB ' "$LAB_SCRATCH/ledger.out"
say ledger_log "$(grep -v '^LAB ' "$LAB_SCRATCH/ledger.out" | tail -c 400 | tr '\n' ' ')"

say note_after "$(rcmd GET note)"
say run_id_after "$(run_id)"
say listed_after "$(xl list | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
say promoted "$(grep -o 'FAILED OVER[^"]*' "$LAB_SCRATCH/secondary.log" | head -1)"
logs

kill -TERM $spid
wait $spid
say secondary_exit $?
# The promoted guest is the guest now: it outlives the secondary's process.
say ping_after_secondary_exit "$(rcmd PING)"
ip link del "tdm$domid" 2>/dev/null

# Phase 2, output commit on the real vif with the acks held back: the
# promoted guest protected again, through a relay that holds every byte from
# the secondary (its acks) for DELAY ms. A reply the guest sends then reaches
# its client no sooner than DELAY ms after it was asked for, if and only if
# it leaves only once its epoch is acked; unprotected, it comes at once.
DELAY=1500
domid=$(xl domid "$LAB_GUEST_NAME")
node dist/test-xen/ping-probe.js oc_unprotected 5
node dist/test-xen/delay-relay.js 7800 7700 $DELAY > "$LAB_SCRATCH/relay.log" 2>&1 &
rpid=$!
sed -i 's/secondary: "127.0.0.1:7700"/secondary: "127.0.0.1:7800", heartbeat: "127.0.0.1:7701"/' "$LAB_SCRATCH/primary.yaml"
: > "$LAB_SCRATCH/secondary.log"
: > "$LAB_SCRATCH/primary.log"
start_pair 300
say oc_protected "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")"
say oc_delay_ms $DELAY
node dist/test-xen/ping-probe.js oc_delayed 8

# Phase 3, Xen's save helper killed in the middle of protection: a typed
# error, the guest resumed and serving (unprotected, said loudly), and
# protection taken up again with a new stream.
before=$(grep -c '"msg":"epoch"' "$LAB_SCRATCH/primary.log")
pkill -9 -f 'libxl-save-helper --save-domain'
say helper_killed $?
t=$(now_ms)
deadline=$((SECONDS + 60))
until grep -q 'protection: degraded' "$LAB_SCRATCH/primary.log" || [ $SECONDS -ge $deadline ]; do sleep 0.5; done
say helper_degraded "$(grep -o '"msg":"protection: degraded[^}]*' "$LAB_SCRATCH/primary.log" | head -1)"
say helper_error "$(grep '"level":50' "$LAB_SCRATCH/primary.log" | grep -o '"codes":\[[^]]*\]\|"msg":"[^"]*' | head -4 | tr '\n' ' ')"
say helper_ping "$(rcmd PING)"
say helper_ping_ms $(( $(now_ms) - t ))
say helper_primary_alive "$(kill -0 $ppid 2>/dev/null && echo yes || echo no)"
deadline=$((SECONDS + 300))
until [ "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")" -ge 2 ] || [ $SECONDS -ge $deadline ] || ! kill -0 $ppid 2>/dev/null; do sleep 1; done
say helper_reprotected "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")"
say helper_epochs_before "$before"

# Phase 4, a guest that never acknowledges a suspend request (paused by xl
# under Tandem's feet): after domain.suspend_timeout_ms a typed error, the
# request withdrawn, protection lost loudly; the guest, unpaused, answers,
# and protection is taken up again.
xl pause "$LAB_GUEST_NAME"
say noack_paused $?
t=$(now_ms)
deadline=$((SECONDS + 60))
until grep -q 'did not acknowledge the suspend request' "$LAB_SCRATCH/primary.log" || [ $SECONDS -ge $deadline ]; do sleep 0.5; done
say noack_error_ms $(( $(now_ms) - t ))
say noack_error "$(grep -o '"msg":"[^"]*did not acknowledge the suspend request[^"]*' "$LAB_SCRATCH/primary.log" | head -1)"
say noack_codes "$(grep 'did not acknowledge the suspend request' "$LAB_SCRATCH/primary.log" | grep -o '"codes":\[[^]]*\]' | head -1)"
xl unpause "$LAB_GUEST_NAME"
say noack_ping "$(rcmd PING)"
say noack_primary_alive "$(kill -0 $ppid 2>/dev/null && echo yes || echo no)"
deadline=$((SECONDS + 300))
until [ "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")" -ge 3 ] || [ $SECONDS -ge $deadline ] || ! kill -0 $ppid 2>/dev/null; do sleep 1; done
say noack_reprotected "$(grep -c 'protection: protected' "$LAB_SCRATCH/primary.log")"
logs
kill -TERM $ppid
wait $ppid
say phase3_primary_exit $?
# What it said while stopping (the `logs` above were taken before the signal).
say phase3_stop_log "$(grep -v '"level":20' "$LAB_SCRATCH/primary.log" | tail -c 1500 | tr '\n' ' ')"
kill -TERM $spid $rpid
wait $spid
say ping_after_stop "$(rcmd PING)"
# The stopped secondary's restore went with it: no half-built copy is left.
say listed_final "$(xl list | awk 'NR > 1 { print $1 }' | tr '\n' ' ')"
ip link del "tdm$domid" 2>/dev/null
xl destroy "$LAB_GUEST_NAME"
say final_destroy_rc $?
# dom0 has 768 MiB: a process the kernel killed for memory is a failure of its own, said as such.
say oom_kills "$(dmesg | grep -c 'Out of memory')"
say oom_lines "$(dmesg | grep 'Out of memory' | tail -2 | tr '\n' ' ')"
