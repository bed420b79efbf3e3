/**
 * Control messages: parsing limits and shapes, token checks, the audit
 * trail, and dispatch to what a node offers.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MonitorAuth } from '../../src/monitor/auth.js';
import { MAX_MESSAGE_BYTES, MonitorControl, parseClientMessage, type ControlTarget } from '../../src/monitor/control.js';
import type { EventBody } from '../../src/monitor/events.js';
import { MonitorError, MonitorErrorCodes } from '../../src/monitor/errors.js';
import { TOKEN, capturingLogger } from './helpers.js';

const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof MonitorError, String(err));
    return err.code;
  }
  return 'no error';
};

describe('parseClientMessage', () => {
  test('accepts every action with its arguments', () => {
    assert.deepEqual(parseClientMessage('{"type":"status","id":3}'), { type: 'status', id: 3 });
    assert.deepEqual(parseClientMessage('{"type":"control","action":"checkpoint","token":"t"}'), { type: 'control', id: null, token: 't', command: { action: 'checkpoint' } });
    assert.deepEqual(parseClientMessage('{"type":"control","id":"x","action":"set-interval","intervalMs":60000}').type === 'control' && parseClientMessage('{"type":"control","id":"x","action":"set-interval","intervalMs":60000}'), {
      type: 'control',
      id: 'x',
      token: undefined,
      command: { action: 'set-interval', intervalMs: 60000 },
    });
    for (const action of ['failover', 'stop-protection', 'start-protection']) {
      const m = parseClientMessage(JSON.stringify({ type: 'control', action }));
      assert.equal(m.type === 'control' && m.command.action, action);
    }
    const mode = parseClientMessage('{"type":"control","action":"set-mode","mode":"manual"}');
    assert.deepEqual(mode.type === 'control' && mode.command, { action: 'set-mode', mode: 'manual' });
  });

  test('refuses what is not a known, bounded request', () => {
    for (const bad of [
      '',
      'null',
      '"status"',
      '{"type":"status","extra":1}',
      '{"type":"control"}',
      '{"type":"control","action":"__proto__"}',
      '{"type":"control","action":"set-interval","intervalMs":1.5}',
      '{"type":"control","action":"set-interval","intervalMs":60001}',
      '{"type":"control","action":"set-interval"}',
      '{"type":"control","action":"checkpoint","intervalMs":5}',
      '{"type":"control","action":"set-mode","mode":"turbo"}',
      '{"type":"control","action":"checkpoint","token":5}',
      `{"type":"status","id":"${'i'.repeat(65)}"}`,
      '{"type":"status","id":1.5}',
      JSON.stringify({ type: 'status', pad: 'x'.repeat(MAX_MESSAGE_BYTES) }),
    ]) {
      assert.equal(code(() => parseClientMessage(bad)), 'ERR_MONITOR_BAD_MESSAGE', bad.slice(0, 60));
    }
  });

  test('a control message over HTTP may leave out its type', () => {
    const m = parseClientMessage('{"action":"checkpoint"}', true);
    assert.equal(m.type, 'control');
    assert.equal(code(() => parseClientMessage('{"action":"checkpoint"}')), 'ERR_MONITOR_BAD_MESSAGE');
  });
});

describe('MonitorControl', () => {
  function rig(target: ControlTarget, token: string | null = TOKEN) {
    const audit: EventBody[] = [];
    const log = capturingLogger();
    const control = new MonitorControl({ target, auth: new MonitorAuth({ token: token ?? undefined, allowRemoteRead: false }), logger: log.logger, audit: (e) => audit.push(e) });
    return { control, audit, log };
  }

  test('offers exactly the actions its target implements', () => {
    assert.deepEqual(rig({ failover: () => Promise.resolve({}) }).control.actions, ['failover']);
    assert.deepEqual(rig({ checkpoint: () => undefined, setInterval: () => undefined }).control.actions, ['checkpoint', 'set-interval']);
  });

  test('runs an authorized action once, audits it, and returns its result', async () => {
    const calls: number[] = [];
    const { control, audit } = rig({ setInterval: (ms) => void calls.push(ms) });
    assert.deepEqual(await control.perform({ action: 'set-interval', intervalMs: 40 }, { remote: '127.0.0.1:5', token: TOKEN }), { intervalMs: 40 });
    assert.deepEqual(calls, [40]);
    assert.deepEqual(audit, [{ type: 'control', action: 'set-interval', by: '127.0.0.1:5', ok: true, code: null }]);
  });

  test('refuses without the right token, and refuses what the node does not offer', async () => {
    let called = false;
    const { control, audit, log } = rig({ checkpoint: () => void (called = true) });
    for (const token of [undefined, '', TOKEN.slice(0, -1), `${TOKEN} `]) {
      await assert.rejects(control.perform({ action: 'checkpoint' }, { remote: 'r', token }), (e: MonitorError) => e.code === 'ERR_MONITOR_UNAUTHORIZED');
    }
    await assert.rejects(control.perform({ action: 'failover' }, { remote: 'r', token: TOKEN }), (e: MonitorError) => e.code === 'ERR_MONITOR_UNSUPPORTED');
    assert.equal(called, false);
    assert.deepEqual(
      audit.map((e) => e.type === 'control' && e.code),
      ['ERR_MONITOR_UNAUTHORIZED', 'ERR_MONITOR_UNAUTHORIZED', 'ERR_MONITOR_UNAUTHORIZED', 'ERR_MONITOR_UNAUTHORIZED', 'ERR_MONITOR_UNSUPPORTED'],
    );
    assert.ok(!log.text().includes(TOKEN.slice(0, -1)), 'no token, right or wrong, is logged');
  });

  test('with no token configured nothing is authorized, not even an empty token', async () => {
    const { control } = rig({ checkpoint: () => undefined }, null);
    await assert.rejects(control.perform({ action: 'checkpoint' }, { remote: 'r', token: '' }), /no control token is configured/);
  });

  test('an action that fails is reported as such, with its cause', async () => {
    const boom = new Error('replica holds nothing');
    const { control, audit } = rig({ failover: () => Promise.reject(boom) });
    await assert.rejects(control.perform({ action: 'failover' }, { remote: 'r', token: TOKEN }), (e: MonitorError) => e.code === 'ERR_MONITOR_ACTION_FAILED' && e.cause === boom && /replica holds nothing/.test(e.message));
    assert.equal(audit[0].type === 'control' && audit[0].ok, false);
  });

  test('an action the node refuses in its state keeps its code: refused, not failed', async () => {
    const no = new MonitorError(MonitorErrorCodes.MONITOR_REFUSED, 'switchover refused: the secondary holds no current checkpoint (protection: degraded)');
    const { control, audit } = rig({ switchover: () => Promise.reject(no) });
    await assert.rejects(control.perform({ action: 'switchover' }, { remote: 'r', token: TOKEN }), (e: MonitorError) => e.code === 'ERR_MONITOR_REFUSED' && /holds no current checkpoint/.test(e.message));
    assert.equal(audit[0].type === 'control' && audit[0].code, 'ERR_MONITOR_REFUSED');
  });
});
