/**
 * The guest's TCP endpoint behind its virtual NIC: the real key-value
 * commands on the payload, connection state in guest RAM. Two replicas fed
 * the same frames answer with the same frames; after a checkpoint (RAM
 * copied) a replica carries on the primary's connections mid-request.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SimDomain } from '../../../src/domain/sim/domain.js';
import { KvCommands } from '../../../src/guest/commands.js';
import { KvStore } from '../../../src/guest/kv-store.js';
import { GuestNetStack, netStackBytes } from '../../../src/guest/net/stack.js';
import { MSS, Tcp, checksumsValid, decodeSegment, encodeSegment, ipv4, seqAdd, type Endpoint, type Segment } from '../../../src/net/wire.js';
import { Comparator } from '../../../proxy/compare.js';
import { T0_US } from '../helpers.js';

const PAGES = 1024;
const NET_BASE = 3 * 1024 * 1024;
const GUEST: Endpoint = { mac: Buffer.from('525400123456', 'hex'), ip: ipv4('10.0.0.1'), port: 6379 };

class Replica {
  readonly domain = new SimDomain({ pages: PAGES });
  readonly out: Buffer[] = [];
  readonly clock = { us: T0_US };
  readonly stack: GuestNetStack;

  constructor(opts: { secret?: number; maxSockets?: number; rxBytes?: number; from?: Replica } = {}) {
    if (opts.from) {
      // A checkpoint: the primary's RAM, then the guest finds its store and sockets there.
      this.domain.ram.set(opts.from.domain.ram);
      this.stack = GuestNetStack.attach(this.domain, NET_BASE, this.commands(KvStore.attach(this.domain)), (f) => this.out.push(f));
      return;
    }
    const store = KvStore.format(this.domain, { bytes: NET_BASE, hashSeed: 9 });
    this.stack = GuestNetStack.format(
      this.domain,
      { base: NET_BASE, maxSockets: opts.maxSockets ?? 8, rxBytes: opts.rxBytes ?? 4096, ip: GUEST.ip, port: GUEST.port, mac: GUEST.mac, secret: opts.secret ?? 0x1234 },
      this.commands(store),
      (f) => this.out.push(f),
    );
  }

  private commands(store: KvStore): KvCommands {
    return new KvCommands({ store, clock: () => this.clock.us, random: () => 0.5 });
  }

  /** Delivers frames; returns what the guest sent in answer. */
  deliver(...frames: Buffer[]): Buffer[] {
    const start = this.out.length;
    for (const f of frames) this.stack.receive(f);
    return this.out.slice(start);
  }
}

/** The client side of one connection, building frames toward the guest. */
class Client {
  readonly ep: Endpoint;
  seq: number;
  ack = 0;

  constructor(port: number, isn = 1000) {
    this.ep = { mac: Buffer.from('525400abcdef', 'hex'), ip: ipv4('10.0.0.2'), port };
    this.seq = isn;
  }

  syn(): Buffer {
    const f = encodeSegment({ src: this.ep, dst: GUEST, seq: this.seq, ack: 0, flags: Tcp.SYN, window: 65535 });
    this.seq = seqAdd(this.seq, 1);
    return f;
  }

  /** `text` as MSS-sized segments. */
  segments(text: string): Buffer[] {
    const out: Buffer[] = [];
    for (let i = 0; i < text.length; i += MSS) out.push(this.data(text.slice(i, i + MSS)));
    return out;
  }

  data(text: string, flags = Tcp.ACK | Tcp.PSH): Buffer {
    const payload = Buffer.from(text, 'latin1');
    const f = encodeSegment({ src: this.ep, dst: GUEST, seq: this.seq, ack: this.ack, flags, window: 65535, payload });
    this.seq = seqAdd(this.seq, payload.length);
    return f;
  }

  fin(): Buffer {
    const f = encodeSegment({ src: this.ep, dst: GUEST, seq: this.seq, ack: this.ack, flags: Tcp.FIN | Tcp.ACK, window: 65535 });
    this.seq = seqAdd(this.seq, 1);
    return f;
  }

  /** Takes the guest's answer: checks it is to us and in sequence, returns its payload. */
  take(frames: Buffer[]): { text: string; segs: Segment[] } {
    const segs = frames.map((f) => {
      assert.ok(checksumsValid(f), 'guest frames carry valid checksums');
      return decodeSegment(f);
    });
    let text = '';
    for (const s of segs) {
      assert.equal(s.dst.port, this.ep.port);
      if ((s.flags & Tcp.SYN) !== 0) {
        assert.equal(s.ack, this.seq, 'SYN-ACK acknowledges our SYN');
        this.ack = seqAdd(s.seq, 1);
        continue;
      }
      assert.equal(s.seq, this.ack, 'guest data in sequence');
      text += s.payload.toString('latin1');
      this.ack = seqAdd(this.ack, s.payload.length + ((s.flags & Tcp.FIN) !== 0 ? 1 : 0));
    }
    return { text, segs };
  }
}

const resp = (...args: string[]): string => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;

describe('GuestNetStack', () => {
  test('handshake, a request cut across segments, pipelined requests, and QUIT closing with a FIN', () => {
    const g = new Replica();
    const c = new Client(40000);
    const synAck = c.take(g.deliver(c.syn()));
    assert.equal(synAck.segs[0].flags, Tcp.SYN | Tcp.ACK);
    assert.equal(g.stack.connections(), 1);
    const set = resp('SET', 'k', 'v');
    assert.deepEqual(g.deliver(c.data(set.slice(0, 9))), [], 'no reply to half a request');
    assert.equal(c.take(g.deliver(c.data(set.slice(9)))).text, '+OK\r\n');
    assert.equal(c.take(g.deliver(c.data(resp('GET', 'k') + resp('INCR', 'n') + resp('INCR', 'n')))).text, '$1\r\nv\r\n:1\r\n:2\r\n');
    // A complete request and the start of the next in one segment: the rest of the buffer moves to its front.
    const get = resp('GET', 'k');
    assert.equal(c.take(g.deliver(c.data(resp('PING') + get.slice(0, 7)))).text, '+PONG\r\n');
    assert.equal(c.take(g.deliver(c.data(get.slice(7)))).text, '$1\r\nv\r\n');
    const quit = c.take(g.deliver(c.data(resp('QUIT') + resp('GET', 'k'))));
    assert.equal(quit.text, '+OK\r\n', 'requests after QUIT are not run');
    assert.ok((quit.segs.at(-1)!.flags & Tcp.FIN) !== 0);
    // The peer's FIN completes the close.
    const last = g.deliver(c.fin());
    assert.equal(decodeSegment(last[0]).flags, Tcp.ACK);
    assert.equal(g.stack.connections(), 0);
    assert.equal(g.stack.counter('accepted'), 1);
  });

  test('a large reply is cut at the MSS, in sequence', () => {
    const g = new Replica({ rxBytes: 16384 });
    const c = new Client(40001);
    c.take(g.deliver(c.syn()));
    const value = 'x'.repeat(5000);
    assert.equal(c.take(g.deliver(...c.segments(resp('SET', 'big', value)))).text, '+OK\r\n');
    const got = c.take(g.deliver(c.data(resp('GET', 'big'))));
    assert.equal(got.text, `$5000\r\n${value}\r\n`);
    assert.deepEqual(got.segs.map((s) => s.payload.length), [MSS, MSS, MSS, 5009 - 3 * MSS]);
  });

  test('the client closing first gets a FIN back; a malformed or oversized request is answered with an error and a FIN', () => {
    const g = new Replica({ rxBytes: 128 });
    const a = new Client(40002);
    a.take(g.deliver(a.syn()));
    const fin = a.take(g.deliver(a.fin()));
    assert.equal(fin.segs[0].flags, Tcp.FIN | Tcp.ACK);
    assert.equal(g.stack.connections(), 0);

    const b = new Client(40003);
    b.take(g.deliver(b.syn()));
    const big = b.take(g.deliver(...b.segments(resp('SET', 'k', 'y'.repeat(200)))));
    assert.match(big.text, /^-ERR Protocol error: request larger than the guest's 128-byte receive buffer\r\n$/);
    assert.ok((big.segs.at(-1)!.flags & Tcp.FIN) !== 0);

    const d = new Client(40004);
    d.take(g.deliver(d.syn()));
    assert.match(d.take(g.deliver(d.data('*1\r\n$x\r\n'))).text, /^-ERR Protocol error: invalid bulk length/);
  });

  test('unknown connections get a RST, duplicates and gaps are dropped, a full socket table refuses', () => {
    const g = new Replica({ maxSockets: 1 });
    const stranger = new Client(50000);
    stranger.seq = 77;
    const rst = g.deliver(stranger.data('hello'));
    assert.equal(decodeSegment(rst[0]).flags, Tcp.RST);
    const c = new Client(40005);
    c.take(g.deliver(c.syn()));
    const frame = c.data(resp('PING'));
    assert.equal(c.take(g.deliver(frame)).text, '+PONG\r\n');
    const dropped = g.stack.counter('dropped');
    assert.deepEqual(g.deliver(frame), [], 'a duplicate is not run again');
    assert.equal(g.stack.counter('dropped'), dropped + 1);
    const other = new Client(40006);
    const refused = g.deliver(other.syn());
    assert.equal(decodeSegment(refused[0]).flags, Tcp.RST | Tcp.ACK);
    assert.equal(g.stack.counter('refused'), 1);
    // Not for this guest: dropped without an answer.
    const elsewhere = encodeSegment({ src: c.ep, dst: { ...GUEST, port: 1 }, seq: 1, ack: 0, flags: Tcp.SYN, window: 1 });
    assert.deepEqual(g.deliver(elsewhere, Buffer.alloc(10)), []);
  });

  test('two replicas fed the same frames answer with identical frames; TIME makes them differ and the comparator asks for a checkpoint', () => {
    const p = new Replica();
    const s = new Replica();
    const cmp = new Comparator();
    const c = new Client(40007);
    let t = 0;
    const both = (f: Buffer): { checkpoints: number; released: number } => {
      const ps = p.deliver(f);
      const ss = s.deliver(f);
      let checkpoints = 0;
      let released = 0;
      for (const x of [...ps.map((d) => ['primary', d] as const), ...ss.map((d) => ['secondary', d] as const)]) {
        for (const dec of cmp.push(x[0], { data: x[1], vnetHdrLen: 0 }, t++)) {
          if (dec.type === 'checkpoint') checkpoints++;
          if (dec.type === 'release') released++;
        }
      }
      c.take(ps);
      return { checkpoints, released };
    };
    assert.deepEqual(both(c.syn()), { checkpoints: 0, released: 1 });
    assert.deepEqual(both(c.data(resp('SET', 'a', '1') + resp('INCR', 'a'))), { checkpoints: 0, released: 1 });
    s.clock.us += 1_000_000;
    assert.equal(both(c.data(resp('TIME'))).checkpoints, 1, 'the secondary answered TIME differently');
  });

  test('after a checkpoint the secondary carries on the primary connection mid-request', () => {
    const p = new Replica();
    const c = new Client(40008);
    c.take(p.deliver(c.syn()));
    c.take(p.deliver(c.data(resp('SET', 'x', 'before'))));
    const get = resp('GET', 'x');
    p.deliver(c.data(get.slice(0, 5))); // half a request waits in the socket's buffer in RAM
    const s = new Replica({ from: p });
    const rest = c.data(get.slice(5));
    const fromP = p.deliver(rest);
    const fromS = s.deliver(rest);
    assert.equal(fromS.length, 1);
    assert.ok(fromS[0].equals(fromP[0]), 'the replica sends the very same frame');
    assert.equal(c.take(fromP).text, '$6\r\nbefore\r\n');
  });

  test('format and attach check their input', () => {
    const d = new SimDomain({ pages: 16 });
    const commands = new KvCommands({ store: KvStore.format(d, { bytes: 32 * 1024 }) });
    const f = { base: 32 * 1024, maxSockets: 4, rxBytes: 1024, ip: 1, port: 1, mac: Buffer.alloc(6), secret: 1 };
    assert.throws(() => GuestNetStack.format(d, { ...f, rxBytes: 1001 }, commands, () => {}), /rxBytes 1001/);
    assert.throws(() => GuestNetStack.format(d, { ...f, maxSockets: 100 }, commands, () => {}), /do not fit RAM/);
    assert.throws(() => GuestNetStack.format(d, { ...f, mac: Buffer.alloc(5) }, commands, () => {}), /MAC/);
    assert.equal(netStackBytes(4, 1024), 64 + 4 * (32 + 1024));
    assert.throws(() => GuestNetStack.attach(d, 32 * 1024, commands, () => {}), /bad magic/);
    GuestNetStack.format(d, f, commands, () => {});
    assert.equal(GuestNetStack.attach(d, 32 * 1024, commands, () => {}).connections(), 0);
  });
});
