/** The primary's stranded signal: set exactly while neither protection nor the arbiter's authority lets output leave. */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { BehaviorSubject } from 'rxjs';
import { StrandedSignal } from '../../src/failover/stranded.js';
import { captureLog } from '../secondary/fixtures.js';

class FakeArbiter extends EventEmitter {
  constructor(
    readonly kind: 'etcd' | 'none',
    public authority: boolean,
  ) {
    super();
  }

  valid(): boolean {
    return this.authority;
  }

  set(valid: boolean): void {
    this.authority = valid;
    this.emit('authority');
  }
}

function rig(kind: 'etcd' | 'none' = 'etcd'): { arbiter: FakeArbiter; protection: BehaviorSubject<boolean>; said: boolean[]; signal: StrandedSignal; log: ReturnType<typeof captureLog> } {
  const arbiter = new FakeArbiter(kind, true);
  const protection = new BehaviorSubject(false);
  const said: boolean[] = [];
  const log = captureLog();
  const signal = new StrandedSignal({ arbiter, protection, heartbeat: { setStranded: (s) => said.push(s) } }, log.logger);
  return { arbiter, protection, said, signal, log };
}

test('stranded while unprotected without authority; protection or authority alone ends it; each change said once', () => {
  const { arbiter, protection, said, signal, log } = rig();
  signal.start();
  assert.deepEqual(said, [], 'serving alone with authority: not stranded');
  protection.next(true);
  arbiter.set(false); // protected: the arbiter gives no authority, and none is needed
  assert.deepEqual(said, []);
  protection.next(false); // the replica is lost, and the arbiter has not confirmed the move
  assert.deepEqual(said, [true]);
  arbiter.set(false);
  assert.deepEqual(said, [true], 'said once');
  arbiter.set(true); // the arbiter confirmed: serving alone
  assert.deepEqual(said, [true, false]);
  arbiter.set(false); // the lease lapsed
  protection.next(true); // protected again by a new session
  assert.deepEqual(said, [true, false, true, false]);
  assert.equal(log.find(/^stranded: /).length, 2);
  signal.stop();
  protection.next(false);
  assert.deepEqual(said, [true, false, true, false], 'stopped: says nothing more');
});

test('without an arbiter a primary is never stranded (nobody could check its word)', () => {
  const { arbiter, protection, said, signal } = rig('none');
  signal.start();
  arbiter.set(false);
  protection.next(false);
  assert.deepEqual(said, []);
  signal.stop();
});
