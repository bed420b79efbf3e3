/**
 * ColoProxy, the embeddable form: events and the checkpoint-request
 * Observable, the expired-frame scan on an injected clock, option checks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { firstValueFrom, toArray } from 'rxjs';
import { ErrorCodes } from '../../src/errors.js';
import { tcp, udp } from '../../proxy/craft.js';
import { ProxyError } from '../../proxy/errors.js';
import type { Frame } from '../../proxy/framing.js';
import { ColoProxy } from '../../proxy/proxy.js';

const dgram = (payload: string): Buffer => udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 7, payload: Buffer.from(payload) });

describe('ColoProxy', () => {
  test('release events in order; checkpoint requests on the Observable and as events, with reason and flow', async () => {
    const proxy = new ColoProxy();
    const released: string[] = [];
    proxy.on('release', (f: Frame, why) => released.push(`${f.data.subarray(-1).toString()}:${why}`));
    const requests = firstValueFrom(proxy.checkpointRequests$.pipe(toArray()));
    const events: string[] = [];
    proxy.on('checkpoint', (r) => events.push(r.reason));

    proxy.pushSecondary(dgram('1'));
    proxy.pushPrimary(dgram('1'));
    proxy.pushSecondary(dgram('2'));
    proxy.pushPrimary(dgram('X'));
    assert.deepEqual(released, ['1:match']);
    proxy.checkpointDone();
    assert.deepEqual(released, ['1:match', 'X:checkpoint']);
    proxy.close();
    const all = await requests;
    assert.equal(all.length, 1);
    assert.equal(all[0].reason, 'mismatch');
    assert.equal(all[0].flow, 'udp 10.0.0.2:53 > 10.0.0.9:7');
    assert.match(all[0].detail, /matches none of the 1 held secondary ones/);
    assert.deepEqual(events, ['mismatch']);
  });

  test('the scan uses the injected clock: a lonely frame asks for a checkpoint once it is past the timeout', () => {
    let now = 0;
    const proxy = new ColoProxy({ compareTimeoutMs: 500, clock: () => now });
    const reasons: string[] = [];
    proxy.on('checkpoint', (r) => reasons.push(r.reason));
    proxy.pushPrimary(tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: 1, seq: 1, payload: Buffer.from('alone') }));
    now = 500;
    proxy.scan();
    assert.deepEqual(reasons, []);
    now = 501;
    proxy.scan();
    assert.deepEqual(reasons, ['timeout']);
    assert.equal(proxy.stats().held.primary, 1);
  });

  test('frames given as bare Buffers and as { data, vnetHdrLen } are the same thing', () => {
    const proxy = new ColoProxy();
    const out: Frame[] = [];
    proxy.on('release', (f) => out.push(f));
    const withHdr = Buffer.concat([Buffer.alloc(10), dgram('v')]);
    proxy.pushSecondary({ data: withHdr, vnetHdrLen: 10 });
    proxy.pushPrimary(dgram('v'));
    assert.equal(out.length, 1);
    assert.equal(out[0].vnetHdrLen, 0);
  });

  test('a malformed frame is reported with its typed error and passed through', () => {
    const proxy = new ColoProxy();
    const errors: ProxyError[] = [];
    const released: Buffer[] = [];
    proxy.on('malformed', (_side, e) => errors.push(e));
    proxy.on('release', (f) => released.push(f.data));
    const bad = Buffer.from(dgram('x'));
    bad.writeUInt16BE(9999, 14 + 2); // IPv4 total length beyond the frame
    proxy.pushPrimary(bad);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, ErrorCodes.PROXY_PACKET_MALFORMED);
    assert.deepEqual(released, [bad]);
  });

  test('bad options are refused with ERR_PROXY_BAD_OPTIONS', () => {
    assert.throws(() => new ColoProxy({ compareTimeoutMs: -1 }), (e: unknown) => e instanceof ProxyError && e.code === ErrorCodes.PROXY_BAD_OPTIONS);
    const p = new ColoProxy({ expiredScanCycleMs: 0 });
    assert.throws(() => p.start(), (e: unknown) => e instanceof ProxyError && e.code === ErrorCodes.PROXY_BAD_OPTIONS);
  });

  test('start() runs the scan on its timer; stop() ends it', async () => {
    let now = 0;
    const proxy = new ColoProxy({ compareTimeoutMs: 1, expiredScanCycleMs: 5, clock: () => now });
    proxy.pushSecondary(dgram('lonely'));
    now = 10;
    const first = new Promise<string>((resolve) => proxy.once('checkpoint', (r) => resolve(r.reason)));
    // The scan's timer does not hold the process open (unref); this test must, until the scan has run.
    const keepAlive = setTimeout(() => {}, 5000);
    proxy.start();
    try {
      assert.equal(await first, 'timeout');
    } finally {
      clearTimeout(keepAlive);
      proxy.stop();
    }
  });
});
