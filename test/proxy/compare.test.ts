import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { Comparator, after, type Decision } from '../../proxy/compare.js';
import { ProxyError } from '../../proxy/errors.js';
import { TcpFlag, arp, tcp, udp, icmp } from '../../proxy/craft.js';
import type { Frame } from '../../proxy/framing.js';

const f = (data: Buffer): Frame => ({ data, vnetHdrLen: 0 });

/** A comparator plus readable views of its decisions. */
function rig(options: ConstructorParameters<typeof Comparator>[0] = {}) {
  const c = new Comparator(options);
  const names = new Map<Buffer, string>();
  let out: Decision[] = [];
  const name = (d: Buffer): string => names.get(d) ?? '?';
  return {
    c,
    /** Registers a name for a frame. */
    n(label: string, data: Buffer): Buffer {
      names.set(data, label);
      return data;
    },
    p(data: Buffer, now = 0): void {
      c.push('primary', f(data), now, out);
    },
    s(data: Buffer, now = 0): void {
      c.push('secondary', f(data), now, out);
    },
    scan(now: number): void {
      c.scan(now, out);
    },
    checkpoint(): void {
      c.checkpointDone(out);
    },
    /** Decisions since the last take(), compactly. */
    take(): string[] {
      const r = out.map((d) => {
        switch (d.type) {
          case 'release':
            return `release ${name(d.frame.data)} (${d.why})`;
          case 'drop':
            return `drop ${d.side} ${name(d.frame.data)} (${d.why})`;
          case 'checkpoint':
            return `checkpoint ${d.request.reason}`;
          case 'malformed':
            return `malformed ${d.side}`;
        }
      });
      out = [];
      return r;
    },
    last(): Decision[] {
      return out;
    },
  };
}

const ISN = 0xfffffff0; // wraps past 2^32 within the first segments
const seg = (off: number, payload: string | Buffer, o: { ack?: number; flags?: number; dport?: number } = {}): Buffer =>
  tcp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: o.dport ?? 40000, seq: (ISN + off) >>> 0, ack: o.ack ?? 1000, flags: o.flags, payload: typeof payload === 'string' ? Buffer.from(payload) : payload });

describe('Comparator: frames that are views of a larger buffer', () => {
  test('a held frame keeps its own copy: a chunk reused after the push cannot change what is compared or released', () => {
    const c = new Comparator();
    const out: Decision[] = [];
    const chunk = Buffer.alloc(65536);
    const s = seg(0, 'hello');
    s.copy(chunk, 1000);
    // The secondary's segment waits for its twin, as a view of the chunk.
    c.push('secondary', { data: chunk.subarray(1000, 1000 + s.length), vnetHdrLen: 0 }, 0, out);
    assert.equal(out.length, 0);
    chunk.fill(0x41); // the socket's next read lands in the same memory
    const pChunk = Buffer.alloc(65536);
    const pView = pChunk.subarray(10, 10 + s.length);
    s.copy(pView);
    c.push('primary', { data: pView, vnetHdrLen: 0 }, 0, out);
    assert.deepEqual(out.map((d) => d.type === 'release' ? `release ${d.why}` : d.type === 'drop' ? `drop ${d.side} ${d.why}` : d.type), ['release match', 'drop secondary match']);
    const released = out[0].type === 'release' ? out[0].frame : undefined;
    assert.equal(released?.data, pView, 'released at once: no copy was needed');
  });

  test('a primary frame that waits is copied, and released later with its own bytes', () => {
    const c = new Comparator();
    const out: Decision[] = [];
    const chunk = Buffer.alloc(65536);
    const p = seg(0, 'later');
    const view = chunk.subarray(500, 500 + p.length);
    p.copy(view);
    c.push('primary', { data: view, vnetHdrLen: 0 }, 0, out);
    chunk.fill(0);
    c.checkpointDone(out);
    const rel = out.find((d) => d.type === 'release');
    assert.ok(rel?.type === 'release');
    assert.deepEqual(rel.frame.data, p);
    assert.notEqual(rel.frame.data.buffer, chunk.buffer);
  });
});

describe('sequence arithmetic', () => {
  test('after() compares across the 2^32 wrap', () => {
    assert.equal(after(5, 0xfffffff0), true);
    assert.equal(after(0xfffffff0, 5), false);
    assert.equal(after(7, 7), false);
  });
});

describe('Comparator: TCP', () => {
  test('identical segments: primary released, secondary dropped, no checkpoint (across the sequence wrap)', () => {
    const r = rig();
    r.s(r.n('s1', seg(0, 'x'.repeat(20))));
    r.s(r.n('s2', seg(20, 'y'.repeat(20))));
    r.p(r.n('p1', seg(0, 'x'.repeat(20))));
    r.p(r.n('p2', seg(20, 'y'.repeat(20))));
    assert.deepEqual(r.take(), ['release p1 (match)', 'drop secondary s1 (match)', 'release p2 (match)', 'drop secondary s2 (match)']);
    assert.equal(r.c.stats().matched, 2);
  });

  test('release order and drops, one decision at a time', () => {
    const r = rig();
    r.s(r.n('s1', seg(0, 'hello')));
    assert.deepEqual(r.take(), []);
    r.p(r.n('p1', seg(0, 'hello')));
    assert.deepEqual(r.take(), ['release p1 (match)', 'drop secondary s1 (match)']);
    assert.equal(r.c.stats().held.primary, 0);
    assert.equal(r.c.stats().held.secondary, 0);
  });

  test('different segmentation still matches: 3 x 100 against 1 x 300, and 150 + 150 against 100 + 200', () => {
    const data = Buffer.from(Array.from({ length: 300 }, (_, i) => i & 0xff));
    const r = rig();
    r.s(r.n('S', seg(0, data)));
    r.p(r.n('a', seg(0, data.subarray(0, 100))));
    r.p(r.n('b', seg(100, data.subarray(100, 200))));
    r.p(r.n('c', seg(200, data.subarray(200))));
    assert.deepEqual(r.take(), ['release a (match)', 'release b (match)', 'release c (match)', 'drop secondary S (match)']);

    const q = rig();
    q.s(q.n('s1', seg(0, data.subarray(0, 100))));
    q.s(q.n('s2', seg(100, data.subarray(100))));
    q.p(q.n('p1', seg(0, data.subarray(0, 150))));
    q.p(q.n('p2', seg(150, data.subarray(150))));
    assert.deepEqual(q.take(), ['release p1 (match)', 'drop secondary s1 (match)', 'release p2 (match)', 'drop secondary s2 (match)']);
  });

  test('a difference anywhere in the range is a mismatch: one request, nothing released, connection frozen until the checkpoint', () => {
    const r = rig();
    r.s(seg(0, 'abcdef'));
    r.p(r.n('p1', seg(0, 'abcdeX')));
    assert.deepEqual(r.take(), ['checkpoint mismatch']);
    r.s(seg(6, 'more'));
    r.p(r.n('p2', seg(6, 'more')));
    assert.deepEqual(r.take(), [], 'no repeated request per packet, nothing compared on a diverged connection');
    r.checkpoint();
    assert.deepEqual(r.take(), ['drop secondary ? (checkpoint)', 'drop secondary ? (checkpoint)', 'release p1 (checkpoint)', 'release p2 (checkpoint)']);
    // After the checkpoint the connection compares again from the primary's sequence position.
    r.s(seg(10, 'next'));
    r.p(r.n('p3', seg(10, 'next')));
    assert.deepEqual(r.take(), ['release p3 (match)', 'drop secondary ? (match)']);
  });

  test('a mismatch is found as soon as the covered part differs, before the whole range arrived', () => {
    const r = rig();
    r.p(seg(0, 'abcdefgh'));
    r.s(seg(0, 'abcX'));
    assert.deepEqual(r.take(), ['checkpoint mismatch']);
  });

  test('out-of-order arrival: compared, never waved through; a hole holds what follows', () => {
    const r = rig();
    r.s(seg(0, 'aaaa'));
    r.s(seg(4, 'bbbb'));
    // The first segment seen sets where the connection starts: p2, compared and equal, leaves.
    r.p(r.n('p2', seg(4, 'bbbb')));
    assert.deepEqual(r.take(), ['release p2 (match)', 'drop secondary ? (match)']);
    // p1 lies before it: compared (not waved through as a retransmission), then released.
    r.p(r.n('p1', seg(0, 'aaaa')));
    assert.deepEqual(r.take(), ['release p1 (match)', 'drop secondary ? (match)']);
    // Once the connection has a released range, a primary segment beyond a hole waits for the hole.
    r.s(seg(12, 'dddd'));
    r.p(r.n('p4', seg(12, 'dddd')));
    assert.deepEqual(r.take(), []);
    r.s(seg(8, 'cccc'));
    r.p(r.n('p3', seg(8, 'cccc')));
    assert.deepEqual(r.take().filter((x) => x.startsWith('release')), ['release p3 (match)', 'release p4 (match)']);
  });

  test('SYN and FIN take one sequence position each and must match', () => {
    const r = rig();
    r.s(seg(0, '', { flags: TcpFlag.SYN | TcpFlag.ACK }));
    r.p(r.n('synack', seg(0, '', { flags: TcpFlag.SYN | TcpFlag.ACK })));
    assert.deepEqual(r.take().filter((x) => x.startsWith('release')), ['release synack (match)']);
    r.s(seg(1, 'data', { flags: TcpFlag.ACK | TcpFlag.FIN }));
    r.p(r.n('data', seg(1, 'data')));
    r.p(r.n('fin', seg(5, '', { flags: TcpFlag.ACK | TcpFlag.FIN })));
    assert.deepEqual(r.take().filter((x) => x.startsWith('release')), ['release data (match)', 'release fin (match)']);
    // A FIN where the secondary sends data instead is a divergence.
    const q = rig();
    q.s(seg(0, 'z'));
    q.p(seg(0, '', { flags: TcpFlag.ACK | TcpFlag.FIN }));
    assert.deepEqual(q.take(), ['checkpoint mismatch']);
  });

  test('a pure ACK leaves only once the secondary has acked as far', () => {
    const r = rig();
    r.s(seg(0, '', { ack: 1000 }));
    r.p(r.n('ack', seg(0, '', { ack: 1100 })));
    assert.deepEqual(r.take(), ['drop secondary ? (match)']);
    r.s(seg(0, '', { ack: 1100 }));
    assert.deepEqual(r.take(), ['drop secondary ? (match)', 'release ack (match)']);
  });

  test('equal data with an ack beyond the secondary waits for the secondary ack', () => {
    const r = rig();
    r.s(seg(0, 'resp', { ack: 1000 }));
    r.p(r.n('resp', seg(0, 'resp', { ack: 1010 })));
    assert.deepEqual(r.take(), []);
    r.s(seg(4, '', { ack: 1010 }));
    assert.deepEqual(r.take(), ['drop secondary ? (match)', 'release resp (match)', 'drop secondary ? (match)']);
  });

  test('a RST waits for the secondary RST at the same sequence number; nothing else stands in for it', () => {
    const r = rig();
    r.p(r.n('rst', seg(0, '', { flags: TcpFlag.RST })));
    assert.deepEqual(r.take(), []);
    r.s(r.n('srst', seg(0, '', { flags: TcpFlag.RST })));
    assert.deepEqual(r.take(), ['drop secondary srst (match)', 'release rst (match)']);
    const q = rig({ compareTimeoutMs: 100 });
    q.p(q.n('rst', seg(0, '', { flags: TcpFlag.RST })), 0);
    q.s(seg(0, '', { ack: 1000 }), 0);
    q.scan(50);
    assert.deepEqual(q.take(), ['drop secondary ? (match)']);
    q.scan(101);
    assert.deepEqual(q.take(), ['checkpoint timeout']);
  });

  test('a primary retransmission of released data leaves; a secondary one is dropped', () => {
    const r = rig();
    r.s(seg(0, 'abcd'));
    r.p(seg(0, 'abcd'));
    r.take();
    r.p(r.n('re', seg(0, 'abcd')));
    assert.deepEqual(r.take(), ['release re (retransmit)']);
    r.s(r.n('sre', seg(0, 'abcd')));
    assert.deepEqual(r.take(), ['drop secondary sre (retransmit)']);
  });
});

describe('Comparator: UDP, ICMP', () => {
  const dgram = (payload: string, dport = 5000): Buffer => udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport, payload: Buffer.from(payload) });

  test('oldest primary first: a primary one datagram ahead waits, no checkpoint, first-in-first-out', () => {
    const r = rig();
    r.p(r.n('p1', dgram('one')));
    r.p(r.n('p2', dgram('two')));
    r.s(dgram('one'));
    assert.deepEqual(r.take(), ['release p1 (match)', 'drop secondary ? (match)']);
    r.s(dgram('two'));
    assert.deepEqual(r.take(), ['release p2 (match)', 'drop secondary ? (match)']);
  });

  test('a secondary reordered within its queue still matches', () => {
    const r = rig();
    r.s(dgram('two'));
    r.s(dgram('one'));
    r.p(r.n('p1', dgram('one')));
    r.p(r.n('p2', dgram('two')));
    assert.deepEqual(r.take().filter((x) => x.startsWith('release')), ['release p1 (match)', 'release p2 (match)']);
  });

  test('IP header fields (ID, TTL) are not compared; the payload is', () => {
    const r = rig();
    r.s(udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 1, payload: Buffer.from('x'), id: 1, ttl: 63 }));
    r.p(r.n('p', udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 53, dport: 1, payload: Buffer.from('x'), id: 999, ttl: 64 })));
    assert.deepEqual(r.take()[0], 'release p (match)');
    r.s(dgram('a'));
    r.p(dgram('b'));
    assert.deepEqual(r.take(), ['checkpoint mismatch']);
  });

  test('ICMP compares its message', () => {
    const r = rig();
    const echo = (p: string): Buffer => icmp({ src: '10.0.0.2', dst: '10.0.0.9', payload: Buffer.from(p) });
    r.s(echo('ping 1'));
    r.p(r.n('e1', echo('ping 1')));
    assert.deepEqual(r.take()[0], 'release e1 (match)');
    r.s(echo('ping 2'));
    r.p(echo('ping X'));
    assert.deepEqual(r.take(), ['checkpoint mismatch']);
  });
});

describe('Comparator: time, limits, uncompared frames', () => {
  test('a lonely frame asks for a checkpoint only after the compare timeout (injected time)', () => {
    const r = rig({ compareTimeoutMs: 3000 });
    r.p(r.n('lonely', seg(0, 'alone')), 1000);
    r.scan(4000);
    assert.deepEqual(r.take(), [], 'exactly the timeout is not past it');
    r.scan(4001);
    assert.deepEqual(r.take(), ['checkpoint timeout']);
    r.checkpoint();
    assert.deepEqual(r.take(), ['release lonely (checkpoint)']);
    r.scan(9000);
    assert.deepEqual(r.take(), []);
  });

  test('a lonely secondary frame times out too', () => {
    const r = rig({ compareTimeoutMs: 10 });
    r.s(seg(0, 'only secondary'), 0);
    r.scan(11);
    assert.deepEqual(r.take(), ['checkpoint timeout']);
  });

  test('the checkpoint releases held primaries in arrival order across connections', () => {
    const r = rig();
    r.p(r.n('u1', udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('1') })));
    r.p(r.n('t1', seg(0, 'a')));
    r.p(r.n('u2', udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('2') })));
    r.p(r.n('t2', seg(1, 'b')));
    r.checkpoint();
    assert.deepEqual(r.take(), ['release u1 (checkpoint)', 'release t1 (checkpoint)', 'release u2 (checkpoint)', 'release t2 (checkpoint)']);
  });

  test('a full queue drops the new frame and asks for a checkpoint; other connections are untouched', () => {
    const r = rig({ maxQueueSize: 2 });
    r.p(r.n('a', seg(0, 'a')));
    r.p(r.n('b', seg(1, 'b')));
    r.p(r.n('c', seg(2, 'c')));
    assert.deepEqual(r.take(), ['drop primary c (overflow)', 'checkpoint queue-full']);
    r.s(udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('u') }));
    r.p(r.n('u', udp({ src: '10.0.0.2', dst: '10.0.0.9', sport: 1, dport: 2, payload: Buffer.from('u') })));
    assert.deepEqual(r.take()[0], 'release u (match)');
    assert.equal(r.c.stats().held.primary, 2, 'queued frames are kept, not wiped');
  });

  test('a full connection table evicts an idle connection, never one holding frames', () => {
    const r = rig({ maxConnections: 2 });
    r.p(r.n('a', seg(0, 'a', { dport: 1 })));
    r.s(seg(0, 'b', { dport: 2 }));
    r.p(seg(0, 'b', { dport: 2 })); // flow 2 is idle now
    r.take();
    r.p(r.n('c', seg(0, 'c', { dport: 3 })));
    assert.deepEqual(r.take(), [], 'idle flow 2 made room');
    r.p(r.n('d', seg(0, 'd', { dport: 4 })));
    assert.deepEqual(r.take(), ['drop primary d (overflow)', 'checkpoint table-full']);
    r.checkpoint();
    assert.deepEqual(r.take(), ['release a (checkpoint)', 'release c (checkpoint)']);
  });

  test('ARP and other non-IP frames pass uncompared; malformed frames too, with the typed error', () => {
    const r = rig();
    r.p(r.n('arp', arp('10.0.0.2')));
    r.s(r.n('sarp', arp('10.0.0.3')));
    assert.deepEqual(r.take(), ['release arp (uncompared)', 'drop secondary sarp (uncompared)']);
    const bad = r.n('bad', Buffer.from('0123456789abcdef0800', 'hex').subarray(0, 9));
    r.p(bad);
    const ds = r.last();
    assert.equal(ds[0].type, 'malformed');
    assert.ok(ds[0].type === 'malformed' && ds[0].error instanceof ProxyError && ds[0].error.code === ErrorCodes.PROXY_PACKET_MALFORMED);
    assert.deepEqual(r.take(), ['malformed primary', 'release bad (uncompared)']);
  });

  test('options are validated', () => {
    for (const o of [{ compareTimeoutMs: 0 }, { maxQueueSize: 0 }, { maxQueueSize: 1.5 }, { maxConnections: -1 }]) {
      assert.throws(() => new Comparator(o), (err: unknown) => err instanceof ProxyError && err.code === ErrorCodes.PROXY_BAD_OPTIONS, JSON.stringify(o));
    }
  });
});
