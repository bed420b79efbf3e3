/** The primary's monitor source reads the mode from the one mode controller and passes operators' changes to it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Subject } from 'rxjs';
import { ModeController } from '../../src/checkpoint/mode.js';
import type { Trigger } from '../../src/checkpoint/triggers.js';
import { PrimarySource } from '../../src/monitor/source.js';
import { testEngine } from '../checkpoint/helpers.js';
import { silent, simBinding } from '../helpers/sim.js';

function coloSource(): { source: PrimarySource; mode: ModeController; divergences: Subject<Trigger>; events: unknown[] } {
  const domain = simBinding(16).primary(silent).domain;
  const mode = new ModeController('colo', { mode: 'colo', intervalMs: 25, reason: 'checkpoints when the replicas diverge' });
  const divergences = new Subject<Trigger>();
  const engine = testEngine({ domain, port: 1, mode, divergence$: divergences });
  const source = new PrimarySource({ engine, mode, divergences$: divergences });
  const events: unknown[] = [];
  source.events$.subscribe((e) => events.push(e));
  source.start();
  return { source, mode, divergences, events };
}

test('a COLO primary reports mode colo, and each switch of the hybrid policy as a mode event with its reason', () => {
  const { source, mode, events } = coloSource();
  assert.equal(source.status().mode, 'colo');
  assert.equal(source.status().intervalMs, null);
  mode.switchTo('remus', '25 divergences in 1000 ms (more than 20)');
  assert.equal(source.status().mode, 'remus');
  assert.equal(source.status().intervalMs, 25);
  mode.switchTo('colo', 'divergences calmed');
  assert.deepEqual(events, [
    { type: 'mode', mode: 'remus', intervalMs: 25, reason: '25 divergences in 1000 ms (more than 20)' },
    { type: 'mode', mode: 'colo', intervalMs: null, reason: 'divergences calmed' },
  ]);
  source.stop();
});

test("an operator's set-mode reaches the mode controller (so the COLO service's checkpoints follow it) and pins it against the hybrid policy", () => {
  const { source, mode, events } = coloSource();
  source.control.setMode!('manual');
  assert.equal(mode.current.mode, 'manual');
  assert.equal(mode.switchTo('colo', 'divergences calmed'), false, 'the policy does not override an operator');
  assert.equal(source.status().mode, 'manual');
  source.control.setMode!('colo');
  assert.equal(mode.switchTo('remus', 'many divergences'), true, 'picking colo hands the choice back to the policy');
  assert.deepEqual(
    events.map((e) => (e as { mode: string }).mode),
    ['manual', 'colo', 'remus'],
  );
  source.stop();
});

test('the comparator\'s request reaches the monitor as it was made: connection and reason, not a string parsed back', () => {
  const { source, divergences, events } = coloSource();
  divergences.next({ reason: 'divergence', request: { reason: 'mismatch', flow: 'tcp 10.0.0.1:6379 > 10.0.0.2:1024', detail: 'payload differs at byte 12' } });
  divergences.next({ reason: 'divergence', request: { reason: 'timeout', flow: 'udp 10.0.0.1:53 > 10.0.0.2: 9', detail: 'no twin for 3000 ms' } });
  assert.deepEqual(events, [
    { type: 'divergence', connection: 'tcp 10.0.0.1:6379 > 10.0.0.2:1024', reason: 'mismatch' },
    { type: 'divergence', connection: 'udp 10.0.0.1:53 > 10.0.0.2: 9', reason: 'timeout' },
  ]);
  source.stop();
});
