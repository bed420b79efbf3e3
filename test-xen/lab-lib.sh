# Shared by the lab's dom0 scripts (sourced, not run): "LAB key value"
# output and bounded waits for the guest's redis-server.
# The guest rcmd talks to (a script may point it at another guest).
guest_ip=$LAB_GUEST_IP
# libxc's per-5% progress lines would fill the test log; keep the rest of xl's stderr.
quiet_progress() { grep -v '^xc: progress' >&2; }
say() { printf 'LAB %s %s\n' "$1" "$2"; }
now_ms() { date +%s%3N; }
# One redis command to the guest; redis-cli prints raw replies off a terminal.
rcmd() { timeout 10 redis-cli -h "$guest_ip" -p "$LAB_GUEST_PORT" "$@" 2>&1; }
# Waits up to $1 s for the guest's service; prints how long it took, or "timeout".
wait_service() {
  local start deadline
  start=$(now_ms)
  deadline=$((SECONDS + $1))
  until [ "$(rcmd PING)" = PONG ]; do
    if [ $SECONDS -ge $deadline ]; then echo timeout; return; fi
    sleep 1
  done
  echo $(( $(now_ms) - start ))
}
run_id() { rcmd INFO server | tr -d '\r' | awk -F: '$1 == "run_id" { print $2 }'; }
# Starts `tandem secondary` then `tandem primary` in this dom0 with
# $LAB_SCRATCH/secondary.yaml and primary.yaml, logging beside them (spid and
# ppid are their pids), and waits up to $1 s for the primary to say it
# protects the guest (or to die).
start_pair() {
  local deadline
  tandem secondary --config "$LAB_SCRATCH/secondary.yaml" > "$LAB_SCRATCH/secondary.log" 2>&1 &
  spid=$!
  sleep 2
  tandem primary --config "$LAB_SCRATCH/primary.yaml" > "$LAB_SCRATCH/primary.log" 2>&1 &
  ppid=$!
  deadline=$((SECONDS + $1))
  until grep -q 'protection: protected' "$LAB_SCRATCH/primary.log" || [ $SECONDS -ge $deadline ] || ! kill -0 $ppid 2>/dev/null; do sleep 0.5; done
}
