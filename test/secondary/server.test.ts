/**
 * The secondary over real TCP on loopback: a fake primary writes streams
 * recorded from a sim guest and reads the back-channel acks.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes } from '../../src/errors.js';
import type { EpochCommit, ReplicaState } from '../../src/secondary/receiver.js';
import { SecondaryServer, type PrimaryGone, type SecondaryServerOptions } from '../../src/secondary/server.js';
import { LibxcType } from '../../src/stream/format.js';
import { AckStatus, BackChannelDecoder, type BackChannelRecord } from '../../src/transport/backchannel.js';
import { tcpTransport } from '../../src/transport/tcp.js';
import { below } from '../../src/util/xorshift.js';
import { captureLog, pvStreamHead, recordHeader, recordStream, recordsOf, simReplica, type CapturedLog } from './fixtures.js';
import { until } from '../helpers/wait.js';

const PAGES = 256;
/** A broken secondary must fail a test, not hang the run. */
const T = { timeout: 5000 };

/** Inside the tests' 5 s timeout, so a wait that fails says what it waited for. */
const WAIT_MS = 3000;

/** Everything a test opened, closed in `after` even when a test timed out mid-way. */
const openServers = new Set<SecondaryServer>();
const openSockets = new Set<Socket>();

/** The primary's end of the connection: writes stream bytes, collects acks. */
class FakePrimary {
  readonly acks: BackChannelRecord[] = [];
  /** TANDEM_FEATURES offers, kept apart from the acks: a secondary sends one first on each stream it takes. */
  readonly offers: BackChannelRecord[] = [];
  closed = false;
  readonly socket: Socket;
  /** As the secondary sees it; the socket forgets its port once closed. */
  readonly localAddress: string;
  private readonly decoder = new BackChannelDecoder();

  private constructor(socket: Socket, closeOnEnd: boolean) {
    this.socket = socket;
    this.localAddress = `127.0.0.1:${socket.localPort}`;
    socket.on('data', (b: Buffer) => {
      for (const r of this.decoder.push(b)) (r.type === 'FEATURES' ? this.offers : this.acks).push(r);
    });
    // The secondary closed its side: a primary closes too (it was half-open only to read acks).
    if (closeOnEnd) socket.on('end', () => socket.end());
    socket.on('error', () => {});
    socket.on('close', () => (this.closed = true));
  }

  /** `closeOnEnd: false` plays a primary that never closes its side. */
  static async connect(port: number, closeOnEnd = true): Promise<FakePrimary> {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    openSockets.add(socket);
    await once(socket, 'connect');
    return new FakePrimary(socket, closeOnEnd);
  }

  /** Writes `bytes` in uneven pieces. */
  send(bytes: Buffer, seed = 1): void {
    const r = below(seed);
    for (let at = 0; at < bytes.length; ) {
      const n = Math.min(bytes.length - at, 1 + r(40_000));
      this.socket.write(bytes.subarray(at, at + n));
      at += n;
    }
  }

  async waitAcks(n: number): Promise<void> {
    await until(() => this.acks.length >= n, `${n} acks (have ${this.acks.length})`, WAIT_MS);
  }

  async waitClosed(): Promise<void> {
    await until(() => this.closed, 'the connection to close', WAIT_MS);
  }
}

const applied = (n: number): BackChannelRecord[] => Array.from({ length: n }, (_, i) => ({ type: 'ACK', epoch: i + 1, status: AckStatus.APPLIED, reason: '' }));

interface Rig {
  server: SecondaryServer;
  port: number;
  replica: SimDomain;
  log: CapturedLog;
  /** What each stream came to, in order, from the server's events: an epoch applied, a stream refused, a primary gone. */
  outcomes: ('applied' | 'refused' | 'gone')[];
  epochs: EpochCommit[];
  states: ReplicaState[];
  gone: PrimaryGone[];
}

async function rig(options: Partial<SecondaryServerOptions> = {}): Promise<Rig> {
  const replica = simReplica(PAGES);
  const log = captureLog();
  const server = new SecondaryServer({
    replica: replica.withoutDisk,
    transport: tcpTransport,
    listen: { host: '127.0.0.1', port: 0 },
    logger: log.logger,
    ...options,
  });
  const r: Rig = { server, port: 0, replica: replica.sim, log, outcomes: [], epochs: [], states: [], gone: [] };
  server.on('epoch', (c) => {
    r.epochs.push(c);
    r.outcomes.push('applied');
  });
  server.on('state', (s) => r.states.push(s));
  server.on('stream-failed', () => r.outcomes.push('refused'));
  server.on('primary-gone', (g) => {
    r.gone.push(g);
    r.outcomes.push('gone');
  });
  openServers.add(server);
  r.port = (await server.start()).port;
  return r;
}

describe('SecondaryServer', () => {
  const stream = recordStream({ pages: PAGES, epochs: 5, seed: 0x5ec });
  const firstPageData = recordsOf(stream.bytes).find((r) => r.name === 'libxc PAGE_DATA')!.offset;
  let shared: Rig;

  before(async () => {
    shared = await rig();
  });
  after(async () => {
    for (const socket of openSockets) socket.destroy();
    await Promise.all([...openServers].map((s) => s.stop()));
  });

  test('applies a whole stream over TCP: after each epoch the replica equals the primary at that checkpoint', T, async () => {
    const { server } = shared;
    const digests: string[] = [];
    // The event fires as the epoch commits, before the next one is applied.
    const onEpoch = (c: EpochCommit): void => {
      digests[c.epoch - 1] = server.digest()!;
    };
    server.on('epoch', onEpoch);
    const ended = once(server, 'stream-end');
    const primary = await FakePrimary.connect(shared.port);
    primary.send(stream.bytes);
    await ended;
    server.off('epoch', onEpoch);
    await primary.waitAcks(5);
    assert.deepEqual(primary.acks, applied(5));
    assert.deepEqual(digests, stream.digests);
    assert.equal(server.lastEpoch, 5);
    assert.deepEqual(shared.outcomes, ['applied', 'applied', 'applied', 'applied', 'applied']);
    assert.deepEqual(shared.states, ['syncing', 'protected', 'idle']);
    assert.deepEqual(shared.epochs.map((e) => e.epoch), [1, 2, 3, 4, 5]);
    assert.ok(shared.epochs.every((e) => e.pages > 0 && e.bytes > 0 && e.applyMs >= 0));
    assert.equal(shared.log.find(/replica syncing: not consistent/).length, 1);
    await primary.waitClosed();
    assert.deepEqual(shared.gone, [], 'a clean END is not a lost primary');
  });

  describe('refuses a bad stream with a STREAM_ERROR ack and one log line, the replica unchanged', () => {
    const cases: { name: string; bytes: () => Buffer; code: string; record?: string; offset?: number }[] = [
      { name: 'garbage bytes', bytes: () => Buffer.from('GET / HTTP/1.1\r\nHost: secondary\r\n\r\n'), code: ErrorCodes.STREAM_BAD_IDENT, record: 'libxl header', offset: 0 },
      {
        name: 'a truncated record',
        bytes: () => stream.bytes.subarray(0, firstPageData + 100),
        code: ErrorCodes.STREAM_TRUNCATED,
        offset: firstPageData,
      },
      {
        name: 'an oversized record length',
        // libxl header, LIBXC_CONTEXT, image and domain headers: 64 bytes, then a record announcing 1 GiB.
        bytes: () => Buffer.concat([stream.bytes.subarray(0, 64), recordHeader(LibxcType.X86_CPUID_POLICY, 0x40000000)]),
        code: ErrorCodes.RECORD_TOO_LARGE,
        record: 'libxc X86_CPUID_POLICY',
        offset: 64,
      },
      {
        name: 'a valid stream for a larger guest than the replica',
        bytes: () => recordStream({ pages: PAGES * 2, epochs: 1, seed: 9 }).bytes,
        code: ErrorCodes.RECORD_BAD_FIELD,
        record: 'libxc PAGE_DATA',
        offset: firstPageData, // refused before any of its pages is written
      },
      { name: 'a PV stream', bytes: pvStreamHead, code: ErrorCodes.STREAM_BAD_DOMAIN_TYPE, record: 'libxc domain header', offset: 48 },
    ];
    for (const c of cases) {
      test(c.name, T, async () => {
        const { server, log } = shared;
        await until(() => server.state === 'idle' && server.primary === undefined, 'the previous stream to finish', WAIT_MS);
        const before = server.digest();
        const lastEpoch = server.lastEpoch;
        assert.ok(lastEpoch > 0, 'the replica holds a checkpoint to protect');
        const logged = log.lines().length;
        const outcomes = shared.outcomes.length;
        const primary = await FakePrimary.connect(shared.port);
        primary.send(c.bytes());
        primary.socket.end(); // half-close: still reading the ack
        await primary.waitAcks(1);
        await primary.waitClosed();
        const [ack] = primary.acks;
        assert.equal(primary.acks.length, 1);
        assert.ok(ack.type === 'ACK' && ack.status === AckStatus.STREAM_ERROR && ack.epoch === 1, JSON.stringify(ack));
        assert.match(ack.reason, /offset \d+/);
        assert.equal(server.digest(), before, 'replica unchanged');
        assert.equal(server.lastEpoch, lastEpoch);
        // A stream cut short by the primary's own end is refused, and that primary is gone too (it ended without END).
        const expected = c.code === ErrorCodes.STREAM_TRUNCATED ? ['refused', 'gone'] : ['refused'];
        await until(() => shared.outcomes.length >= outcomes + expected.length, `${expected.join(', ')}`, WAIT_MS);
        assert.deepEqual(shared.outcomes.slice(outcomes), expected);

        const errors = log.lines().slice(logged).filter((l) => l.level === 50);
        assert.equal(errors.length, 1, JSON.stringify(errors));
        const line = errors[0];
        assert.equal(line.code, c.code);
        assert.equal(line.remote, primary.localAddress);
        assert.equal(typeof line.offset, 'number');
        if (c.offset !== undefined) assert.equal(line.offset, c.offset);
        if (c.record !== undefined) assert.equal(line.record, c.record);
        assert.ok(String(line.msg).includes(`[${c.code}]`) && String(line.msg).includes(primary.localAddress), String(line.msg));
      });
    }
  });

  test('a second connection while one is active is refused; the first stream completes unaffected', T, async () => {
    const r = await rig();
    try {
      const first = await FakePrimary.connect(r.port);
      first.send(stream.bytes.subarray(0, stream.epochEnds[1] + 1000));
      await first.waitAcks(2);
      const second = await FakePrimary.connect(r.port);
      await second.waitClosed();
      const refused = r.log.find(/refused a primary connection from \S+: the primary at \S+ is active/);
      assert.equal(refused.length, 1);
      assert.equal(refused[0].remote, second.localAddress);
      assert.ok(String(refused[0].msg).includes(second.localAddress));
      assert.equal(r.server.primary, first.localAddress);

      const ended = once(r.server, 'stream-end');
      first.send(stream.bytes.subarray(stream.epochEnds[1] + 1000), 2);
      await ended;
      await first.waitAcks(5);
      assert.deepEqual(first.acks, applied(5));
      assert.deepEqual(second.acks, []);
      assert.equal(r.server.digest(), stream.digests[4]);
    } finally {
      await r.server.stop();
    }
  });

  test('an epoch over maxEpochBytes: OVER_BUFFER_LIMIT ack, connection closed, replica kept; a fresh stream syncs again', T, async () => {
    const heavy = recordStream({ pages: PAGES, epochs: 4, seed: 21, writes: 3, heavy: { 3: 80 } });
    const r = await rig({ maxEpochBytes: 128 * 1024, closeGraceMs: 300 });
    try {
      // This primary never closes its side: the refused socket lingers until the grace timer.
      const primary = await FakePrimary.connect(r.port, false);
      primary.send(heavy.bytes);
      await primary.waitAcks(3);
      assert.deepEqual(primary.acks.slice(0, 2), applied(2));
      const over = primary.acks[2];
      assert.ok(over?.type === 'ACK' && over.status === AckStatus.OVER_BUFFER_LIMIT && over.epoch === 3, JSON.stringify(over));
      assert.equal(primary.acks.length, 3);
      assert.equal(r.server.lastEpoch, 2);
      assert.equal(r.server.digest(), heavy.digests[1]);
      assert.equal(r.log.find(/needs more than the 131072-byte epoch buffer/).length, 1);
      assert.deepEqual(r.outcomes, ['applied', 'applied', 'refused']);

      // It reconnects at once, while the refused socket is still open: that one must not count as active.
      const fresh = recordStream({ pages: PAGES, epochs: 2, seed: 22, writes: 3 });
      const again = await FakePrimary.connect(r.port);
      assert.equal(primary.closed, false);
      const ended = once(r.server, 'stream-end');
      again.send(fresh.bytes);
      await ended;
      await again.waitAcks(2);
      assert.deepEqual(again.acks, applied(2));
      await again.waitClosed();
      // The refused primary never closed its side; the grace timer ends that socket.
      await until(() => r.server.openConnections === 0, 'the grace timer to drop the lingering socket', WAIT_MS);
      primary.socket.destroy();
      assert.equal(r.log.find(/refused a primary connection/).length, 0);
      assert.equal(r.server.digest(), fresh.digests[1]);
      assert.equal(r.log.find(/epoch 2 of the previous stream is gone: the new stream differs from it by more than/).length, 1);
    } finally {
      await r.server.stop();
    }
  });

  test('a primary that vanishes mid-epoch: primary-gone, the torn epoch discarded', T, async () => {
    const r = await rig();
    try {
      const primary = await FakePrimary.connect(r.port);
      primary.send(stream.bytes.subarray(0, stream.epochEnds[2] + 3000));
      await primary.waitAcks(3);
      primary.socket.resetAndDestroy();
      await until(() => r.gone.length === 1, 'primary-gone', WAIT_MS);
      assert.deepEqual(r.gone[0], { remote: primary.localAddress, lastEpoch: 3, tornEpoch: 4 });
      assert.equal(r.server.digest(), stream.digests[2]);
      assert.equal(r.server.state, 'idle');
      assert.deepEqual(r.outcomes, ['applied', 'applied', 'applied', 'gone']);
      assert.equal(r.log.find(/gone without a clean END/).length, 1);

      // Half-closed mid-record: the truncation is answered, and it is still a lost primary.
      const next = await FakePrimary.connect(r.port);
      next.send(stream.bytes.subarray(0, stream.epochEnds[0] + 100));
      next.socket.end();
      await next.waitClosed();
      assert.equal(next.acks.length, 2);
      assert.ok(next.acks[1].type === 'ACK' && next.acks[1].status === AckStatus.STREAM_ERROR && next.acks[1].epoch === 2);
      await until(() => r.gone.length === 2, 'primary-gone', WAIT_MS);
      assert.deepEqual(r.gone[1], { remote: next.localAddress, lastEpoch: 1, tornEpoch: 2 });
      assert.equal(r.log.lines().filter((l) => l.code === ErrorCodes.STREAM_TRUNCATED).length, 1);
    } finally {
      await r.server.stop();
    }
  });

  describe('a connection lost while the device model takes a whole epoch', () => {
    /** A replica whose device-model loads wait for the test to settle them. */
    async function gatedRig(): Promise<{ r: Rig; loads: { settle: (ok: boolean) => void }[] }> {
      const replica = simReplica(PAGES);
      const loads: { settle: (ok: boolean) => void }[] = [];
      const domain = {
        ...replica.withoutDisk.domain,
        loadDeviceModel: (state: Buffer) =>
          new Promise<void>((resolve, reject) => {
            loads.push({
              settle: (ok) => {
                if (ok) replica.withoutDisk.domain.loadDeviceModel(state).then(resolve, reject);
                else reject(new Error('device model said no'));
              },
            });
          }),
      };
      const r = await rig({ replica: { domain, digest: replica.withoutDisk.digest } });
      r.replica = replica.sim;
      return { r, loads };
    }

    for (const ok of [true, false]) {
      test(`the load ${ok ? 'commits the epoch' : 'is refused: the replica stays at the epoch before'}, and only then is the primary gone`, T, async () => {
        const { r, loads } = await gatedRig();
        try {
          const primary = await FakePrimary.connect(r.port);
          primary.send(stream.bytes.subarray(0, stream.epochEnds[1]));
          await until(() => loads.length === 1, 'the first load', WAIT_MS);
          loads[0].settle(true);
          await until(() => loads.length === 2, "epoch 2's load", WAIT_MS);
          primary.socket.resetAndDestroy();
          // The reset arrives while epoch 2 loads: nothing is reported until the load settles.
          await new Promise((resolve) => setTimeout(resolve, 100));
          assert.deepEqual(r.gone, []);
          assert.equal(r.server.lastEpoch, 1);
          loads[1].settle(ok);
          await until(() => r.gone.length === 1, 'primary-gone', WAIT_MS);
          const epoch = ok ? 2 : 1;
          assert.deepEqual(r.gone[0], { remote: primary.localAddress, lastEpoch: epoch, tornEpoch: epoch + 1 });
          assert.equal(r.server.lastEpoch, epoch);
          assert.equal(r.server.digest(), stream.digests[epoch - 1], `the replica is epoch ${epoch}: vCPUs, device model and pages`);
        } finally {
          await r.server.stop();
        }
      });
    }
  });

  describe('with a generation gate (streams open with TANDEM_PRIMARY)', () => {
    const gen2 = recordStream({ pages: PAGES, epochs: 5, seed: 0x5ec, generation: 2 });
    const gen3 = recordStream({ pages: PAGES, epochs: 3, seed: 0x77, generation: 3 });

    async function gated(known: { generation: number }, options: Partial<SecondaryServerOptions> = {}): Promise<Rig> {
      const refused: string[] = [];
      const r = await rig({ primaries: known, ...options });
      r.server.on('connection-refused', (c) => refused.push(c.remote));
      return r;
    }

    test('a stream that does not name its generation is refused before it writes anything', T, async () => {
      const r = await gated({ generation: 1 });
      try {
        const p = await FakePrimary.connect(r.port);
        p.send(stream.bytes);
        await p.waitClosed();
        assert.equal(r.server.lastEpoch, 0);
        assert.deepEqual(r.outcomes, []);
        const line = r.log.find(/refused a primary connection from \S+: .*the stream does not open with TANDEM_PRIMARY/);
        assert.equal(line.length, 1);
        assert.equal((line[0].err as { code?: string } | undefined)?.code, ErrorCodes.STREAM_NOT_A_PRIMARY);
      } finally {
        await r.server.stop();
      }
    });

    test('a connection that says nothing holds no slot past the prelude timeout; a fifth silent one is refused at once', T, async () => {
      const r = await gated({ generation: 1 }, { preludeTimeoutMs: 300 });
      try {
        const silent = await Promise.all([1, 2, 3, 4].map(() => FakePrimary.connect(r.port)));
        const fifth = await FakePrimary.connect(r.port);
        await fifth.waitClosed();
        assert.equal(r.log.find(/4 connections are already naming their generation/).length, 1);
        for (const p of silent) await p.waitClosed();
        assert.equal(r.log.find(/did not name its generation within 300 ms/).length, 4);
        // The real primary gets in afterwards.
        const p = await FakePrimary.connect(r.port);
        p.send(gen2.bytes);
        await p.waitAcks(5);
        assert.deepEqual(p.acks, applied(5));
        assert.equal(r.server.replicaGeneration, 2);
      } finally {
        await r.server.stop();
      }
    });

    test('a superseded primary\'s stream is refused with the reason, and the replica is untouched', T, async () => {
      const known = { generation: 1 };
      const r = await gated(known);
      try {
        const p = await FakePrimary.connect(r.port);
        p.send(gen2.bytes);
        await p.waitAcks(5);
        known.generation = 3;
        const stale = await FakePrimary.connect(r.port);
        stale.send(gen2.bytes);
        await stale.waitClosed();
        assert.equal(stale.acks.length, 1);
        const ack = stale.acks[0];
        assert.ok(ack.type === 'ACK' && ack.status === AckStatus.STREAM_ERROR, JSON.stringify(ack));
        assert.equal(ack.reason, 'generation 2 is superseded: this secondary knows generation 3');
        assert.equal(r.server.lastEpoch, 5);
        assert.equal(r.server.digest(), gen2.digests[4]);
        assert.equal(r.log.lines().filter((l) => l.code === ErrorCodes.STREAM_STALE_PRIMARY).length, 1);
      } finally {
        await r.server.stop();
      }
    });

    test('the primary reconnecting replaces a connection this side still holds; nobody is reported gone', T, async () => {
      const r = await gated({ generation: 2 });
      try {
        // The old connection: it stops mid-epoch and never closes (its primary has moved on).
        const old = await FakePrimary.connect(r.port, false);
        old.send(gen2.bytes.subarray(0, gen2.epochEnds[1] + 500));
        await old.waitAcks(2);
        const fresh = await FakePrimary.connect(r.port);
        fresh.send(gen2.bytes);
        await fresh.waitAcks(5);
        assert.deepEqual(fresh.acks, applied(5));
        assert.equal(r.server.digest(), gen2.digests[4]);
        assert.deepEqual(r.gone, [], 'a replaced stream is not a lost primary');
        assert.equal(r.log.find(/replacing the stream from/).length, 1);
        assert.equal(r.log.find(/ended for a newer one: epoch 3 discarded, replica at epoch 2/).length, 1);
      } finally {
        await r.server.stop();
      }
    });

    test('a newer primary heard of supersedes the active stream: it is dropped, and its successor streams', T, async () => {
      const known = { generation: 2 };
      const r = await gated(known);
      try {
        const old = await FakePrimary.connect(r.port, false);
        old.send(gen2.bytes.subarray(0, gen2.epochEnds[2] + 100));
        await old.waitAcks(3);
        r.server.supersede();
        assert.equal(r.server.primary, old.localAddress, 'the same generation is not superseded');
        known.generation = 3;
        r.server.supersede();
        await until(() => r.log.find(/ended for a newer one/).length === 1, 'the stream to be dropped', WAIT_MS);
        assert.equal(r.log.find(/is of generation 2, superseded by generation 3: dropped/).length, 1);
        assert.equal(r.server.primary, undefined);
        assert.equal(old.acks.length, 3, 'no ack after it was superseded');
        assert.deepEqual(r.gone, []);
        assert.equal(r.server.lastEpoch, 3);
        assert.equal(r.server.replicaGeneration, 2);
        const next = await FakePrimary.connect(r.port);
        next.send(gen3.bytes);
        await next.waitAcks(3);
        assert.deepEqual(next.acks, applied(3));
        assert.equal(r.server.replicaGeneration, 3);
      } finally {
        await r.server.stop();
      }
    });
  });

  test('COLO: the running guest is stopped before a new stream writes the replica, and keeps running after a torn one', T, async () => {
    const calls: string[] = [];
    const r: Rig = await rig({
      colo: {
        suspend: () => {
          calls.push('suspend');
          r.replica.pause();
          return new Uint32Array(0);
        },
        pause: () => {
          calls.push(`pause (replica ${r.epochs.length} epochs in)`);
          r.replica.pause();
        },
        resume: (epoch) => {
          calls.push(`resume ${epoch}`);
          r.replica.unpause();
        },
      },
    });
    try {
      // The first checkpoint of a COLO stream is not announced: it reads as any stream's first.
      const first = await FakePrimary.connect(r.port);
      await until(() => calls.length === 1, 'the pause at connect', WAIT_MS);
      first.send(stream.bytes.subarray(0, stream.epochEnds[0]));
      await first.waitAcks(1);
      await until(() => calls.includes('resume 1'), 'the guest to run from checkpoint 1', WAIT_MS);
      first.socket.resetAndDestroy();
      await until(() => r.gone.length === 1, 'primary-gone', WAIT_MS);
      assert.equal(r.replica.paused, false, 'after a torn stream the guest runs on (a failover goes on from its run)');
      const second = await FakePrimary.connect(r.port);
      await until(() => calls.length === 3, 'the pause at the second connect', WAIT_MS);
      assert.equal(r.replica.paused, true, 'stopped before the new pre-copy');
      assert.deepEqual(calls, ['pause (replica 0 epochs in)', 'resume 1', 'pause (replica 1 epochs in)']);
      second.send(stream.bytes.subarray(0, stream.epochEnds[0]));
      await second.waitAcks(1);
      await until(() => calls.length === 4, 'the guest to run from the new stream', WAIT_MS);
      assert.equal(calls[3], 'resume 1');
      assert.equal(r.server.digest(), stream.digests[0]);
    } finally {
      await r.server.stop();
    }
  });

  test('stop() drops the active primary without reporting it lost, and start() serves again', T, async () => {
    const r = await rig();
    const primary = await FakePrimary.connect(r.port);
    primary.send(stream.bytes.subarray(0, stream.epochEnds[1] + 10));
    await primary.waitAcks(2);
    await r.server.stop();
    await primary.waitClosed();
    assert.deepEqual(r.gone, []);
    assert.equal(r.server.lastEpoch, 2);
    assert.equal(r.server.digest(), stream.digests[1]);
    const { port } = await r.server.start();
    try {
      const again = await FakePrimary.connect(port);
      again.send(stream.bytes);
      await again.waitAcks(5);
      assert.equal(r.server.digest(), stream.digests[4]);
    } finally {
      await r.server.stop();
    }
  });
});
