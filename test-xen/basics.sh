#!/bin/bash
# Runs in a Xen lab dom0 (scripts/xen-lab run 'bash test-xen/basics.sh') for
# test-xen/basics.test.ts: Xen answers, the PVH guest starts, its redis-server
# answers over the vif, and xl save / xl restore keep its state; the same
# plain save/restore for the PV guest. Prints
# "LAB key value" lines; the test asserts on them, so this script asserts
# nothing itself and goes on after a failed step (later values then show
# what state things were left in). Every wait is bounded.
set -u
. "$(dirname "$0")/lab-lib.sh"

xl info > "$LAB_SCRATCH/xl-info"
say xl_info_rc $?
say xen_version "$(awk -F': *' '$1 ~ /^xen_major/ { a = $2 } $1 ~ /^xen_minor/ { b = $2 } END { print a "." b }' "$LAB_SCRATCH/xl-info")"

t=$(now_ms)
xl create "$LAB_GUEST_CFG"
say create_rc $?
say create_ms $(( $(now_ms) - t ))
xl list "$LAB_GUEST_NAME" > /dev/null
say listed_after_create $?
say service_up_ms "$(wait_service 180)"

say set_reply "$(rcmd SET note written-before-save)"
for _ in 1 2 3; do counter=$(rcmd INCR counter); done
say counter_before "$counter"
say note_before "$(rcmd GET note)"
say run_id_before "$(run_id)"

save=$LAB_SCRATCH/lab-guest.save
t=$(now_ms)
xl save "$LAB_GUEST_NAME" "$save" 2> >(quiet_progress)
say save_rc $?
say save_ms $(( $(now_ms) - t ))
say save_bytes "$(stat -c %s "$save" 2>/dev/null || echo 0)"
say save_magic_hex "$(head -c 32 "$save" | od -An -v -tx1 | tr -d ' \n')"
xl list "$LAB_GUEST_NAME" > /dev/null 2>&1
say listed_after_save $?

t=$(now_ms)
xl restore "$save" 2> >(quiet_progress)
say restore_rc $?
say restore_ms $(( $(now_ms) - t ))
say service_back_ms "$(wait_service 120)"
say note_after "$(rcmd GET note)"
say counter_after "$(rcmd INCR counter)"
say run_id_after "$(run_id)"
rm -f "$save"

# Tandem in libxl's place: tandem save --xen drives Xen's save helper itself
# (xenstore suspend, the helper's callbacks, the libxl framing, the xl header);
# Xen's xl restore and verify-stream-v2 read what it wrote.
rcmd SET note written-before-tandem-save > /dev/null
say tcounter_before "$(rcmd INCR counter)"
domid=$(xl domid "$LAB_GUEST_NAME")
tsave=$LAB_SCRATCH/tandem.save
t=$(now_ms)
tandem save --xen "$domid" --out "$tsave" > "$LAB_SCRATCH/tsave.out" 2>&1
say tsave_rc $?
say tsave_ms $(( $(now_ms) - t ))
say tsave_out "$(tail -c 800 "$LAB_SCRATCH/tsave.out" | tr '\n' ' ')"
say tsave_magic_hex "$(head -c 32 "$tsave" | od -An -v -tx1 | tr -d ' \n')"
xl list "$LAB_GUEST_NAME" > /dev/null 2>&1
say listed_after_tsave $?
tandem stream inspect "$tsave" > "$LAB_SCRATCH/tinspect.out" 2>&1
say tinspect_rc $?
say tinspect_out "$(head -c 600 "$LAB_SCRATCH/tinspect.out" | tr '\n' ' ')"
PYTHONPATH=/usr/lib/xen-4.17/lib/python /usr/bin/python3 /usr/lib/xen-4.17/bin/verify-stream-v2 -f xl -i "$tsave" > "$LAB_SCRATCH/tverify.out" 2>&1
say tverify_rc $?
say tverify_out "$(tail -c 400 "$LAB_SCRATCH/tverify.out" | tr '\n' ' ')"
t=$(now_ms)
xl restore "$tsave" 2> >(quiet_progress)
say trestore_rc $?
say trestore_ms $(( $(now_ms) - t ))
say tservice_back_ms "$(wait_service 120)"
say tnote_after "$(rcmd GET note)"
say tcounter_after "$(rcmd INCR counter)"
say trun_id_after "$(run_id)"
rm -f "$tsave"

# Output commit on the guest's real vif (Tandem's NetBuffer device: IFB,
# mirred redirect, plug qdisc driven over rtnetlink by the co-process).
node dist/test-xen/netbuf-probe.js "$(xl domid "$LAB_GUEST_NAME")" > "$LAB_SCRATCH/nb.out" 2>&1
say nb_rc $?
grep '^LAB ' "$LAB_SCRATCH/nb.out"
say nb_log "$(grep -v '^LAB ' "$LAB_SCRATCH/nb.out" | tail -c 400 | tr '\n' ' ')"

# A Remus stream from the running guest: tandem save --xen --checkpoints runs
# the engine's checkpoint session over Xen's helper in Remus mode (xenstore
# suspend and fast resume every epoch); the guest runs on. Then the primary
# "dies" (xl destroy) and xl migrate-receive -r -e fails over from the
# stream, which ends right after its last checkpoint.
rcmd SET note written-before-remus > /dev/null
say rcounter_before "$(rcmd INCR counter)"
domid=$(xl domid "$LAB_GUEST_NAME")
rstream=$LAB_SCRATCH/remus.stream
t=$(now_ms)
tandem save --xen "$domid" --checkpoints 5 --out "$rstream" > "$LAB_SCRATCH/rsave.out" 2>&1
say rsave_rc $?
say rsave_ms $(( $(now_ms) - t ))
say rsave_out "$(tail -c 800 "$LAB_SCRATCH/rsave.out" | tr '\n' ' ')"
xl list "$LAB_GUEST_NAME" > /dev/null 2>&1
say listed_after_rsave $?
say rping_after_rsave "$(rcmd PING)"
tandem stream inspect "$rstream" > "$LAB_SCRATCH/rinspect.out" 2>&1
say rinspect_rc $?
say rinspect_end "$(grep -o 'ended after checkpoint [0-9]*[^.]*' "$LAB_SCRATCH/rinspect.out" | head -1)"
xl destroy "$LAB_GUEST_NAME"
say rdestroy_rc $?
t=$(now_ms)
timeout 300 xl migrate-receive -r -e < "$rstream" > "$LAB_SCRATCH/rreceive.out" 2>&1
say rreceive_rc $?
say rreceive_ms $(( $(now_ms) - t ))
say rreceive_out "$(grep -v '^xc: progress' "$LAB_SCRATCH/rreceive.out" | tail -c 600 | tr '\n' ' ')"
say rservice_back_ms "$(wait_service 120)"
say rnote_after "$(rcmd GET note)"
say rcounter_after "$(rcmd INCR counter)"
say rrun_id_after "$(run_id)"

# Tandem's own restore path (tandem restore --xen): only whole, valid
# checkpoints reach Xen, so a stream torn or corrupted inside its last epoch
# still brings the guest back as it was at the checkpoint before.
size=$(stat -c %s "$rstream")
# No copies: dom0's scratch space holds one stream. Torn: its head, on a pipe.
# Bad: the stream itself, its last CHECKPOINT_END's record type overwritten
# (an unknown mandatory record), after the torn run.
for kind in torn bad; do
  xl destroy "$LAB_GUEST_NAME"
  t=$(now_ms)
  if [ $kind = torn ]; then
    head -c $((size - 100)) "$rstream" | tandem restore --xen --in - > "$LAB_SCRATCH/$kind.out" 2>&1
  else
    printf '\xf0\xff\xff\x7f' | dd of="$rstream" bs=1 seek=$((size - 8)) conv=notrunc status=none
    tandem restore --xen --in "$rstream" > "$LAB_SCRATCH/$kind.out" 2>&1
  fi
  say "${kind}_rc" $?
  say "${kind}_ms" $(( $(now_ms) - t ))
  say "${kind}_out" "$(grep -v '^xc: progress' "$LAB_SCRATCH/$kind.out" | tail -c 600 | tr '\n' ' ')"
  say "${kind}_service_ms" "$(wait_service 120)"
  say "${kind}_note" "$(rcmd GET note)"
  say "${kind}_counter" "$(rcmd INCR counter)"
done
rm -f "$rstream"

xl destroy "$LAB_GUEST_NAME"
say destroy_rc $?

# The PV guest: plain save/restore (Debian's Xen cannot track a PV guest's
# dirty pages, so no live migration or Remus for it).
guest_ip=$LAB_GUEST_PV_IP
xl create "$LAB_GUEST_PV_CFG"
say pv_create_rc $?
say pv_service_up_ms "$(wait_service 180)"
for _ in 1 2; do counter=$(rcmd INCR counter); done
say pv_counter_before "$counter"
save=$LAB_SCRATCH/lab-guest-pv.save
t=$(now_ms)
xl save "$LAB_GUEST_PV_NAME" "$save" 2> >(quiet_progress)
say pv_save_rc $?
say pv_save_ms $(( $(now_ms) - t ))
say pv_save_magic_hex "$(head -c 32 "$save" | od -An -v -tx1 | tr -d ' \n')"
t=$(now_ms)
xl restore "$save" 2> >(quiet_progress)
say pv_restore_rc $?
say pv_restore_ms $(( $(now_ms) - t ))
say pv_service_back_ms "$(wait_service 120)"
say pv_counter_after "$(rcmd INCR counter)"
xl destroy "$LAB_GUEST_PV_NAME"
say pv_destroy_rc $?
