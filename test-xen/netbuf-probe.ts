/**
 * Run in a Xen lab dom0 (by test-xen/basics.sh, with the guest running):
 * output commit on the guest's real vif, through Tandem's NetBuffer device.
 * Prints "LAB key value" lines for test-xen/basics.test.ts; asserts nothing
 * itself. Usage: node dist/test-xen/netbuf-probe.js DOMID
 */
import { spawnSync } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { NetBuffer } from '../src/domain/xen/netbuf.js';
import { XcOps } from '../src/domain/xen/xc.js';

const say = (k: string, v: string | number): void => void process.stdout.write(`LAB ${k} ${v}\n`);
const domid = Number(process.argv[2]);
const host = process.env.LAB_GUEST_IP ?? '';
const port = Number(process.env.LAB_GUEST_PORT ?? 6379);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** A connection to the guest's redis-server, opened while output passes (a TCP handshake is output too). */
function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A redis PING; `answered` resolves with the ms it took to get +PONG (or rejects after `ms`). */
function ping(ms: number, over?: Socket): { answered: Promise<number>; settled: () => boolean } {
  const t0 = performance.now();
  let done = false;
  const answered = (over === undefined ? open() : Promise.resolve(over))
    .then(
      (s) =>
        new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => {
            s.destroy();
            reject(new Error('timeout'));
          }, ms);
          s.on('data', (d) => {
            if (!d.toString().startsWith('+PONG')) return;
            clearTimeout(timer);
            s.destroy();
            resolve(performance.now() - t0);
          });
          s.on('error', (err) => {
            clearTimeout(timer);
            reject(err);
          });
          s.write('PING\r\n');
        }),
    )
    .finally(() => (done = true));
  answered.catch(() => undefined);
  return { answered, settled: () => done };
}

const outcome = (p: Promise<number>): Promise<string> => p.then((ms) => `PONG after ${Math.round(ms)} ms`).catch((err: Error) => err.message);

async function main(): Promise<void> {
  const xc = await XcOps.start();
  const ifb = `tdmifb${domid}`;
  const nb = new NetBuffer({ vif: `vif${domid}.0`, ifb, ops: xc });
  try {
    await nb.setup();
    say('nb_setup', 'ok');
    say('nb_free', await outcome(ping(5000).answered));
    // Connected while output passes: the PING's reply is then the guest's only output.
    const conn = await open();
    // Epoch 1: closed and acked with nothing in it.
    await nb.postsuspend();
    await nb.commit();
    // The reply to a PING sent now is output of epoch 2: held until checkpoint 2 is acked.
    const p = ping(20_000, conn);
    await sleep(1500);
    say('nb_held_before_checkpoint', p.settled() ? 'no' : 'yes');
    await nb.postsuspend();
    await sleep(1000);
    say('nb_held_before_ack', p.settled() ? 'no' : 'yes');
    const released = performance.now();
    await nb.commit();
    say('nb_after_ack', await outcome(p.answered.then(() => performance.now() - released)));
    // What one block and one release cost, through the co-process's netlink socket and as a `tc` spawn each.
    const netlink: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await nb.postsuspend();
      await nb.commit();
      netlink.push((performance.now() - t) / 2);
    }
    say('nb_netlink_op_ms', median(netlink).toFixed(2));
    const spawned: number[] = [];
    for (let i = 0; i < 10; i++) {
      for (const action of ['block', 'release']) {
        const t = performance.now();
        const r = spawnSync('tc', ['qdisc', 'change', 'dev', ifb, 'root', 'handle', '1:', 'plug', action]);
        if (r.status !== 0) say('nb_tc_error', String(r.stderr).trim().replace(/\s+/g, ' '));
        spawned.push(performance.now() - t);
      }
    }
    say('nb_tc_spawn_op_ms', median(spawned).toFixed(2));
  } catch (err) {
    say('nb_error', (err instanceof Error ? err.message : String(err)).replace(/\s+/g, ' '));
  } finally {
    await nb.teardown();
    await xc.stop();
  }
  say('nb_after_teardown', await outcome(ping(5000).answered));
}

await main();
