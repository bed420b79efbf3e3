/**
 * What `tandem status` makes of a snapshot: whether the node is healthy
 * (its exit status), every number with its unit, and JSON without float
 * noise; and the pair, against a real primary and secondary whose monitors
 * read each other (`monitor.peer`). Control actions read back with it:
 * test/cli/control.test.ts.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { freePort } from '../../src/arbiter/local-etcd.js';
import { domainsText, epochText, health, statusText } from '../../src/cli/commands/status.js';
import { jsonLine, tidyNumbers } from '../../src/cli/json-out.js';
import { MONITOR_STATES, validateEvent, type MonitorState, type NodeRole, type SnapshotEvent } from '../../src/monitor/events.js';
import { runTandem, tempDir, type RunResult } from '../helpers/cli.js';
import { spawnTandem } from '../helpers/proc.js';
import { tlsArgs } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const tmp = tempDir();
after(() => tmp.cleanup());
// Reading is open on loopback: no token, whatever the test runner's environment holds.
const ENV = { ...process.env, TANDEM_MONITOR_TOKEN: '' };

const PRIMARY_STATES: MonitorState[] = ['stopped', 'connecting', 'precopy', 're-protecting', 'protected', 'degraded', 'stopping'];

function snap(node: NodeRole, state: MonitorState): SnapshotEvent {
  return {
    v: 1,
    type: 'snapshot',
    ts: 1_700_000_000_123.457,
    node,
    seq: 3,
    state,
    reason: 'r',
    mode: node === 'primary' ? 'remus' : null,
    intervalMs: node === 'primary' ? 50 : null,
    lastEpoch: 7,
    lagMs: 12.3456789,
    actions: [],
    recent: [{ epoch: 7, trigger: 'timer', pauseUs: 812.3333, dirtyPages: 12, bytes: 51_200, sendMs: 0.123456, ackMs: 1.98765, totalMs: 2.5555555, applyMs: null, session: 3, ts: 1_700_000_000_100.25 }],
    clients: 2,
    arbiter: { kind: 'none', holder: null, generation: null, protected: false, authority: true },
    precopy: null,
    generation: 1,
    heartbeat: 'alive',
    heldBytes: node === 'primary' ? 3072 : null,
    peer: null,
    history: [],
    lastFailover: null,
    guestProtected: null,
  };
}

describe('tandem status', () => {
  test('several domains: each one in turn, and how many are healthy; one domain as it always was', () => {
    const web = { ...snap('primary', 'protected'), domain: 'web' };
    const db = { ...snap('primary', 'degraded'), domain: 'db' };
    assert.equal(domainsText([web]), statusText(web));
    const text = domainsText([web, db]);
    assert.match(text, /^domains: {3}2 \(web, db\); 1 NOT HEALTHY\n/);
    assert.match(text, /== domain web ==\nnode: {6}primary\nstate: {5}protected/);
    assert.match(text, /== domain db ==\nnode: {6}primary\nstate: {5}degraded \(r\)\nhealth: {4}NOT HEALTHY/);
    assert.match(domainsText([web, { ...web, domain: 'mail' }]), /; all healthy\n/);
    assert.match(domainsText([]), /^domains: {3}none shown by this monitor yet\nhealth: {4}NOT HEALTHY/);
  });

  test('healthy: a protected primary; a secondary standing by or serving after a failover; nothing else', () => {
    for (const state of MONITOR_STATES) {
      const node: NodeRole = PRIMARY_STATES.includes(state) ? 'primary' : 'secondary';
      const h = health(snap(node, state));
      assert.equal(h.healthy, ['protected', 'standby', 'failed-over'].includes(state), `${node} ${state}`);
      assert.match(statusText(snap(node, state)), new RegExp(`^health: +${h.healthy ? 'healthy' : 'NOT HEALTHY'}: `, 'm'));
    }
    // A node that took over is healthy only once the guest it serves is protected again; an older node that does not say is trusted.
    const over = snap('secondary', 'failed-over');
    assert.deepEqual(health({ ...over, guestProtected: false }), { healthy: false, why: 'failed over: serving the guest, unprotected' });
    assert.equal(health({ ...over, guestProtected: true }).healthy, true);
  });

  test('a pre-copy under way shows its progress', () => {
    const s = snap('primary', 'precopy');
    assert.doesNotMatch(statusText(s), /^progress:/m);
    s.precopy = { iteration: 1, pagesSent: 196_608, pagesTotal: 786_432, percent: 25, bytes: 805_306_368, elapsedMs: 6000, bytesPerSecond: 134_217_728, etaMs: 18_000, done: false };
    assert.match(statusText(s), /^progress: +pre-copy round 1: 196608\/786432 pages \(25\.0 %\) 768\.0 MiB at 128\.0 MiB\/s ETA 18 s$/m);
  });

  test('the human view gives every number its unit', () => {
    const text = statusText(snap('primary', 'protected'));
    assert.match(text, /^mode: +remus, every 50 ms$/m);
    assert.match(text, /^lag: +12 ms$/m);
    assert.match(text, /^epoch: +7 \(session 3\)$/m, 'epochs number from 1 in each protection session: the session tells them apart');
    assert.match(text, /^clients: +2 connected to the guest's service$/m);
    assert.equal(epochText(snap('primary', 'protected').recent[0]), 'epoch 7 (timer), pause 0.81 ms, 12 dirty pages, 50.0 KiB, total 2.56 ms');
  });

  test('the pair in words: no peer configured, a peer unreachable, the latest failover of either node', () => {
    const alone = statusText(snap('primary', 'protected'));
    assert.match(alone, /^pair: +no peer monitor configured \(monitor\.peer\): this node only$/m);
    assert.match(alone, /^ {2}held output +3\.0 KiB$/m);
    assert.match(alone, /^last failover: none known/m);
    assert.match(alone, /^events: +none since the monitor started$/m);
    const s = snap('secondary', 'failed-over');
    s.lastFailover = { ts: s.ts - 90_000, reason: 'the primary is dead; taking over as generation 2', generation: 2 };
    s.peer = { url: 'http://10.0.0.1:7790/', reachable: false, error: 'no whole answer in 2000 ms', fetchedAt: s.ts - 3000, node: 'primary', state: 'protected', reason: 'r', generation: 1, heartbeat: 'alive', lastEpoch: 7, lagMs: 3, heldBytes: 0, clients: 4, lastFailover: null };
    const text = statusText(s);
    assert.match(text, /^pair: +peer monitor http:\/\/10\.0\.0\.1:7790\/ UNREACHABLE: no whole answer in 2000 ms \(read 3\.0 s before this snapshot; its column is the last known\)$/m);
    assert.match(text, /^ {2}role +secondary +primary$/m);
    assert.match(text, /^ {2}held output +none +0 B$/m);
    assert.match(text, /^last failover: on the secondary, 2 min before this snapshot, at \S+ \(generation 2\): the primary is dead; taking over as generation 2$/m);
    // The peer's failover is newer: that one is told.
    s.peer.lastFailover = { ts: s.ts - 1000, reason: 'an operator asked', generation: 3 };
    assert.match(statusText(s), /^last failover: on the primary, 1\.0 s before this snapshot, at \S+ \(generation 3\): an operator asked$/m);
  });

  test('JSON is rounded by unit: ms to 0.01, µs and timestamps whole; integers untouched; still a valid event', () => {
    const tidy = tidyNumbers(snap('primary', 'protected'));
    assert.equal(tidy.lagMs, 12.35);
    assert.equal(tidy.ts, 1_700_000_000_123);
    assert.deepEqual(tidy.recent[0], { epoch: 7, trigger: 'timer', pauseUs: 812, dirtyPages: 12, bytes: 51_200, sendMs: 0.12, ackMs: 1.99, totalMs: 2.56, applyMs: null, session: 3, ts: 1_700_000_000_100 });
    assert.deepEqual(tidyNumbers({ ratio: 0.333333333, n: 5 }), { ratio: 0.3333, n: 5 });
    const line = jsonLine(snap('primary', 'protected'));
    assert.doesNotMatch(line, /\d\.\d{3,}/);
    validateEvent(JSON.parse(line));
  });
});

describe('tandem status shows the pair', () => {
  test('the peer side by side from either node, the history, the last failover; a peer gone is told, and only this node judges the exit status', async () => {
    const [pport, sport] = [await freePort(), await freePort()];
    const purl = `http://127.0.0.1:${pport}/`;
    const surl = `http://127.0.0.1:${sport}/`;
    const common = 'domain:\n  memory_mib: 4\nprimary:\n  interval_ms: 30\nsecondary:\n  listen: 127.0.0.1:0\n  service: 127.0.0.1:0\n';
    const scfg = tmp.path('secondary.yaml');
    // The secondary is told its peer by the flag, the primary by its file: the same setting either way.
    writeFileSync(scfg, `${common}monitor:\n  listen: 127.0.0.1:${sport}\n  peer_interval_ms: 200\n`);
    const pcfg = tmp.path('primary.yaml');
    writeFileSync(pcfg, `${common}monitor:\n  listen: 127.0.0.1:${pport}\n  peer: ${surl}\n  peer_interval_ms: 200\n`);
    const secondary = spawnTandem(['secondary', '--config', scfg, '--monitor-peer', `127.0.0.1:${pport}`, ...(await tlsArgs('secondary'))]);
    const port = Number((await secondary.waitLine((l) => typeof l.port === 'number' && /secondary listening/.test(String(l.msg)), 'the secondary')).port);
    const hb = String((await secondary.waitLine((l) => typeof l.heartbeat === 'string', 'the heartbeat channel')).heartbeat);
    const primary = spawnTandem(['primary', '--config', pcfg, '--secondary', `127.0.0.1:${port}`, '--heartbeat', hb, '--service', '127.0.0.1:0', ...(await tlsArgs('primary'))]);
    await primary.waitLine((l) => l.state === 'protected', 'protection');

    const json = (url: string): { r: RunResult; s: SnapshotEvent } => {
      const r = runTandem(['status', url, '--json'], { env: ENV });
      assert.ok(r.status === 0 || r.status === 4, r.stderr);
      return { r, s: validateEvent(JSON.parse(r.stdout)) as SnapshotEvent };
    };
    await until(() => json(purl).s.peer?.state === 'standby' && json(surl).s.peer?.state === 'protected', 'each node to read the other', 30_000, 100);
    const p = json(purl).s;
    assert.equal(p.peer!.url, surl);
    assert.equal(p.peer!.node, 'secondary');
    assert.equal(p.generation, 1);
    assert.equal(p.heartbeat, 'alive');
    assert.ok(p.heldBytes !== null, "the primary's front holds output");
    assert.ok(Array.isArray(p.history) && p.history.some((e) => e.type === 'state' && e.state === 'protected'), 'its protection is in the history');
    assert.equal(p.lastFailover, null);

    const human = runTandem(['status', purl], { env: ENV });
    assert.equal(human.status, 0, human.stderr);
    const out = human.stdout;
    assert.match(out, new RegExp(`^pair: +peer monitor ${surl.replace(/[./]/g, '\\$&')} \\(read \\d+\\.\\d s before this snapshot\\)$`, 'm'));
    assert.match(out, /^ {2}role +primary +secondary$/m);
    assert.match(out, /^ {2}state +protected +standby$/m);
    assert.match(out, /^ {2}generation +1 +1$/m);
    assert.match(out, /^ {2}heartbeat +alive +alive$/m);
    assert.match(out, /^ {2}last epoch +\d+ +\d+$/m);
    assert.match(out, /^ {2}lag +(-|\d+(\.\d+)? ms) +(-|\d+(\.\d+)? ms)$/m);
    assert.match(out, /^ {2}held output +\d+(\.\d)? (B|KiB|MiB) +none$/m);
    assert.match(out, /^ {2}service clients +0 +0$/m);
    assert.match(out, /^last failover: none known to this node or its peer$/m);
    assert.match(out, /^events: +the last \d of \d+ kept$/m);
    assert.match(out, /^ {2}\S+ primary state \S+ -> protected: /m);

    const other = runTandem(['status', surl], { env: ENV });
    assert.equal(other.status, 0, other.stderr);
    assert.match(other.stdout, /^ {2}role +secondary +primary$/m);
    assert.match(other.stdout, /^ {2}state +standby +protected$/m);
    assert.match(other.stdout, /^ {2}held output +none +\d+(\.\d)? (B|KiB|MiB)$/m);

    // The secondary dies: the primary says its peer cannot be read, and why; it is not protected, so status 4.
    secondary.child.kill('SIGKILL');
    await secondary.closed;
    await until(() => json(purl).s.peer?.reachable === false, 'the primary to lose its peer', 30_000, 100);
    const lost = runTandem(['status', purl], { env: ENV });
    assert.match(lost.stdout, /^pair: +peer monitor \S+ UNREACHABLE: cannot reach the monitor at \S+: connect ECONNREFUSED \S+ \(read [\d.]+ \S+ before this snapshot; its column is the last known\)$/m);
    await until(() => runTandem(['status', purl], { env: ENV }).status === 4, 'the primary to lose protection', 30_000, 100);
    primary.child.kill('SIGTERM');
    await primary.closed;
  });
});
