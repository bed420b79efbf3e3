/**
 * The frame traces of the differential test, with the outcome each
 * comparator must produce phase by phase. Where QEMU's colo-compare decides
 * differently on purpose (docs/proxy.md, "Deliberate differences"), the
 * scenario names the difference and states QEMU's outcome too, so the test
 * proves both the agreement and each documented disagreement.
 */
import { TcpFlag, arp, icmp, tcp, udp, withVnetHeader } from '../../proxy/craft.js';
import type { PhaseResult, ScenarioDriver, Step } from './harness.js';

export interface PhaseOutcome {
  released: string[];
  /** A checkpoint was requested in the phase. */
  requested: boolean;
  /** Exactly this many DO_CHECKPOINT messages in the phase. */
  requests?: number;
  /** Compare `released` as a multiset per flow (labels "flow.n") instead of one exact sequence. */
  perFlow?: boolean;
}

export interface Scenario {
  name: string;
  steps: Step[];
  /** One per 'end' step: what Tandem must do. */
  tandem: PhaseOutcome[];
  /** Where QEMU must differ: its outcome per phase (undefined: same as Tandem). */
  qemu?: (PhaseOutcome | undefined)[];
  /** The deliberate difference (docs/proxy.md) that explains `qemu`. */
  difference?: string;
}

const GUEST = '10.0.0.2';
const CLIENT = '10.0.0.9';
const ISN = 0x7fff_ff00; // close to 2^31 and wraps nothing; sequence arithmetic is exercised in unit tests
const ACK = 5000;



/**
 * Builds scenarios for one driver (labels are registered on it).
 * `settled` is the step that shows what a comparator still holds after a
 * phase: for Tandem a check that nothing is held (so nothing can time out),
 * for colo-compare waiting for the timeout request its leftover causes.
 */
export function buildScenarios(d: ScenarioDriver, vnetHdrLen = 0, settled: Step = 'end'): Scenario[] {
  let nextPort = 40000;
  const v = (f: Buffer): Buffer => (vnetHdrLen === 0 ? f : withVnetHeader(f, vnetHdrLen));
  const P = (name: string, f: Buffer): Buffer => d.label(v(f), name);
  const S = (f: Buffer): Buffer => v(f);
  const bytes = (tag: string, n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = (tag.charCodeAt(i % tag.length) + i) & 0xff;
    return b;
  };
  const tcpFlow = () => {
    const dport = nextPort++;
    return (off: number, payload: Buffer, o: { ack?: number; flags?: number; vlan?: number } = {}): Buffer =>
      tcp({ src: GUEST, dst: CLIENT, sport: 80, dport, seq: (ISN + off) >>> 0, ack: o.ack ?? ACK, payload, flags: o.flags, vlan: o.vlan });
  };
  const udpFlow = (family: 4 | 6 = 4, vlan?: number) => {
    const dport = nextPort++;
    const [src, dst] = family === 4 ? [GUEST, CLIENT] : ['fd00::2', 'fd00::9'];
    return (payload: Buffer): Buffer => udp({ src, dst, sport: 53, dport, payload, vlan });
  };
  const none: PhaseOutcome = { released: [], requested: false };
  const reset: Step[] = ['checkpoint', 'end'];

  const out: Scenario[] = [];

  {
    const t = tcpFlow();
    const data = bytes('identical', 5 * 200);
    const seg = (i: number): Buffer => t(i * 200, data.subarray(i * 200, (i + 1) * 200));
    const ps = [0, 1, 2, 3, 4].map((i) => P(`A.${i}`, seg(i)));
    const ss = [0, 1, 2, 3, 4].map((i) => S(seg(i)));
    out.push({ name: 'identical TCP stream', steps: [{ p: ps }, { s: ss }, 'end', ...reset], tandem: [{ released: ['A.0', 'A.1', 'A.2', 'A.3', 'A.4'], requested: false }, none] });
  }
  {
    // Primary cuts 3 x 100 bytes, secondary sends the same 300 bytes in one segment.
    const t = tcpFlow();
    const data = bytes('resegment', 300);
    const ps = [0, 1, 2].map((i) => P(`B.${i}`, t(i * 100, data.subarray(i * 100, (i + 1) * 100))));
    out.push({ name: 're-segmented TCP: primary 3 x 100, secondary 1 x 300', steps: [{ s: [S(t(0, data))] }, { p: ps }, 'end', ...reset], tandem: [{ released: ['B.0', 'B.1', 'B.2'], requested: false }, none] });
  }
  {
    const t = tcpFlow();
    const data = bytes('resegment2', 300);
    const ss = [0, 1, 2].map((i) => S(t(i * 100, data.subarray(i * 100, (i + 1) * 100))));
    out.push({ name: 're-segmented TCP: primary 1 x 300, secondary 3 x 100', steps: [{ s: ss }, { p: [P('C.0', t(0, data))] }, 'end', ...reset], tandem: [{ released: ['C.0'], requested: false }, none] });
  }
  {
    // After the last primary piece, the secondary's big segment is spent: is it let go?
    const t = tcpFlow();
    const data = bytes('spent', 300);
    const ps = [0, 1, 2].map((i) => P(`R.${i}`, t(i * 100, data.subarray(i * 100, (i + 1) * 100))));
    out.push({
      name: 'a spent secondary segment is let go: no timeout on an idle connection',
      steps: [{ s: [S(t(0, data))] }, { p: ps }, 'end', settled, 'end', ...reset],
      tandem: [{ released: ['R.0', 'R.1', 'R.2'], requested: false }, none, none],
      qemu: [undefined, { released: [], requested: true }, none],
      difference: 'colo-compare keeps a secondary segment consumed by several primary ones queued until the next packet, so an idle connection times out into a checkpoint',
    });
  }
  {
    // Cuts that never line up: 150 + 150 against 100 + 200.
    const t = tcpFlow();
    const data = bytes('misaligned', 300);
    const ps = [P('D.0', t(0, data.subarray(0, 150))), P('D.1', t(150, data.subarray(150)))];
    const ss = [S(t(0, data.subarray(0, 100))), S(t(100, data.subarray(100)))];
    out.push({ name: 're-segmented TCP: 150 + 150 against 100 + 200', steps: [{ s: ss }, { p: ps }, 'end', ...reset], tandem: [{ released: ['D.0', 'D.1'], requested: false }, none] });
  }
  {
    const t = tcpFlow();
    const p = P('E.0', t(0, Buffer.from('balance: 100')));
    const s = S(t(0, Buffer.from('balance: 999')));
    out.push({
      name: 'diverging TCP payload',
      steps: [{ s: [s] }, { p: [p] }, 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, { released: ['E.0'], requested: false }],
    });
  }
  {
    const t = tcpFlow();
    const p = P('F.0', t(0, Buffer.from('only the primary says this')));
    out.push({
      name: 'lonely primary TCP segment: timeout',
      steps: [{ p: [p] }, 'await-request', 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, { released: ['F.0'], requested: false }],
    });
  }
  {
    const t = tcpFlow();
    out.push({
      name: 'lonely secondary TCP segment: timeout',
      steps: [{ s: [S(t(0, Buffer.from('only the secondary says this')))] }, 'await-request', 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, none],
    });
  }
  {
    const u = udpFlow();
    const ps = [0, 1, 2].map((i) => P(`G.${i}`, u(Buffer.from(`udp reply ${i}`))));
    const ss = [0, 1, 2].map((i) => S(u(Buffer.from(`udp reply ${i}`))));
    out.push({ name: 'identical UDP datagrams', steps: [{ s: ss }, 'end', { p: ps }, 'end', ...reset], tandem: [none, { released: ['G.0', 'G.1', 'G.2'], requested: false }, none] });
  }
  {
    const u = udpFlow();
    out.push({
      name: 'diverging UDP datagram',
      steps: [{ s: [S(u(Buffer.from('answer: 42')))] }, { p: [P('H.0', u(Buffer.from('answer: 41')))] }, 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, { released: ['H.0'], requested: false }],
    });
  }
  {
    // After a mismatch, a later datagram that matches.
    const u = udpFlow();
    const b = P('T.0', u(Buffer.from('diverged B')));
    const c = P('T.1', u(Buffer.from('agreed C')));
    out.push({
      name: 'UDP: a diverged connection keeps its order and asks once',
      steps: [{ s: [S(u(Buffer.from('diverged A')))] }, { p: [b] }, 'end', { s: [S(u(Buffer.from('agreed C')))] }, { p: [c] }, 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true, requests: 1 }, none, { released: ['T.0', 'T.1'], requested: false }],
      qemu: [undefined, { released: ['T.1'], requested: true, requests: 2 }, { released: ['T.0'], requested: false }],
      difference: 'colo-compare asks again for every packet arriving on a diverged connection, and releases a later matching datagram ahead of the held earlier one',
    });
  }
  {
    const u = udpFlow();
    const ps = [0, 1].map((i) => P(`I.${i}`, u(Buffer.from(`ahead ${i}`))));
    const ss = [0, 1].map((i) => S(u(Buffer.from(`ahead ${i}`))));
    out.push({
      name: 'UDP: the primary runs one datagram ahead',
      steps: [{ p: ps }, 'sync-primary', { s: [ss[0]] }, 'end', { s: [ss[1]] }, 'end', ...reset],
      tandem: [{ released: ['I.0'], requested: false }, { released: ['I.1'], requested: false }, none],
      qemu: [{ released: [], requested: true }, { released: ['I.1', 'I.0'], requested: false }],
      difference: 'colo-compare compares the newest held primary datagram first: a primary one ahead is a spurious mismatch, and its datagrams leave last-in-first-out',
    });
  }
  {
    const ping = (payload: string): Buffer => icmp({ src: GUEST, dst: '10.0.0.77', payload: Buffer.from(payload) });
    out.push({
      name: 'ICMP: identical, then diverging',
      steps: [{ s: [S(ping('echo reply 1'))] }, { p: [P('J.0', ping('echo reply 1'))] }, 'end', { s: [S(ping('echo reply 2'))] }, { p: [P('J.1', ping('echo reply X'))] }, 'end', ...reset],
      tandem: [{ released: ['J.0'], requested: false }, { released: [], requested: true }, { released: ['J.1'], requested: false }],
    });
  }
  {
    // Hundreds of connections, two segments each, interleaved.
    const flows = Array.from({ length: 200 }, () => tcpFlow());
    const ps: Buffer[] = [];
    const ss: Buffer[] = [];
    const expect: string[] = [];
    for (let k = 0; k < 2; k++) {
      flows.forEach((t, i) => {
        const payload = bytes(`flow${i}seg${k}`, 64);
        ps.push(P(`K${i}.${k}`, t(k * 64, payload)));
        ss.push(S(t(k * 64, payload)));
        expect.push(`K${i}.${k}`);
      });
    }
    out.push({ name: '200 TCP connections', steps: [{ s: ss }, { p: ps }, 'end', ...reset], tandem: [{ released: expect, requested: false, perFlow: true }, none] });
  }
  {
    // The client sent 100 bytes; the primary acks them, the secondary has not got them yet.
    const t = tcpFlow();
    const ack = (n: number): Buffer => t(0, Buffer.alloc(0), { ack: ACK + n, flags: TcpFlag.ACK });
    out.push({
      name: 'zero-payload TCP segment: a pure ACK ahead of the secondary',
      steps: [{ s: [S(ack(0))] }, { p: [P('L.0', ack(100))] }, 'end', { s: [S(ack(100))] }, 'end', ...reset],
      tandem: [none, { released: ['L.0'], requested: false }, none],
      qemu: [{ released: ['L.0'], requested: false }, none, none],
      difference: 'colo-compare releases TCP segments without payload uncompared, acks included',
    });
  }
  {
    // Same bytes, but the primary acknowledges client data the secondary has not acknowledged.
    const t = tcpFlow();
    const data = Buffer.from('reply to request 7');
    out.push({
      name: 'TCP: equal payload, primary ack ahead of the secondary',
      steps: [{ s: [S(t(0, data, { ack: ACK }))] }, { p: [P('Q.0', t(0, data, { ack: ACK + 10 }))] }, 'end', { s: [S(t(data.length, Buffer.alloc(0), { ack: ACK + 10, flags: TcpFlag.ACK }))] }, 'end', ...reset],
      tandem: [none, { released: ['Q.0'], requested: false }, none],
      qemu: [{ released: ['Q.0'], requested: false }, none, none],
      difference: 'colo-compare checks the ack only for segments that line up differently; an identically cut segment leaves with an ack the secondary has not reached',
    });
  }
  {
    const u = udpFlow(6);
    out.push({
      name: 'IPv6 UDP diverging',
      steps: [{ s: [S(u(Buffer.from('v6 answer A')))] }, { p: [P('M.0', u(Buffer.from('v6 answer B')))] }, 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, { released: ['M.0'], requested: false }],
      qemu: [{ released: ['M.0'], requested: false }, none],
      difference: 'colo-compare handles IPv4 only and passes IPv6 through uncompared',
    });
  }
  {
    const u = udpFlow(4, 10);
    out.push({
      name: '802.1Q-tagged UDP diverging',
      steps: [{ s: [S(u(Buffer.from('vlan answer A')))] }, { p: [P('N.0', u(Buffer.from('vlan answer B')))] }, 'end', 'checkpoint', 'end'],
      tandem: [{ released: [], requested: true }, { released: ['N.0'], requested: false }],
      qemu: [{ released: ['N.0'], requested: false }, none],
      difference: 'colo-compare passes VLAN-tagged frames through uncompared',
    });
  }
  {
    out.push({
      name: 'ARP passes uncompared',
      steps: [{ p: [P('O.0', arp('10.0.0.2'))] }, { s: [S(arp('10.0.0.3'))] }, 'end'],
      tandem: [{ released: ['O.0'], requested: false }],
    });
  }
  return out;
}

/** Checks one phase's result against what was expected; returns a message per mismatch. */
export function check(result: PhaseResult, e: PhaseOutcome, where: string): string[] {
  const problems: string[] = [];
  if ((result.requests > 0) !== e.requested) problems.push(`${where}: checkpoint requested ${result.requests > 0} (x${result.requests}), expected ${e.requested}`);
  if (e.requests !== undefined && result.requests !== e.requests) problems.push(`${where}: ${result.requests} DO_CHECKPOINT messages, expected ${e.requests}`);
  if (e.perFlow) {
    const byFlow = (xs: string[]): Map<string, string[]> => {
      const m = new Map<string, string[]>();
      for (const x of xs) {
        const f = x.split('.')[0];
        m.set(f, [...(m.get(f) ?? []), x]);
      }
      return m;
    };
    const got = byFlow(result.released);
    const want = byFlow(e.released);
    if (result.released.length !== e.released.length) problems.push(`${where}: released ${result.released.length} frames, expected ${e.released.length}`);
    for (const [f, xs] of want) {
      if (JSON.stringify(got.get(f) ?? []) !== JSON.stringify(xs)) problems.push(`${where}: flow ${f} released ${JSON.stringify(got.get(f) ?? [])}, expected ${JSON.stringify(xs)}`);
    }
  } else if (JSON.stringify(result.released) !== JSON.stringify(e.released)) {
    problems.push(`${where}: released ${JSON.stringify(result.released.slice(0, 20))}, expected ${JSON.stringify(e.released.slice(0, 20))}`);
  }
  return problems;
}
