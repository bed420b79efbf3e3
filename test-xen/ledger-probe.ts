/**
 * Run in a Xen lab dom0 (by test-xen/remus.sh): the demo's client ledger
 * (src/demo/ledger.ts) against the lab guest's real redis-server, over its
 * vif. Clients INCR counters and remember the highest value each was
 * acknowledged with; after a failover every counter must be at least that
 * high. SIGUSR1: the guest's address now leads to the survivor (every
 * client reconnects). SIGTERM: wait (bounded) until the survivor has
 * answered every client, then stop, verify, and print "LAB ledger_* value"
 * lines. Usage: node dist/test-xen/ledger-probe.js HOST:PORT
 */
import { Ledger } from '../src/demo/ledger.js';

const say = (k: string, v: string | number): void => void process.stdout.write(`LAB ${k} ${v}\n`);
const [host, port] = (process.argv[2] ?? '').split(':');
const ledger = new Ledger({ host, port: Number(port) }, 4);
const started = performance.now();
let failedOverAt: number | undefined;

ledger.start();
void ledger.firstSurvivorAck().then((t) => {
  if (failedOverAt !== undefined) say('ledger_first_survivor_reply_ms', Math.round(t - failedOverAt));
});

process.on('SIGUSR1', () => {
  failedOverAt = performance.now();
  ledger.failedOver();
});

process.on('SIGTERM', () => {
  void (async () => {
    const deadline = performance.now() + 60_000;
    while (failedOverAt !== undefined && !ledger.survivorAnsweredAll && performance.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    ledger.stop();
    say('ledger_survivor_answered_all', String(ledger.survivorAnsweredAll));
    try {
      const s = await ledger.verify();
      say('ledger_acked_writes', s.ackedWrites);
      say('ledger_lost_acked_writes', s.lostAckedWrites);
      say('ledger_longest_gap_ms', s.longestGapMs);
      say('ledger_errors', s.errors);
    } catch (err) {
      say('ledger_verify_error', err instanceof Error ? err.message : String(err));
    }
    say('ledger_ran_ms', Math.round(performance.now() - started));
    process.exit(0);
  })();
});
