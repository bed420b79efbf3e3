import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { icmp, ip, tcp, udp } from '../../proxy/craft.js';
import { FlowTable } from '../../proxy/flows.js';
import { decodePacket, type Packet } from '../../proxy/packet.js';

const find = (t: FlowTable<string>, p: Packet): string | undefined => t.get(p, t.hash(p));
const put = (t: FlowTable<string>, p: Packet, v: string): void => t.add(t.identify(p, t.hash(p)), v);

describe('FlowTable', () => {
  const base = { src: '10.0.0.2', dst: '10.0.0.9', sport: 80, dport: 40000, seq: 1 };
  const seg = (o: Partial<typeof base> & { vlan?: number } = {}): Packet => decodePacket(tcp({ ...base, ...o }));

  test('one flow, one entry; a different port, address, VLAN or protocol is another flow', () => {
    const t = new FlowTable<string>();
    put(t, seg(), 'base');
    assert.equal(find(t, seg({ seq: 99 })), 'base', 'another segment of the flow');
    for (const other of [{ sport: 81 }, { dport: 40001 }, { src: '10.0.0.3' }, { dst: '10.0.0.8' }, { src: '10.0.0.9', dst: '10.0.0.2' }, { vlan: 5 }]) {
      assert.equal(find(t, seg(other)), undefined, JSON.stringify(other));
    }
    assert.equal(find(t, decodePacket(udp({ ...base, payload: Buffer.from('x') }))), undefined, 'UDP on the same ports');
    assert.equal(find(t, decodePacket(ip(99, Buffer.from('x'), base))), undefined, 'another protocol between the same addresses');
    assert.equal(t.size, 1);
  });

  test('IPv6 addresses are compared in full', () => {
    const t = new FlowTable<string>();
    const v6 = (src: string, dst: string): Packet => decodePacket(udp({ src, dst, sport: 53, dport: 5353, payload: Buffer.from('q') }));
    put(t, v6('fd00::2', 'fd00::9'), 'a');
    assert.equal(find(t, v6('fd00::2', 'fd00::9')), 'a');
    assert.equal(find(t, v6('fd00::2', 'fd00::1:9')), undefined);
    assert.equal(find(t, v6('fd01::2', 'fd00::9')), undefined);
    // The table keeps its own copy: the packet's bytes may be reused.
    const p = v6('fd00::3', 'fd00::9');
    put(t, p, 'b');
    p.data.fill(0);
    assert.equal(find(t, v6('fd00::3', 'fd00::9')), 'b');
  });

  test('flows that share a hash share a chain: each is found, and deleting one keeps the others', () => {
    const t = new FlowTable<string>();
    const ps = [seg({ sport: 1 }), seg({ sport: 2 }), seg({ sport: 3 }), decodePacket(icmp({ src: 'fd00::2', dst: 'fd00::9', payload: Buffer.from('x') }))];
    const ids = ps.map((p, i) => {
      const id = t.identify(p, 7);
      t.add(id, `v${i}`);
      return id;
    });
    ps.forEach((p, i) => assert.equal(t.get(p, 7), `v${i}`));
    assert.equal(t.get(seg({ sport: 4 }), 7), undefined);
    assert.equal(t.delete(ids[1]), true, 'the middle of the chain');
    assert.equal(t.delete(ids[1]), false, 'already gone');
    assert.equal(t.get(ps[1], 7), undefined);
    for (const i of [0, 2, 3]) assert.equal(t.get(ps[i], 7), `v${i}`);
    assert.equal(t.delete(ids[3]), true, 'the head of the chain');
    assert.equal(t.delete(ids[0]), true, 'its tail');
    assert.deepEqual([...t.values()], ['v2']);
    assert.equal(t.size, 1);
  });

  test('against a Map keyed by the flow as text, over random adds and deletes', () => {
    let seed = 12345;
    const rnd = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    // Few distinct values per field, so flows repeat and differ in one field only.
    const flow = (): { p: Packet; text: string } => {
      const o = { src: `10.0.0.${rnd(3)}`, dst: `10.0.${rnd(2)}.9`, sport: rnd(3), dport: 7, seq: rnd(1000), vlan: rnd(2) === 0 ? undefined : rnd(2) };
      const p = rnd(2) === 0 ? decodePacket(tcp(o)) : decodePacket(udp({ ...o, payload: Buffer.from('u') }));
      return { p, text: `${p.kind}/${o.src}/${o.dst}/${o.sport}/${o.vlan}` };
    };
    // A 3-bit hash: long chains on purpose.
    const t = new FlowTable<string>(1);
    const hash = (p: Packet): number => t.hash(p) & 7;
    const ref = new Map<string, ReturnType<FlowTable<string>['identify']>>();
    for (let i = 0; i < 3000; i++) {
      const { p, text } = flow();
      const h = hash(p);
      assert.equal(t.get(p, h), ref.has(text) ? text : undefined, `lookup ${i}: ${text}`);
      if (!ref.has(text)) {
        const id = t.identify(p, h);
        t.add(id, text);
        ref.set(text, id);
      } else if (rnd(3) === 0) {
        assert.equal(t.delete(ref.get(text)!), true);
        ref.delete(text);
      }
      assert.equal(t.size, ref.size);
    }
    assert.deepEqual([...t.values()].sort(), [...ref.keys()].sort());
  });

  test('the hash is seeded: two tables spread the same flows differently', () => {
    const ps = Array.from({ length: 16 }, (_, i) => seg({ sport: i }));
    const a = new FlowTable<string>(1);
    const b = new FlowTable<string>(2);
    assert.notDeepEqual(ps.map((p) => a.hash(p)), ps.map((p) => b.hash(p)));
    for (const p of ps) assert.ok(Number.isInteger(a.hash(p)) && a.hash(p) >= 0 && a.hash(p) < 2 ** 30);
  });
});
