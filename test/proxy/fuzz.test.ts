/**
 * Hostile input, deterministically generated: the decoders only ever throw
 * ProxyError, and the comparator never throws at all (a bad frame is
 * reported and passed through, never a crash).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Comparator, type Decision } from '../../proxy/compare.js';
import { icmp, tcp, udp } from '../../proxy/craft.js';
import { ProxyError } from '../../proxy/errors.js';
import { FrameDecoder } from '../../proxy/framing.js';
import { NotifyDecoder } from '../../proxy/notify.js';
import { decodePacket } from '../../proxy/packet.js';
import { xorshift32 } from '../../src/util/xorshift.js';

const onlyProxyErrors = (fn: () => unknown, what: string): void => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ProxyError, `${what}: threw ${String(err)}`);
  }
};

describe('fuzz', () => {
  test('random byte streams into the frame and notify decoders', () => {
    const r = xorshift32(0x1234);
    for (let run = 0; run < 300; run++) {
      const vnetHdr = run % 2 === 0;
      const frames = new FrameDecoder({ vnetHdr });
      const notify = new NotifyDecoder({ direction: 'to-proxy', vnetHdr });
      for (let k = 0; k < 8; k++) {
        const len = r() % 64;
        const chunk = Buffer.alloc(len);
        for (let i = 0; i < len; i++) chunk[i] = r() % 4 === 0 ? 0 : r() & 0xff;
        onlyProxyErrors(() => frames.push(chunk), `frames run ${run}`);
        onlyProxyErrors(() => notify.push(chunk), `notify run ${run}`);
      }
    }
  });

  test('mutated frames into the packet decoder and the comparator', () => {
    const r = xorshift32(0xbeef);
    const seeds = [
      tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: 1, seq: 5, payload: Buffer.from('payload bytes') }),
      udp({ src: 'fd00::2', dst: 'fd00::9', sport: 53, dport: 2, payload: Buffer.from('v6 datagram') }),
      icmp({ src: '10.0.0.2', dst: '10.0.0.9', payload: Buffer.from('ping'), vlan: 7 }),
    ];
    const c = new Comparator({ maxQueueSize: 8, maxConnections: 16 });
    const out: Decision[] = [];
    let malformed = 0;
    for (let run = 0; run < 3000; run++) {
      const f = Buffer.from(seeds[run % seeds.length]);
      const flips = 1 + (r() % 4);
      for (let k = 0; k < flips; k++) f[r() % f.length] = r() & 0xff;
      const cut = r() % 3 === 0 ? f.subarray(0, r() % f.length) : f;
      onlyProxyErrors(() => decodePacket(cut), `packet run ${run}`);
      c.push(run % 2 === 0 ? 'primary' : 'secondary', { data: cut, vnetHdrLen: 0 }, run, out);
      if (run % 500 === 499) {
        c.scan(run + 10_000, out);
        c.checkpointDone(out);
      }
      malformed += out.filter((d) => d.type === 'malformed').length;
      out.length = 0;
    }
    assert.ok(malformed > 100, `the mutations hit the length checks (${malformed} malformed)`);
  });
});
