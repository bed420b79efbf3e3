/** The failure detector on virtual time: exact transition instants. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ManualClock } from '../../src/heartbeat/clock.js';
import { FailureDetector, resolveTiming, type PeerTransition } from '../../src/heartbeat/detector.js';
import { HeartbeatError } from '../../src/heartbeat/errors.js';

function setup(opts: { intervalMs?: number; timeoutMs?: number; suspectAfterMs?: number } = {}): { clock: ManualClock; d: FailureDetector; log: string[]; events: PeerTransition[] } {
  const clock = new ManualClock();
  const d = new FailureDetector({ ...opts, clock });
  const events: PeerTransition[] = [];
  const log: string[] = [];
  d.onTransition((t) => {
    events.push(t);
    log.push(`${t.at} ${t.to}`);
  });
  d.start();
  return { clock, d, log, events };
}

/** Heartbeats at each listed time (ms), then time runs to `until`. */
function play(s: ReturnType<typeof setup>, beats: number[], until: number): void {
  for (const t of beats) {
    s.clock.advance(t - s.clock.now());
    s.d.heard();
  }
  s.clock.advance(until - s.clock.now());
}

describe('FailureDetector', () => {
  test('defaults are 50 ms / 250 ms with suspect after 100 ms', () => {
    assert.deepEqual(resolveTiming({}), { intervalMs: 50, timeoutMs: 250, suspectAfterMs: 100 });
  });

  test('unknown until the first heartbeat, however long that takes', () => {
    const s = setup();
    s.clock.advance(10_000);
    assert.equal(s.d.state, 'unknown');
    assert.equal(s.clock.pending, 0);
    play(s, [10_000], 10_000);
    assert.deepEqual(s.log, ['10000 alive']);
  });

  test('beats on time keep the peer alive', () => {
    const s = setup();
    play(s, Array.from({ length: 40 }, (_, i) => i * 50), 2000);
    assert.deepEqual(s.log, ['0 alive']);
  });

  test('a timer that fires far too late (this process was stalled) looks again once, after I/O: frames waiting in the socket keep the peer alive', () => {
    const s = setup();
    play(s, [0, 50], 50);
    s.clock.jump(2000); // SIGSTOP for 2 s: nothing ran, the peer's frames wait in the socket
    s.clock.advance(0); // SIGCONT: timers first, before any socket is read
    assert.deepEqual(s.log, ['0 alive'], 'no verdict from our own stall');
    s.d.heard(); // the waiting frames are read
    s.clock.advance(1000);
    assert.deepEqual(s.log, ['0 alive', '2150 suspect', '2300 dead'], 'judged from the frames read after the stall');
    // A peer that really went silent is still declared dead after the one extra look.
    const t = setup();
    play(t, [0, 50], 50);
    t.clock.jump(2000);
    t.clock.advance(0);
    t.clock.advance(0);
    t.clock.advance(50);
    assert.deepEqual(t.log, ['0 alive', '2100 suspect', '2100 dead']);
  });

  test('silence: suspect at exactly last + 2 intervals, dead at exactly last + timeout', () => {
    const s = setup();
    play(s, [0, 50, 100], 349);
    assert.deepEqual(s.log, ['0 alive', '200 suspect']);
    assert.equal(s.d.state, 'suspect');
    s.clock.advance(1); // t = 350 = 100 + 250
    assert.deepEqual(s.log, ['0 alive', '200 suspect', '350 dead']);
    assert.match(s.events[2].reason, /nothing received for 250 ms \(timeout 250 ms/);
    assert.equal(s.clock.pending, 0, 'no timer left once dead');
  });

  test('slow but alive: late heartbeats go suspect and back, never dead', () => {
    const s = setup();
    // Gaps of 240 ms (just inside the 250 ms timeout), 30 of them: 7 s of a very slow link.
    const beats = Array.from({ length: 30 }, (_, i) => i * 240);
    play(s, beats, 29 * 240 + 249);
    assert.ok(!s.log.some((l) => l.endsWith('dead')), s.log.join(', '));
    const expected = ['0 alive'];
    for (let i = 0; i < 29; i++) expected.push(`${i * 240 + 100} suspect`, `${(i + 1) * 240} alive`);
    expected.push(`${29 * 240 + 100} suspect`);
    assert.deepEqual(s.log, expected);
    s.clock.advance(1);
    assert.equal(s.d.state, 'dead', 'and the first real 250 ms of silence still kills it');
  });

  test('activity without heartbeats postpones dead but does not clear suspect', () => {
    const s = setup();
    play(s, [0], 0);
    for (let t = 200; t <= 1000; t += 200) {
      s.clock.advance(t - s.clock.now());
      s.d.noteActivity();
    }
    s.clock.advance(1249 - s.clock.now());
    assert.deepEqual(s.log, ['0 alive', '100 suspect']);
    s.clock.advance(1); // last activity at 1000
    assert.deepEqual(s.log, ['0 alive', '100 suspect', '1250 dead']);
  });

  test('dead is a verdict about now: a stalled peer heard again is alive again, and dies again only after a new silence', () => {
    const s = setup();
    play(s, [0], 300);
    assert.equal(s.d.state, 'dead');
    // A paused process or a healed partition: its heartbeats resume.
    assert.equal(s.d.heard(), true);
    assert.equal(s.d.state, 'alive');
    assert.match(s.events.at(-1)!.reason, /heard again after 300 ms of silence/);
    s.clock.advance(1000);
    assert.deepEqual(s.log, ['0 alive', '100 suspect', '250 dead', '300 alive', '400 suspect', '550 dead']);
  });

  test('replication traffic from a peer declared dead takes it back to suspect, not alive, and postpones the next verdict', () => {
    const s = setup();
    play(s, [0], 300);
    s.d.noteActivity();
    assert.equal(s.d.state, 'suspect');
    s.clock.advance(200);
    s.d.noteActivity();
    s.clock.advance(249);
    assert.equal(s.d.state, 'suspect', 'activity keeps it from dying');
    s.clock.advance(1);
    assert.deepEqual(s.log, ['0 alive', '100 suspect', '250 dead', '300 suspect', '750 dead']);
  });

  test('custom timing: interval 10, timeout 35, suspect after 20', () => {
    const s = setup({ intervalMs: 10, timeoutMs: 35, suspectAfterMs: 20 });
    play(s, [5, 15, 40], 100);
    assert.deepEqual(s.log, ['5 alive', '35 suspect', '40 alive', '60 suspect', '75 dead']);
  });

  test('a timer that fires late (the event loop stalled) looks once more, then goes straight through suspect to dead at the same instant', () => {
    const clock = new ManualClock();
    let fire: (() => void) | undefined;
    // A clock whose timer only runs when we say so: a stalled event loop.
    const d = new FailureDetector({ clock: { now: () => clock.now(), setTimer: (_ms, fn) => ((fire = fn), () => (fire = undefined)) } });
    const log: string[] = [];
    d.onTransition((t) => log.push(`${t.at} ${t.to}`));
    d.start();
    d.heard();
    clock.advance(400);
    fire?.();
    assert.deepEqual(log, ['0 alive'], 'not before input waiting since the stall was read');
    clock.advance(50);
    fire?.();
    assert.deepEqual(log, ['0 alive', '450 suspect', '450 dead']);
  });

  test('stop() cancels the timer and ignores later input', () => {
    const s = setup();
    play(s, [0], 10);
    s.d.stop();
    assert.equal(s.clock.pending, 0);
    assert.equal(s.d.heard(), false);
    s.clock.advance(1000);
    assert.deepEqual(s.log, ['0 alive']);
  });

  test('refuses timings that make no sense', () => {
    for (const o of [{ intervalMs: 0 }, { intervalMs: 100, timeoutMs: 100 }, { timeoutMs: 250, suspectAfterMs: 250 }, { intervalMs: Number.NaN }]) {
      assert.throws(
        () => new FailureDetector(o).start(),
        (e: unknown) => e instanceof HeartbeatError && e.code === 'ERR_HEARTBEAT_BAD_OPTIONS',
        JSON.stringify(o),
      );
    }
  });
});
