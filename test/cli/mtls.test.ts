/**
 * Mutual TLS between real `tandem` processes: a pair made with the test's
 * certificates protects a guest, its stream, acks and heartbeats over TLS
 * 1.3; primaries with the wrong certificate (the same CA's for another
 * node, another CA's for the right name) and a plain-TCP primary are
 * refused, and so are forged heartbeats of a newer generation, before and
 * while the real pair runs; none of them changes anything on the
 * secondary: no stream taken, no byte in the replica, no generation
 * adopted (which would fence the real primary of generation 1), no
 * failover.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { encodeHeartbeat } from '../../src/heartbeat/codec.js';
import { ask } from '../guest/helpers.js';
import { tempDir } from '../helpers/cli.js';
import { monitorUrl, spawnTandem, type TandemProcess } from '../helpers/proc.js';
import { ATTACKERS, attack, testCerts, tlsArgs } from '../helpers/tls.js';

const tmp = tempDir();
after(() => tmp.cleanup());

const msg = (l: Record<string, unknown>): string => String(l.msg);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A primary that must be refused: it dials the secondary (twice at least, it retries), never protects, never hears it. */
async function refusedPrimary(config: string, port: number, heartbeat: string, flags: string[]): Promise<TandemProcess> {
  const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--heartbeat', heartbeat, '--service', '127.0.0.1:0', ...flags]);
  const degraded = (): number => primary.lines.filter((l) => l.state === 'degraded').length;
  await primary.waitLine((l) => l.state === 'degraded', 'the first refusal');
  await primary.waitLine(() => degraded() >= 2, 'a second refusal after a retry');
  assert.ok(!primary.lines.some((l) => l.state === 'protected'), 'never protected');
  assert.ok(!primary.lines.some((l) => /heartbeat: secondary alive/.test(msg(l))), 'never heard the secondary');
  primary.child.kill('SIGTERM');
  await primary.closed;
  return primary;
}

/** Beats of a primary of generation 1000 from each kind of unauthenticated peer; each must be closed by the listener. */
async function forgeHeartbeats(heartbeatPort: number): Promise<void> {
  const forged = encodeHeartbeat({ role: 'primary', incarnation: 0xbad, generation: 1000, sequence: 0, epoch: 1_000_000, sentAtUs: 1 });
  for (const who of ATTACKERS) {
    const { sent, closedByListener } = await attack(heartbeatPort, who, forged);
    assert.ok(sent >= 1, `${who}: the beat went out`);
    assert.ok(closedByListener, `${who}: the heartbeat listener closed it`);
  }
}

/** What /api/status of the secondary's monitor says. */
const status = async (url: string): Promise<{ state: string; lastEpoch: number }> => (await fetch(new URL('/api/status', url))).json() as Promise<{ state: string; lastEpoch: number }>;

describe('mutual TLS between real processes', () => {
  test('a real pair protects the guest over mutual TLS; wrong certificates, plain TCP and forged heartbeats are refused and change nothing', async () => {
    const { other } = await testCerts();
    const config = tmp.path('pair.yaml');
    // A patient heartbeat: this test is about who may talk, not failure detection, and a loaded machine's stall
    // past the default 250 ms would fail the secondary over and fence the real primary for no fault of TLS.
    writeFileSync(config, 'domain:\n  memory_mib: 4\n  disk_mib: 1\nheartbeat:\n  timeout_ms: 3000\nprimary:\n  retry_ms: 200\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n');
    const plain = tmp.path('plain.yaml');
    writeFileSync(plain, 'domain:\n  memory_mib: 4\n  disk_mib: 1\nprimary:\n  retry_ms: 200\ntls:\n  insecure: true\n');

    const secondary = spawnTandem(['secondary', '--config', config, '--monitor', '127.0.0.1:0', ...(await tlsArgs('secondary'))]);
    const monitor = String((await secondary.waitLine(monitorUrl, "the secondary's monitor")).monitor);
    const port = Number((await secondary.waitLine((l) => typeof l.port === 'number' && /secondary listening/.test(msg(l)), 'the secondary')).port);
    const heartbeat = String((await secondary.waitLine((l) => typeof l.heartbeat === 'string', 'the heartbeat channel')).heartbeat);
    const heartbeatPort = Number(heartbeat.split(':').at(-1));
    const said = await secondary.waitLine((l) => /mutual TLS 1\.3 as "secondary", accepting only "primary"/.test(msg(l)), 'the TLS line');
    assert.equal(said.level, 30);
    const before = await status(monitor);

    // Another node of the same CA: refused on the replication and the heartbeat listener, and it is told so.
    const intruder = await refusedPrimary(config, port, heartbeat, await tlsArgs('intruder', 'secondary'));
    assert.ok(intruder.lines.some((l) => /^the secondary at 127\.0\.0\.1:\d+ refused: it closed the connection instead of accepting node "intruder"/.test(String(l.reason))), intruder.text());
    await secondary.waitLine((l) => l.code === 'ERR_TRANSPORT_PEER_MISMATCH' && /for the primary from .*names "intruder", not the configured peer "primary"/.test(msg(l)), "the replication listener's refusal");
    await secondary.waitLine((l) => l.code === 'ERR_TRANSPORT_PEER_MISMATCH' && /for heartbeats from/.test(msg(l)), "the heartbeat listener's refusal");
    // The right name from another CA.
    const forged = await refusedPrimary(config, port, heartbeat, ['--tls', other, '--name', 'primary', '--peer', 'secondary']);
    assert.ok(forged.lines.some((l) => /^the secondary at 127\.0\.0\.1:\d+ refused: its certificate is not issued by this node's CA/.test(String(l.reason))), forged.text());
    // It refuses the secondary's certificate first (TLS 1.3: the listener's goes first) and hangs up, which the secondary logs.
    await secondary.waitLine((l) => l.code === 'ERR_TRANSPORT_TLS_REFUSED' && /for the primary from .*it closed the connection during the handshake/.test(msg(l)), 'the other CA hanging up');
    // A primary over plain TCP (insecure mode, which is its own choice): refused before a byte of its stream is read.
    await refusedPrimary(plain, port, heartbeat, []);
    await secondary.waitLine((l) => l.code === 'ERR_TRANSPORT_TLS_REFUSED' && /for the primary from .*it does not speak TLS \(plain TCP\?\)/.test(msg(l)), 'plain TCP refused');
    // Forged heartbeats of a newer primary: adopted, generation 1000 would fence the real primary below at once.
    await forgeHeartbeats(heartbeatPort);

    // The secondary heard nothing of any of them: no stream, no replica state, no heartbeat, no failover.
    await sleep(300);
    const changed = secondary.lines.filter((l) => /primary connected|replica|heartbeat: primary|FAILED OVER|promot/.test(msg(l)));
    assert.deepEqual(changed, [], 'the secondary changed nothing for an unauthenticated peer');
    const now = await status(monitor);
    assert.deepEqual([now.state, now.lastEpoch], [before.state, 0], 'the replica as it was: no checkpoint, no sync under way');
    assert.equal(secondary.child.exitCode, null, 'still running');

    // The right primary, of generation 1: it protects the guest, which serves through it; it is not fenced.
    const primary = spawnTandem(['primary', '--config', config, '--secondary', `127.0.0.1:${port}`, '--heartbeat', heartbeat, '--service', '127.0.0.1:0', '--interval', '20', '--log-level', 'debug', ...(await tlsArgs('primary'))]);
    await primary.waitLine((l) => l.state === 'protected', 'protection');
    const service = Number(String((await primary.waitLine((l) => typeof l.service === 'string', 'the service')).service).split(':').at(-1));
    assert.deepEqual(await ask(service, [['SET', 'over', 'tls'], ['GET', 'over']]), ['OK', Buffer.from('tls')]);
    await secondary.waitLine((l) => /replica protected: consistent at epoch 1/.test(msg(l)), "the secondary's replica protected");
    await secondary.waitLine((l) => /heartbeat: primary alive/.test(msg(l)), 'heartbeats over TLS');
    const epochs = await primary.waitLine((l) => l.msg === 'epoch' && typeof l.epoch === 'number' && l.epoch >= 5, 'five epochs over TLS');
    assert.ok((await status(monitor)).lastEpoch >= 1, 'the replica holds epochs of the real primary');

    // While it is protected: a wrong certificate and forged beats again. The stream goes on, the primary stays unfenced.
    const connectedBefore = secondary.lines.filter((l) => /primary connected/.test(msg(l))).length;
    await refusedPrimary(config, port, heartbeat, await tlsArgs('intruder', 'secondary'));
    await forgeHeartbeats(heartbeatPort);
    const later = Number(epochs.epoch) + 10;
    await primary.waitLine((l) => l.msg === 'epoch' && Number(l.epoch) >= later, 'more epochs');
    await sleep(300);
    assert.equal(secondary.lines.filter((l) => /primary connected/.test(msg(l))).length, connectedBefore, 'the stream was never replaced');
    assert.ok(!primary.lines.some((l) => /FENCED/.test(msg(l))), 'the real primary was never fenced');
    assert.ok(!secondary.lines.some((l) => /FAILED OVER|superseded/.test(msg(l))), 'no failover, no stream superseded');
    assert.equal(primary.child.exitCode, null, 'the primary still serves');
    assert.deepEqual(await ask(service, [['GET', 'over']]), [Buffer.from('tls')]);
    primary.child.kill('SIGTERM');
    await primary.closed;
  });
});
