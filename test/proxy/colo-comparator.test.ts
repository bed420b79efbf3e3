/**
 * ColoComparator, the embeddable form: events and the checkpoint-request
 * Observable, the expired-frame scan on an injected clock, option checks.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { firstValueFrom, toArray } from 'rxjs';
import { ErrorCodes } from '../../src/errors.js';
import { tcp, udp } from '../../proxy/craft.js';
import { ProxyError } from '../../proxy/errors.js';
import type { Frame } from '../../proxy/framing.js';
import { ColoComparator } from '../../proxy/colo-comparator.js';

const dgram = (payload: string): Buffer => udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 7, payload: Buffer.from(payload) });

describe('ColoComparator', () => {
  test('release events in order; checkpoint requests on the Observable and as events, with reason and flow', async () => {
    const comparator = new ColoComparator();
    const released: string[] = [];
    comparator.on('release', (f: Frame, why) => released.push(`${f.data.subarray(-1).toString()}:${why}`));
    const requests = firstValueFrom(comparator.checkpointRequests$.pipe(toArray()));
    const events: string[] = [];
    comparator.on('checkpoint', (r) => events.push(r.reason));

    comparator.pushSecondary(dgram('1'));
    comparator.pushPrimary(dgram('1'));
    comparator.pushSecondary(dgram('2'));
    comparator.pushPrimary(dgram('X'));
    assert.deepEqual(released, ['1:match']);
    comparator.checkpointDone();
    assert.deepEqual(released, ['1:match', 'X:checkpoint']);
    comparator.close();
    const all = await requests;
    assert.equal(all.length, 1);
    assert.equal(all[0].reason, 'mismatch');
    assert.equal(all[0].flow, 'udp 10.0.0.2:53 > 10.0.0.9:7');
    assert.match(all[0].detail, /matches none of the 1 held secondary ones/);
    assert.deepEqual(events, ['mismatch']);
  });

  test('the scan uses the injected clock: a lonely frame asks for a checkpoint once it is past the timeout', () => {
    let now = 0;
    const comparator = new ColoComparator({ compareTimeoutMs: 500, clock: () => now });
    const reasons: string[] = [];
    comparator.on('checkpoint', (r) => reasons.push(r.reason));
    comparator.pushPrimary(tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: 1, seq: 1, payload: Buffer.from('alone') }));
    now = 500;
    comparator.scan();
    assert.deepEqual(reasons, []);
    now = 501;
    comparator.scan();
    assert.deepEqual(reasons, ['timeout']);
    assert.equal(comparator.stats().held.primary, 1);
  });

  test('frames given as bare Buffers and as { data, vnetHdrLen } are the same thing', () => {
    const comparator = new ColoComparator();
    const out: Frame[] = [];
    comparator.on('release', (f) => out.push(f));
    const withHdr = Buffer.concat([Buffer.alloc(10), dgram('v')]);
    comparator.pushSecondary({ data: withHdr, vnetHdrLen: 10 });
    comparator.pushPrimary(dgram('v'));
    assert.equal(out.length, 1);
    assert.equal(out[0].vnetHdrLen, 0);
  });

  test('a malformed frame is reported with its typed error and passed through', () => {
    const comparator = new ColoComparator();
    const errors: ProxyError[] = [];
    const released: Buffer[] = [];
    comparator.on('malformed', (_side, e) => errors.push(e));
    comparator.on('release', (f) => released.push(f.data));
    const bad = Buffer.from(dgram('x'));
    bad.writeUInt16BE(9999, 14 + 2); // IPv4 total length beyond the frame
    comparator.pushPrimary(bad);
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, ErrorCodes.PROXY_PACKET_MALFORMED);
    assert.deepEqual(released, [bad]);
  });

  test('bad options are refused with ERR_PROXY_BAD_OPTIONS', () => {
    assert.throws(() => new ColoComparator({ compareTimeoutMs: -1 }), (e: unknown) => e instanceof ProxyError && e.code === ErrorCodes.PROXY_BAD_OPTIONS);
    const p = new ColoComparator({ expiredScanCycleMs: 0 });
    assert.throws(() => p.start(), (e: unknown) => e instanceof ProxyError && e.code === ErrorCodes.PROXY_BAD_OPTIONS);
  });

  test('start() runs the scan on its timer; stop() ends it', async () => {
    let now = 0;
    const comparator = new ColoComparator({ compareTimeoutMs: 1, expiredScanCycleMs: 5, clock: () => now });
    comparator.pushSecondary(dgram('lonely'));
    now = 10;
    const first = new Promise<string>((resolve) => comparator.once('checkpoint', (r) => resolve(r.reason)));
    // The scan's timer does not hold the process open (unref); this test must, until the scan has run.
    const keepAlive = setTimeout(() => {}, 5000);
    comparator.start();
    try {
      assert.equal(await first, 'timeout');
    } finally {
      clearTimeout(keepAlive);
      comparator.stop();
    }
  });
});
