/**
 * Role-change hooks on nodes assembled as `tandem primary` and `tandem
 * secondary` assemble them (src/node/), over the in-memory network, with a
 * real hook executable per node: which events each node's hook hears, in
 * which order, with which generation, role and service, through a failover
 * and the fencing of the old primary, and across a failback's hand-over
 * from the promoted secondary to the primary node it then runs.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { filter, firstValueFrom } from 'rxjs';
import type { TandemConfig } from '../../src/config/config.js';
import { createBinding } from '../../src/domain/bindings.js';
import { PrimaryNode } from '../../src/node/primary.js';
import { SecondaryNode } from '../../src/node/secondary.js';
import { tempDir } from '../helpers/cli.js';
import { hookCalls, writeRecordingHook } from '../helpers/hook-recorder.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { silent } from '../helpers/sim.js';
import { until } from '../helpers/wait.js';
import { nodeConfig } from './helpers.js';

const tmp = tempDir('tandem-role-change-');
const stops: (() => Promise<void>)[] = [];
after(async () => {
  for (const s of stops.reverse()) await s().catch(() => {});
  tmp.cleanup();
});

/** `cfg` with a recording hook writing to `tmp/NAME.jsonl`; returns the file. */
function withHook(cfg: TandemConfig, name: string): string {
  const out = tmp.path(`${name}.jsonl`);
  cfg.hooks.roleChange = writeRecordingHook(tmp.path(`${name}-hook`), out);
  cfg.arbiter.domain = 'vm-test';
  return out;
}

/** [event, generation, role] of each run so far. */
const events = (out: string): string[] => hookCalls(out).map((r) => `${r.argv![0]} ${r.argv![2]} ${r.argv![3]}`);

async function heard(out: string, event: string, what: string): Promise<void> {
  await until(() => hookCalls(out).some((r) => r.argv![0] === event), `${what}: the hook to hear ${event} (so far: ${events(out).join(', ')})`, 10_000, 20);
}

describe('role-change hooks on the nodes', () => {
  test('serving, protected, a failover (promoted on the secondary, unprotected then fenced on the old primary), stopped', { timeout: 60_000 }, async () => {
    const secondaryHost = new MemoryTransport();
    const primaryHost = secondaryHost.peer();
    const scfg = nodeConfig();
    const sOut = withHook(scfg, 'secondary');
    const secondary = new SecondaryNode({ cfg: scfg, mode: 'remus', binding: createBinding(scfg.domain), transport: secondaryHost, logger: silent });
    await secondary.start();
    stops.push(() => secondary.stop('test'));
    const pcfg = nodeConfig();
    const pOut = withHook(pcfg, 'primary');
    const primary = new PrimaryNode({ cfg: pcfg, mode: 'remus', binding: createBinding(pcfg.domain), transport: primaryHost, logger: silent });
    const service = await primary.start();
    stops.push(() => primary.stop({ kind: 'signal', signal: 'test' }));
    await firstValueFrom(primary.protection!.state$.pipe(filter((s) => s.state === 'protected')));
    await heard(pOut, 'protected', 'the primary');

    primaryHost.cut();
    await until(() => secondary.parts.promoter.promotion !== undefined, 'the takeover', 10_000);
    const promotion = secondary.parts.promoter.promotion!;
    await heard(sOut, 'promoted', 'the secondary');
    // The old primary, cut off, lost its standby: unprotected, until it hears the newer generation.
    await heard(pOut, 'unprotected', 'the old primary');
    const fenced = primary.whenFenced();
    primaryHost.heal();
    await primary.stop({ kind: 'fenced', ...(await fenced) });
    await secondary.stop('test');

    const p = hookCalls(pOut);
    // A loaded machine may see the standby lost and found again before the cut: each edge is said, in order, never twice.
    assert.match(events(pOut).join(', '), /^serving 1 primary(, protected 1 primary, unprotected 1 primary)+, fenced 1 fenced$/);
    assert.equal(p[0].env!.TANDEM_SERVICE, `127.0.0.1:${service.port}`);
    assert.equal(p[0].argv![1], 'vm-test');
    const last = p.at(-1)!;
    assert.match(last.argv![4], /^fenced: generation 2 serves the guest now \(this node's generation: 1\)$/);
    assert.equal(last.env!.TANDEM_EVENT, 'fenced');
    assert.equal(last.env!.TANDEM_SERVICE, undefined);
    assert.deepEqual(p.map((r) => r.env!.TANDEM_SEQUENCE), p.map((_, i) => String(i + 1)));

    const s = hookCalls(sOut);
    assert.deepEqual(events(sOut), ['standby 1 secondary', 'promoted 2 primary', 'stopped 2 stopped']);
    assert.equal(s[1].env!.TANDEM_SERVICE, `127.0.0.1:${promotion.service.port}`);
    assert.match(s[1].argv![4], /taking over as generation 2/);
    assert.equal(s[1].env!.TANDEM_GENERATION, '2');
  });

  test('failback: the promoted secondary serves as a primary node and its hook goes on in order (protected to the old primary, then stand-down)', { timeout: 60_000 }, async () => {
    const hostB = new MemoryTransport();
    const hostA = hostB.peer();
    const cfgA = nodeConfig('a', 'b');
    const cfgB = nodeConfig('b', 'a');
    const aOut = withHook(cfgA, 'a');
    const bOut = withHook(cfgB, 'b');
    const b = new SecondaryNode({ cfg: cfgB, mode: 'remus', binding: createBinding(cfgB.domain), transport: hostB, logger: silent });
    await b.start();
    stops.push(() => b.stop('test'));
    const a = new PrimaryNode({ cfg: cfgA, mode: 'remus', binding: createBinding(cfgA.domain), transport: hostA, logger: silent });
    await a.start();
    stops.push(() => a.stop({ kind: 'signal', signal: 'test' }));
    await firstValueFrom(a.protection!.state$.pipe(filter((s) => s.state === 'protected')));
    await until(() => b.parts.server.lastEpoch > 5, 'epochs');

    hostA.cut();
    await a.stop({ kind: 'fenced', ownGeneration: 1, peerGeneration: 2 });
    await until(() => b.parts.promoter.promotion !== undefined, 'B to take over', 10_000);

    // A comes back as B's secondary, with its own hook: B protects the guest to it.
    const a2cfg = nodeConfig('a', 'b');
    const a2Out = withHook(a2cfg, 'a2');
    const a2 = new SecondaryNode({ cfg: a2cfg, mode: 'remus', binding: createBinding(a2cfg.domain), transport: hostB.peer(), logger: silent });
    await a2.start();
    stops.push(() => a2.stop('test'));
    await heard(bOut, 'protected', 'B, serving');
    await b.stop('SIGTERM');
    await a2.stop('test');

    assert.match(events(aOut).join(', '), /^serving 1 primary, protected 1 primary(, unprotected 1 primary, protected 1 primary)*, fenced 1 fenced$/);
    // One runner for B across its roles: the sequence numbers run on, and each edge is said once, in order.
    assert.match(events(bOut).join(', '), /^standby 1 secondary, promoted 2 primary, protected 2 primary(, unprotected 2 primary, protected 2 primary)*(, unprotected 2 primary)?, stand-down 2 stopped$/);
    assert.deepEqual(hookCalls(bOut).map((r) => r.env!.TANDEM_SEQUENCE), hookCalls(bOut).map((_, i) => String(i + 1)));
    // A new secondary knows no generation but the first until it hears its primary; at its stop it followed B's.
    assert.deepEqual(events(a2Out), ['standby 1 secondary', 'stopped 2 stopped']);
  });
});
