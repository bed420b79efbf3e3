/**
 * `tandem proxy` as a process: bad flags end in one line (exit 2); the real
 * process, driven through its four sockets, answers the notify handshake,
 * releases matching frames, asks for a checkpoint on a mismatch, logs a
 * framing error with its code and keeps serving.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable } from 'node:stream';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { ComparatorClient, READY_PROBE } from '../../proxy/client.js';
import { udp } from '../../proxy/craft.js';
import type { Frame } from '../../proxy/framing.js';
import { NotifyWords, type NotifyWord } from '../../proxy/notify.js';
import { CLI, expectOneErrorLine } from '../helpers/cli.js';
import { until } from '../helpers/wait.js';

/** The first line the process prints on stdout (the listening line); rejects if it exits first. */
function firstLine(child: ChildProcessByStdio<null, Readable, Readable>, stderr: () => string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve(out.slice(0, nl));
    });
    child.once('exit', (code) => reject(new Error(`tandem proxy exited with ${code}: ${stderr()}`)));
  });
}

const ADDR = ['--primary-in', '127.0.0.1:0', '--secondary-in', '127.0.0.1:0', '--outdev', '127.0.0.1:0', '--notify', '127.0.0.1:0'];

describe('tandem proxy: refusals', () => {
  test('bad flags are refused in one line with exit status 2', () => {
    const cases: [string[], RegExp][] = [
      [['proxy', '--primary-in', '127.0.0.1:0'], /Missing required arguments: secondary-in, outdev, notify/],
      [['proxy', ...ADDR.slice(2), '--primary-in', 'nowhere'], /--primary-in: expected HOST:PORT/],
      [['proxy', ...ADDR, '--compare-timeout', '0'], /--compare-timeout: expected an integer in 1\.\.2147483647, got 0/],
      [['proxy', ...ADDR, '--expired-scan-cycle', '1.5'], /--expired-scan-cycle: expected an integer in 1\.\.2147483647, got 1\.5/],
      [['proxy', ...ADDR, '--max-queue-size', '99999999'], /--max-queue-size: expected an integer in 1\.\.1048576, got 99999999/],
      [['proxy', ...ADDR.slice(0, 4), '--outdev', '127.0.0.1:70000', ...ADDR.slice(6)], /--outdev: port 70000 is outside 0\.\.65535/],
      [['proxy', ...ADDR, '--notify', '127.0.0.1:1'], /--notify given 2 times; give it once/],
      [['proxy', ...ADDR, '--metrics', 'nowhere'], /--metrics: expected HOST:PORT/],
    ];
    for (const [args, pattern] of cases) expectOneErrorLine(args, 2, pattern);
  });
});

describe('tandem proxy: the real process', () => {
  test('handshake, release, checkpoint request and flush; a framing error is logged with its code and the proxy keeps serving', async () => {
    const child = spawn(process.execPath, [CLI, 'proxy', ...ADDR, '--compare-timeout', '60000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    after(() => child.kill('SIGKILL'));
    let stderr = '';
    const logWaiters: { re: RegExp; resolve: () => void }[] = [];
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      for (const w of [...logWaiters]) if (w.re.test(stderr)) w.resolve();
    });
    const waitLog = (re: RegExp): Promise<void> => (re.test(stderr) ? Promise.resolve() : new Promise((resolve) => logWaiters.push({ re, resolve })));
    const line = await firstLine(child, () => stderr);
    const m = /^listening primary_in=127\.0\.0\.1:(\d+) secondary_in=127\.0\.0\.1:(\d+) outdev=127\.0\.0\.1:(\d+) notify=127\.0\.0\.1:(\d+)$/.exec(line);
    assert.ok(m, line);
    const at = (i: number): { host: string; port: number } => ({ host: '127.0.0.1', port: Number(m[i]) });
    const c = new ComparatorClient({ primaryIn: at(1), secondaryIn: at(2), outdev: at(3), notify: at(4) });
    await c.start();
    after(() => c.stop());
    await c.init();
    await c.ready();

    const frames: Frame[] = [];
    const words: NotifyWord[] = [];
    c.on('frame', (f) => {
      if (!f.data.equals(READY_PROBE)) frames.push(f);
    });
    c.on('notify', (w) => words.push(w));
    const d = (s: string): Buffer => udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 4000, payload: Buffer.from(s) });

    c.sendSecondary(d('twin'));
    c.sendPrimary(d('twin'));
    await until(() => frames.length === 1, 'the matched frame');
    assert.deepEqual(frames[0].data, d('twin'));

    c.sendSecondary(d('left'));
    c.sendPrimary(d('right'));
    await until(() => words.includes(NotifyWords.DO_CHECKPOINT), 'DO_CHECKPOINT');
    await waitLog(/checkpoint requested \(mismatch\): udp 10\.0\.0\.2:53 > 10\.0\.0\.9:4000/);
    assert.equal(frames.length, 1, 'the diverging frame is held');
    c.sendNotify(NotifyWords.CHECKPOINT_DONE);
    await until(() => frames.length === 2, 'the held frame, at the checkpoint');
    assert.deepEqual(frames[1].data, d('right'));

    // Garbage on secondary_in: refused with its code, connection closed; the proxy still serves.
    const raw = connect(at(2));
    raw.on('error', () => {});
    raw.write(Buffer.from('00000000', 'hex'));
    await waitLog(/ERR_PROXY_FRAME_BAD_LENGTH/);
    const sec2 = connect(at(2));
    after(() => sec2.destroy());
    await new Promise((r) => sec2.once('connect', r));
    const { encodeFrame } = await import('../../proxy/framing.js');
    sec2.write(encodeFrame(d('after the error')));
    c.sendPrimary(d('after the error'));
    await until(() => frames.length === 3, 'the frame after the error');
    assert.deepEqual(frames[2].data, d('after the error'));
    assert.equal(child.exitCode, null, 'still running');
  });
});

describe('tandem proxy: its stdout closed', () => {
  test('keeps serving when nobody reads the line it prints', async () => {
    const child = spawn(process.execPath, [CLI, 'proxy', ...ADDR], { stdio: ['ignore', 'pipe', 'pipe'] });
    after(() => child.kill('SIGKILL'));
    // Closed before the process could write its listening line: that write fails with EPIPE.
    child.stdout.destroy();
    let exited: string | undefined;
    child.once('exit', (code, signal) => (exited = `exit ${code} ${signal}`));
    let stderr = '';
    const ports = await new Promise<Record<string, number>>((resolve, reject) => {
      const found: Record<string, number> = {};
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        for (const m of stderr.matchAll(/"port":"(\w+)","address":"127\.0\.0\.1:(\d+)"/g)) found[m[1]] = Number(m[2]);
        if (Object.keys(found).length === 4) resolve(found);
      });
      child.once('exit', (code) => reject(new Error(`tandem proxy exited with ${code}: ${stderr}`)));
    });
    // The listening line's write failed (EPIPE) as the proxy started listening, before it could
    // take a connection: a round trip with it shows it outlived that, no wait needed.
    const at = (port: number): { host: string; port: number } => ({ host: '127.0.0.1', port });
    const client = new ComparatorClient({ primaryIn: at(ports.primary_in), secondaryIn: at(ports.secondary_in), outdev: at(ports.outdev), notify: at(ports.notify) });
    try {
      await client.start();
      await client.init();
      assert.equal(exited, undefined, stderr);
    } finally {
      client.stop();
    }
  });
});

describe('tandem proxy --metrics', () => {
  test('names its metrics address on the listening line and serves Prometheus text there', async () => {
    const child = spawn(process.execPath, [CLI, 'proxy', ...ADDR, '--metrics', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    after(() => child.kill('SIGKILL'));
    const line = await firstLine(child, () => '');
    const m = / notify=127\.0\.0\.1:(\d+) metrics=127\.0\.0\.1:(\d+)$/.exec(line);
    assert.ok(m, line);
    const notify = connect({ host: '127.0.0.1', port: Number(m[1]) });
    await new Promise((r) => notify.once('connect', r));
    after(() => notify.destroy());
    // The proxy's accept of the connection is seen only in its metrics: scrape until it shows.
    let text = '';
    const NOTIFY_UP = /^tandem_proxy_peer_connected\{port="notify"\} 1$/m;
    await until(
      async () => {
        const res = await fetch(`http://127.0.0.1:${m[2]}/metrics`);
        assert.equal(res.status, 200);
        text = await res.text();
        return NOTIFY_UP.test(text);
      },
      'the notify peer in the metrics',
    );
    assert.match(text, /^tandem_proxy_peer_connected\{port="outdev"\} 0$/m);
    assert.match(text, /^# TYPE tandem_proxy_checkpoint_decision_seconds histogram$/m);
  });
});
