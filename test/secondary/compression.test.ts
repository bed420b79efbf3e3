/**
 * Negotiated page compression between a primary's session and a real
 * secondary server (in-memory transport, the sim): the secondary offers
 * TANDEM_FEATURES first on its back-channel where its replica can decode
 * compressed pages, and not in COLO nor for a replica that cannot read its
 * pages; the primary compresses only what was offered, and with nothing
 * offered its stream is byte for byte the plain one. The receiver refuses
 * compressed pages it did not offer, and before a stream's first checkpoint.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { DeviceSet } from '../../src/checkpoint/devices.js';
import { CheckpointSession, type CheckpointTarget } from '../../src/checkpoint/session.js';
import { remusEpochs } from '../../src/checkpoint/strategies.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { EpochReceiver, type ReceiverAction } from '../../src/secondary/receiver.js';
import { SecondaryServer } from '../../src/secondary/server.js';
import { ReplicationSession } from '../../src/secondary/session.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { StreamEncoder } from '../../src/stream/encoder.js';
import { DomainType, TandemFeature, TandemType } from '../../src/stream/format.js';
import { BackChannelDecoder, encodeBackRecord } from '../../src/transport/backchannel.js';
import { ReplicationLink } from '../../src/transport/link.js';
import { runBeforeEachSuspend } from '../../src/checkpoint/save.js';
import { SimProtectedDomain, type SimPrimaryGuest } from '../../src/domain/sim/binding.js';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { SimWorkload } from '../../src/domain/sim/workload.js';
import { tempDir } from '../helpers/cli.js';
import { MemoryTransport } from '../helpers/memory-transport.js';
import { verifyCheckpointed } from '../helpers/xen.js';
import { silent, simBinding } from '../helpers/sim.js';
import { hex, page } from '../stream/fixtures.js';

const PAGES = 256;

/** Writes a few words in `n` pages, different ones each epoch, as a guest would. */
function dirty(guest: SimPrimaryGuest, epoch: number, n = 24): void {
  const pfns = Uint32Array.from({ length: n }, (_, i) => (epoch * 7 + i * 5) % PAGES).sort();
  guest.synthetic.touch(Uint32Array.from(new Set(pfns)), epoch * 1000);
}

/** A target that keeps the stream's bytes, holds every epoch at once and offers `features`. */
function recorder(features?: number): CheckpointTarget & { bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const t: CheckpointTarget & { bytes: () => Buffer } = {
    write: (c) => {
      for (const b of c) chunks.push(Buffer.from(b));
      return Promise.resolve();
    },
    flushed: () => Promise.resolve(),
    held: () => Promise.resolve(),
    bytes: () => Buffer.concat(chunks),
  };
  if (features !== undefined) t.peerFeatures = () => features;
  return t;
}

/** `epochs` checkpoints of a fresh sim domain (the same guest, clock and writes every time) into `target`. */
async function run(target: CheckpointTarget, epochs: number, compression?: { cachePages: number }): Promise<void> {
  const sim = new SimDomain({ pages: PAGES, now: () => 1n });
  const guest = new SimWorkload(sim, 7);
  guest.boot();
  const session = new CheckpointSession({
    domain: runBeforeEachSuspend(new SimProtectedDomain(sim), () => guest.run(20)),
    devices: new DeviceSet(),
    target,
    strategy: remusEpochs,
    version: 3,
    precopyPolicy: () => 'stop-and-copy',
    now: () => 0,
    generation: 1,
    compression,
  });
  await session.precopy();
  for (let e = 2; e <= epochs; e++) await session.checkpoint('operator');
  await session.end();
}

const compressedRecords = (bytes: Buffer): number =>
  new StreamDecoder({ format: 'libxl' }).push(bytes).filter((i) => i.kind === 'record' && i.record.type === 'TANDEM_PAGE_XBZRLE').length;

describe('negotiation', () => {
  test('a sim secondary offers TANDEM_FEATURES first; the primary then compresses every epoch after the first, and the replica equals the primary at each', async () => {
    const binding = simBinding(PAGES);
    const replica = binding.replica(silent);
    const transport = new MemoryTransport();
    const server = new SecondaryServer({ replica, transport, listen: { host: 'secondary', port: 0 }, logger: silent });
    const link = new ReplicationLink({ transport, secondary: await server.start(), connectTimeoutMs: 1000, ackTimeoutMs: 5000 });
    await link.start();
    const guest = binding.primary(silent);
    const epochs: number[] = [];
    const session = new CheckpointSession({
      domain: guest.domain,
      devices: new DeviceSet(),
      target: link,
      strategy: remusEpochs,
      version: 3,
      precopyPolicy: () => 'stop-and-copy',
      now: () => performance.now(),
      compression: { cachePages: 32 },
    });
    try {
      const first = await session.precopy();
      assert.equal(first.first.compression, undefined, 'epoch 1 goes as PAGE_DATA');
      assert.equal(link.peerFeatures(), TandemFeature.PAGE_XBZRLE);
      assert.equal(server.digest(), guest.digest());
      for (let e = 2; e <= 30; e++) {
        dirty(guest, e, e % 3 === 0 ? 60 : 10);
        const m = await session.checkpoint('operator');
        assert.ok(m.compression !== undefined, `epoch ${e} went compressed`);
        assert.equal(server.digest(), guest.digest(), `epoch ${e}: the replica equals the primary`);
        epochs.push(m.compression.delta);
      }
      assert.ok(epochs.some((d) => d > 0));
      await session.end();
    } finally {
      await link.stop();
      await server.stop();
    }
  });

  async function firstBackBytes(colo: boolean, writable: boolean): Promise<Buffer> {
    const replica = simBinding(PAGES).replica(silent);
    // Still readable (it keeps the last checkpoint), but lends no page out to write in place.
    const domain = writable ? replica.domain : { ...replica.domain, writablePage: undefined };
    const transport = new MemoryTransport();
    const server = new SecondaryServer({
      replica: { domain, digest: () => replica.digest() },
      transport,
      listen: { host: 'secondary', port: 0 },
      logger: silent,
      colo: colo ? { suspend: () => new Uint32Array(0), pause: () => {}, resume: () => {} } : undefined,
    });
    const socket = await transport.connect(await server.start(), { timeoutMs: 1000, peer: 'the secondary' });
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    // Anything the secondary sends on accepting a stream, it sends at once.
    await new Promise((r) => setTimeout(r, 50));
    socket.destroy();
    await server.stop();
    return Buffer.concat(got);
  }

  test('the offer on the wire: TANDEM_FEATURES, body u32 bits and u32 reserved', async () => {
    const bytes = await firstBackBytes(false, true);
    assert.equal(bytes.toString('hex'), hex('06540080 08000000 | 01000000 00000000').toString('hex'));
    assert.deepEqual(new BackChannelDecoder().push(bytes), [{ type: 'FEATURES', features: TandemFeature.PAGE_XBZRLE }]);
  });

  test('no offer in COLO (its replica runs between checkpoints), nor from a replica that cannot lend its pages out to write in place', async () => {
    assert.equal((await firstBackBytes(true, true)).length, 0);
    assert.equal((await firstBackBytes(false, false)).length, 0);
  });

  test('bits a primary does not know are dropped; a bad FEATURES body is a typed error', () => {
    const frame = (body: string): Buffer => hex('06540080 08000000', body);
    assert.deepEqual(new BackChannelDecoder().push(frame('ff000000 00000000')), [{ type: 'FEATURES', features: TandemFeature.PAGE_XBZRLE }]);
    assert.throws(() => new BackChannelDecoder().push(frame('01000000 01000000')), (e: StreamError) => e.code === ErrorCodes.RECORD_RESERVED_NONZERO);
    assert.throws(() => new BackChannelDecoder().push(hex('06540080 04000000 01000000 00000000')), (e: StreamError) => e.code === ErrorCodes.RECORD_BAD_LENGTH);
    assert.equal(encodeBackRecord({ type: 'FEATURES', features: 1 }).length, 16);
  });
});

describe('with nothing offered, the stream is the plain one', () => {
  test('compression configured, target offering nothing: byte for byte the stream of a primary without it', async () => {
    const plain = recorder();
    await run(plain, 8);
    const configuredOld = recorder();
    await run(configuredOld, 8, { cachePages: 64 });
    const configuredZero = recorder(0);
    await run(configuredZero, 8, { cachePages: 64 });
    assert.ok(plain.bytes().length > 8 * 4096);
    assert.ok(configuredOld.bytes().equals(plain.bytes()), 'a target without peerFeatures');
    assert.ok(configuredZero.bytes().equals(plain.bytes()), 'a target offering no feature');
    assert.equal(compressedRecords(plain.bytes()), 0);
  });

  test('offered and configured: compressed records from epoch 2 on, and fewer bytes', async () => {
    const plain = recorder();
    await run(plain, 8);
    const offered = recorder(TandemFeature.PAGE_XBZRLE);
    await run(offered, 8, { cachePages: 64 });
    assert.ok(compressedRecords(offered.bytes()) >= 7);
    assert.ok(offered.bytes().length < plain.bytes().length);
  });
});

describe("Xen's verifier classes (xen-utils-4.17) on the stream", () => {
  const tmp = tempDir();
  after(() => tmp.cleanup());

  test('compressed: framed as the spec says, read past as optional records; plain: needs no leave for them', async () => {
    const offered = recorder(TandemFeature.PAGE_XBZRLE);
    await run(offered, 6, { cachePages: 64 });
    const file = tmp.path('compressed.stream');
    writeFileSync(file, offered.bytes());
    const v = verifyCheckpointed(file, { optional: [TandemType.TANDEM_PRIMARY, TandemType.TANDEM_PAGE_XBZRLE] });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.epochs, 6);
    assert.equal(v.records?.filter(([layer, type]) => layer === 'libxc' && type === TandemType.TANDEM_PAGE_XBZRLE).length, compressedRecords(offered.bytes()));
    // Negative control: without leave to read past it, Xen's verifier refuses the record (and Xen's restore would lose its pages).
    assert.notEqual(verifyCheckpointed(file, { optional: [TandemType.TANDEM_PRIMARY] }).status, 0);

    const plain = recorder();
    await run(plain, 6, { cachePages: 64 });
    const plainFile = tmp.path('plain.stream');
    writeFileSync(plainFile, plain.bytes());
    const p = verifyCheckpointed(plainFile, { optional: [TandemType.TANDEM_PRIMARY] });
    assert.equal(p.status, 0, p.stderr);
    assert.equal(p.epochs, 6);
  });
});

describe('the receiver refuses compressed pages it cannot take', () => {
  function feed(bytes: Buffer, features: number): ReceiverAction[] {
    const replica = simBinding(PAGES).replica(silent);
    const receiver = new EpochReceiver(replica.domain, { maxEpochBytes: 64 << 20 });
    const session = new ReplicationSession(receiver, { replicaPages: PAGES, maxRecordBytes: 16 << 20, features });
    session.start();
    const actions: ReceiverAction[] = [];
    const act = (a: ReceiverAction): number => actions.push(a);
    session.push(bytes, act);
    // The device model 'loads' at once (this replica's state is not what is checked here).
    while (session.blocked) session.deviceModelLoaded(act);
    return actions;
  }
  const failure = (actions: ReceiverAction[]): StreamError => {
    const close = actions.find((a) => a.type === 'close');
    assert.ok(close !== undefined && close.outcome === 'stream-error', JSON.stringify(actions.map((a) => a.type)));
    assert.ok(close.error instanceof StreamError);
    return close.error;
  };

  test('a primary sending them unoffered: ERR_RECORD_NOT_NEGOTIATED at the record, after the epochs before it committed', async () => {
    const offered = recorder(TandemFeature.PAGE_XBZRLE);
    await run(offered, 3, { cachePages: 64 });
    const actions = feed(offered.bytes(), 0);
    const err = failure(actions);
    assert.equal(err.code, ErrorCodes.RECORD_NOT_NEGOTIATED);
    assert.equal(err.record, 'libxc TANDEM_PAGE_XBZRLE');
    assert.deepEqual(actions.filter((a) => a.type === 'committed').map((a) => a.type === 'committed' && a.commit.epoch), [1]);
    // Offered, the same bytes apply whole.
    assert.equal(feed(offered.bytes(), TandemFeature.PAGE_XBZRLE).filter((a) => a.type === 'committed').length, 3);
  });

  test("compressed pages before the stream's first checkpoint (no base yet): ERR_RECORD_OUT_OF_ORDER", () => {
    const enc = new StreamEncoder('libxl');
    const bytes = Buffer.concat([
      ...enc.libxlHeader(),
      ...enc.record({ layer: 'libxl', type: 'LIBXC_CONTEXT' }),
      ...enc.imageHeader(3),
      ...enc.domainHeader({ type: DomainType.X86_HVM, pageShift: 12, xenMajor: 4, xenMinor: 17 }),
      ...enc.record({ layer: 'libxc', type: 'STATIC_DATA_END' }),
      ...enc.record({ layer: 'libxc', type: 'TANDEM_PAGE_XBZRLE', pfns: [0], encodings: [0], payloads: [page(1)] }),
    ]);
    assert.equal(failure(feed(bytes, TandemFeature.PAGE_XBZRLE)).code, ErrorCodes.RECORD_OUT_OF_ORDER);
  });

  test('features beyond what the replica decodes cannot be offered', () => {
    const replica = simBinding(PAGES).replica(silent);
    const receiver = new EpochReceiver({ ...replica.domain, writablePage: undefined }, { maxEpochBytes: 1 << 20 });
    assert.equal(receiver.features, 0);
    assert.throws(() => receiver.begin(TandemFeature.PAGE_XBZRLE), /beyond what this replica decodes/);
  });
});

