/**
 * What mutual TLS costs the replication stream: the same two measurements
 * as the engine benchmark, each over plain TCP and over mutual TLS 1.3 (the
 * transport `tandem primary` and `tandem secondary` run, with certificates
 * made for the run), in the same run, rounds interleaved and alternating in
 * order:
 *
 * - stream: pre-copy of an idle guest to a real secondary in a worker
 *   thread (encode, encrypt, send, decrypt, parse, apply, ack), MB/s;
 * - epochs/s: back-to-back epochs of 100 dirty pages through the whole
 *   engine to a secondary in a worker thread, as many as it sustains.
 *
 * Target: TLS at least 70 % of plain TCP on both. Sender and receiver each
 * have a thread, as they would have a host; both threads share this
 * machine's cores with each other and with everything else on it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EPOCH_RATE_MIB, epochRate, precopyOnce, simGuest, startPeer } from '../src/bench/engine.js';
import { caseResult, compare, median, type BenchResult, type Benchmark, type Comparison } from '../src/bench/stats.js';
import { certsInit } from '../src/transport/certs.js';
import { tcpTransport } from '../src/transport/tcp.js';
import { loadTlsCredentials } from '../src/transport/tls-files.js';
import { tlsTransport } from '../src/transport/tls.js';
import type { Transport } from '../src/transport/transport.js';

const TARGET = 0.7;
type Kind = 'tcp' | 'tls';
const LABEL: Record<Kind, string> = { tcp: 'plain TCP', tls: 'mutual TLS 1.3' };

/** The two nodes' credentials, from a `tandem certs init` directory made for this run. */
async function credentials(dir: string): Promise<{ primary: Transport; secondary: { ca: Buffer; cert: Buffer; key: Buffer; name: string; peer: string } }> {
  await certsInit(dir, { nodes: ['primary', 'secondary'], days: 1 });
  const load = (name: string, peer: string) => loadTlsCredentials({ dir, name, peer, handshakeTimeoutMs: 5000, insecure: false, ca: undefined, cert: undefined, key: undefined }, () => {});
  const p = load('primary', 'secondary');
  const s = load('secondary', 'primary');
  return { primary: tlsTransport({ ...p, handshakeTimeoutMs: 5000 }), secondary: { ca: s.ca, cert: s.cert, key: s.key, name: s.name, peer: s.peer } };
}

export const tls: Benchmark = {
  name: 'tls',
  description: 'stream MB/s and max epochs/s over mutual TLS vs plain TCP (same run)',
  async run(ctx): Promise<BenchResult> {
    const started = performance.now();
    const mib = ctx.quick ? 64 : 256;
    const rounds = ctx.rounds ?? (ctx.quick ? 3 : 7);
    const rateSeconds = ctx.quick ? 1 : 2;
    const rateRounds = ctx.rounds ?? (ctx.quick ? 2 : 4);
    const dir = mkdtempSync(join(tmpdir(), 'tandem-bench-tls-'));
    try {
      const creds = await credentials(join(dir, 'tls'));
      const transports: Record<Kind, Transport> = { tcp: tcpTransport, tls: creds.primary };

      // Stream: one secondary per transport, each in its own thread.
      const guest = simGuest(mib);
      const peers = { tcp: await startPeer({ role: 'secondary', mib }), tls: await startPeer({ role: 'secondary', mib, tls: creds.secondary }) };
      const samples: Record<string, number[]> = { tcp: [], tls: [] };
      let bytes = 0;
      try {
        // Two warm-up rounds: the replicas' memory is faulted in, the JIT settles.
        for (let r = -2; r < rounds; r++) {
          const order: Kind[] = r % 2 === 0 ? ['tcp', 'tls'] : ['tls', 'tcp'];
          const line: string[] = [];
          for (const kind of order) {
            const p = await precopyOnce(guest, peers[kind].port, transports[kind]);
            if (bytes !== 0 && p.bytes !== bytes) throw new Error(`pre-copy sent ${p.bytes} bytes, an earlier one ${bytes}`);
            bytes = p.bytes;
            if (r >= 0) samples[kind].push(p.ms * 1e6);
            line.push(`${kind} ${(p.bytes / (p.ms * 1000)).toFixed(0)} MB/s`);
          }
          ctx.log(`  stream round ${r + 1}${r < 0 ? ' (warm-up)' : ''}: ${line.join(', ')}`);
        }
      } finally {
        await peers.tcp.stop();
        await peers.tls.stop();
      }
      const cases = [caseResult('stream-tcp', `pre-copy over ${LABEL.tcp}`, bytes, samples.tcp, true), caseResult('stream-tls', `pre-copy over ${LABEL.tls}`, bytes, samples.tls)];
      const comparisons: Comparison[] = [compare(cases[1], cases[0], { 'stream-tcp': samples.tcp, 'stream-tls': samples.tls }, `stream: TLS ${cases[1].mbps.toFixed(0)} vs TCP ${cases[0].mbps.toFixed(0)} MB/s`, TARGET)];

      // Epochs/s: one secondary per transport again (a replica of the rate guest's size).
      const ratePeers = { tcp: await startPeer({ role: 'secondary', mib: EPOCH_RATE_MIB }), tls: await startPeer({ role: 'secondary', mib: EPOCH_RATE_MIB, tls: creds.secondary }) };
      const rates: Record<Kind, number[]> = { tcp: [], tls: [] };
      try {
        for (let r = 0; r < rateRounds; r++) {
          const order: Kind[] = r % 2 === 0 ? ['tcp', 'tls'] : ['tls', 'tcp'];
          for (const kind of order) rates[kind].push(await epochRate(rateSeconds, ratePeers[kind].port, transports[kind]));
          ctx.log(`  epochs/s round ${r + 1}: tcp ${rates.tcp[r]}, tls ${rates.tls[r]}`);
        }
      } finally {
        await ratePeers.tcp.stop();
        await ratePeers.tls.stop();
      }
      const tcpRate = median(rates.tcp);
      const tlsRate = median(rates.tls);
      comparisons.push({
        subject: 'epochs-tls',
        baseline: 'epochs-tcp',
        label: `epochs/s at 100 dirty pages: TLS ${tlsRate.toFixed(0)} vs TCP ${tcpRate.toFixed(0)} (medians of ${rateRounds} x ${rateSeconds} s)`,
        ratio: tlsRate / tcpRate,
        pairedRatio: median(rates.tls.map((x, i) => x / rates.tcp[i])),
        target: { min: TARGET, text: `>= ${TARGET * 100}% of plain TCP`, pass: tlsRate / tcpRate >= TARGET },
      });
      return {
        name: 'tls',
        title: 'mutual TLS vs plain TCP: stream throughput and epoch rate',
        params: { quick: ctx.quick, guestMib: mib, rounds, rateRounds, rateSeconds },
        cases,
        comparisons,
        notes: [`epochs/s samples: tcp ${rates.tcp.join(', ')}; tls ${rates.tls.join(', ')}`],
        elapsedMs: performance.now() - started,
      };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
