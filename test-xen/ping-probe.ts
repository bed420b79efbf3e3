/**
 * Run in a Xen lab dom0 (by test-xen/remus.sh): COUNT redis PINGs to the lab
 * guest, one after another over one connection, each timed from its send to
 * its +PONG. Prints "LAB <prefix>_min_ms", "_median_ms", "_max_ms" and
 * "_answered". Usage: node dist/test-xen/ping-probe.js PREFIX COUNT
 */
import { connect } from 'node:net';

const [prefix, countArg] = process.argv.slice(2);
const count = Number(countArg);
const say = (k: string, v: string | number): void => void process.stdout.write(`LAB ${prefix}_${k} ${v}\n`);
const host = process.env.LAB_GUEST_IP ?? '';
const port = Number(process.env.LAB_GUEST_PORT ?? 6379);

const socket = connect({ host, port });
const times: number[] = [];
let sentAt = 0;
let text = '';
const send = (): void => {
  sentAt = performance.now();
  socket.write('PING\r\n');
};
const done = (): void => {
  const sorted = [...times].sort((a, b) => a - b);
  say('answered', times.length);
  if (sorted.length > 0) {
    say('min_ms', Math.round(sorted[0]));
    say('median_ms', Math.round(sorted[sorted.length >> 1]));
    say('max_ms', Math.round(sorted.at(-1)!));
  }
  socket.destroy();
  process.exit(0);
};
setTimeout(done, 120_000).unref();
socket.on('connect', send);
socket.on('error', (err) => {
  say('error', err.message);
  done();
});
socket.on('data', (d: Buffer) => {
  text += d.toString('latin1');
  while (text.includes('+PONG\r\n')) {
    text = text.slice(text.indexOf('+PONG\r\n') + 7);
    times.push(performance.now() - sentAt);
    if (times.length >= count) return done();
    send();
  }
});
