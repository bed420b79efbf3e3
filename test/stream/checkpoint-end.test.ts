/**
 * Xen's rule for checkpointed streams, which have no END: one that stops
 * right after a libxl CHECKPOINT_END ended cleanly at that checkpoint (its
 * failover point); one that stops anywhere else was cut inside an epoch.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SimDomain } from '../../src/domain/sim/domain.js';
import { ErrorCodes, StreamError } from '../../src/errors.js';
import { StreamDecoder, type StreamEnd, type StreamItem } from '../../src/stream/decoder.js';
import { StreamDescriber } from '../../src/stream/describe.js';
import { StreamSaver } from '../helpers/stream-saver.js';
import { randomChunks } from './fixtures.js';
import { simLibxlStream } from './xl-fixtures.js';

const STREAM = await simLibxlStream({ pages: 24, checkpoints: 3 });
const ITEMS = new StreamDecoder().push(STREAM);
const isCheckpointEnd = (i: StreamItem): boolean => i.kind === 'record' && i.record.layer === 'libxl' && i.record.type === 'CHECKPOINT_END';
/** Stream offsets just past each CHECKPOINT_END. */
const BOUNDARIES = ITEMS.filter(isCheckpointEnd).map((i) => i.end);

type Outcome = StreamEnd | { kind: 'truncated'; error: StreamError };

function endOf(input: Buffer, options: { endAtCheckpoint?: boolean; chunks?: Buffer[] } = {}): Outcome {
  const d = new StreamDecoder({ endAtCheckpoint: options.endAtCheckpoint });
  for (const c of options.chunks ?? [input]) d.push(c);
  try {
    return d.end();
  } catch (err) {
    assert.ok(err instanceof StreamError, String(err));
    assert.equal(err.code, ErrorCodes.STREAM_TRUNCATED, err.message);
    return { kind: 'truncated', error: err };
  }
}

/** Every record boundary, and a few bytes either side of each. */
function cutPoints(): number[] {
  const points = new Set<number>();
  for (const item of ITEMS) for (const d of [-1, 0, 1, 4, 8]) if (item.end + d > 0 && item.end + d <= STREAM.length) points.add(item.end + d);
  return [...points].sort((a, b) => a - b);
}

describe('a checkpointed stream without END', () => {
  test('the test stream has 3 checkpoints and closes with libxc END and libxl END', () => {
    assert.equal(BOUNDARIES.length, 3);
    assert.equal(STREAM.length - BOUNDARIES[2], 16);
  });

  test('with endAtCheckpoint: cut right after CHECKPOINT_END N it ended at checkpoint N; cut anywhere else it is truncated', () => {
    let clean = 0;
    for (const cut of cutPoints()) {
      const got = endOf(STREAM.subarray(0, cut), { endAtCheckpoint: true });
      const k = BOUNDARIES.indexOf(cut);
      if (cut === STREAM.length) assert.deepEqual(got, { kind: 'end' });
      else if (k >= 0) {
        assert.deepEqual(got, { kind: 'checkpoint', checkpoint: k + 1 }, `cut at ${cut}`);
        clean++;
      } else assert.equal(got.kind, 'truncated', `cut at ${cut}`);
    }
    assert.equal(clean, 3);
  });

  test('the same in random chunks: where the chunks fall does not matter', () => {
    for (const [k, cut] of BOUNDARIES.entries()) {
      for (let seed = 1; seed <= 5; seed++) {
        const input = STREAM.subarray(0, cut);
        assert.deepEqual(endOf(input, { endAtCheckpoint: true, chunks: randomChunks(input, seed, 97) }), { kind: 'checkpoint', checkpoint: k + 1 });
        // Part of the next record header arrived: inside the next epoch.
        const more = STREAM.subarray(0, cut + 3);
        assert.equal(endOf(more, { endAtCheckpoint: true, chunks: randomChunks(more, seed, 97) }).kind, 'truncated');
      }
    }
  });

  test('a truncation inside an epoch names the epoch and the last complete checkpoint', () => {
    const got = endOf(STREAM.subarray(0, BOUNDARIES[1] + 8 + 4), { endAtCheckpoint: true });
    assert.equal(got.kind, 'truncated');
    assert.match(got.kind === 'truncated' ? got.error.message : '', /epoch 3 is incomplete \(the last complete checkpoint is 2\)/);
    assert.equal(got.kind === 'truncated' ? got.error.offset : -1, BOUNDARIES[1]);
    // A checkpoint is whole only at its CHECKPOINT_END: cut in its libxl records, it is the epoch cut.
    const beforeEnd = endOf(STREAM.subarray(0, BOUNDARIES[2] - 8), { endAtCheckpoint: true });
    assert.match(beforeEnd.kind === 'truncated' ? beforeEnd.error.message : '', /epoch 3 is incomplete \(the last complete checkpoint is 2\)$/);
    const first = endOf(STREAM.subarray(0, BOUNDARIES[0] - 8), { endAtCheckpoint: true });
    assert.match(first.kind === 'truncated' ? first.error.message : '', /epoch 1 is incomplete \(no checkpoint is complete\)$/);
    // Between libxc END and libxl END no epoch is open: no epoch named.
    const late = endOf(STREAM.subarray(0, STREAM.length - 8), { endAtCheckpoint: true });
    assert.ok(late.kind === 'truncated' && !/epoch/.test(late.error.message), 'after libxc END');
  });

  test("by default (Tandem's own streams end with END) every end short of END is truncated, as before", () => {
    for (const cut of BOUNDARIES) assert.equal(endOf(STREAM.subarray(0, cut)).kind, 'truncated', `cut at ${cut}`);
    const msg = endOf(STREAM.subarray(0, BOUNDARIES[0]));
    assert.ok(msg.kind === 'truncated');
    assert.equal(msg.error.message, `offset ${BOUNDARIES[0]}: stream ends while expecting more records`);
  });

  test('atCheckpointBoundary holds right after CHECKPOINT_END only, and not once the decoder has failed', () => {
    const d = new StreamDecoder();
    d.push(STREAM.subarray(0, BOUNDARIES[0] - 1));
    assert.equal(d.atCheckpointBoundary, false);
    d.push(STREAM.subarray(BOUNDARIES[0] - 1, BOUNDARIES[0]));
    assert.equal(d.atCheckpointBoundary, true);
    d.push(STREAM.subarray(BOUNDARIES[0], BOUNDARIES[0] + 1));
    assert.equal(d.atCheckpointBoundary, false);
    const bad = new StreamDecoder();
    bad.push(STREAM.subarray(0, BOUNDARIES[0]));
    assert.throws(() => bad.push(Buffer.from('0100000000000000', 'hex'))); // PAGE_DATA with an empty body
    assert.equal(bad.atCheckpointBoundary, false);
  });

  test('a libxc-framed checkpointed stream has no CHECKPOINT_END: ending after its CHECKPOINT is truncated', () => {
    const domain = new SimDomain({ pages: 8, now: () => 1n });
    const chunks: Buffer[] = [];
    const saver = new StreamSaver(domain, { framing: 'libxc', version: 3 }, (c) => chunks.push(...c.map((b) => Buffer.from(b))));
    saver.start();
    saver.sendPages([0, 1, 2]);
    saver.endOfCheckpoint();
    saver.checkpoint();
    const got = endOf(Buffer.concat(chunks), { endAtCheckpoint: true });
    assert.equal(got.kind, 'truncated');
  });

  test('a COLO stream (no END either) ends cleanly after CHECKPOINT_END, not after the CHECKPOINT_STATE that opens the next epoch', () => {
    const domain = new SimDomain({ pages: 16, now: () => 1n });
    const chunks: Buffer[] = [];
    const marks: number[] = [];
    const saver = new StreamSaver(domain, { framing: 'libxl', version: 3, colo: true }, (c) => chunks.push(...c.map((b) => Buffer.from(b))));
    saver.start();
    saver.sendPages(Array.from({ length: 16 }, (_, i) => i));
    saver.endOfCheckpoint();
    saver.checkpoint();
    marks.push(saver.position);
    saver.newCheckpoint();
    marks.push(saver.position);
    const bytes = Buffer.concat(chunks);
    const decode = (cut: number): Outcome => {
      const d = new StreamDecoder({ colo: true, endAtCheckpoint: true });
      d.push(bytes.subarray(0, cut));
      try {
        return d.end();
      } catch (err) {
        return { kind: 'truncated', error: err as StreamError };
      }
    };
    assert.deepEqual(decode(marks[0]), { kind: 'checkpoint', checkpoint: 1 });
    assert.equal(decode(marks[1]).kind, 'truncated');
  });

  test('startOffset shifts item and error offsets (a stream inside an xl save file)', () => {
    const d = new StreamDecoder({ startOffset: 1000 });
    const items = d.push(STREAM.subarray(0, 40));
    assert.deepEqual(items[0], { ...ITEMS[0], offset: 1000, end: 1016 });
    assert.equal(d.position, 1024); // the libxl header and LIBXC_CONTEXT; the image header waits for its last 8 bytes
    assert.throws(
      () => d.end(),
      (err: unknown) => err instanceof StreamError && err.offset === ITEMS.find((i) => i.end > 40)!.offset + 1000,
    );
    assert.throws(() => new StreamDecoder({ startOffset: -1 }), RangeError);
    assert.throws(() => new StreamDecoder({ startOffset: 0 }).push(Buffer.from('GET / HTTP/1.1\r\n')), (err: unknown) => err instanceof StreamError && err.offset === 0);
    assert.throws(() => new StreamDecoder({ startOffset: 77 }).push(Buffer.from('GET / HTTP/1.1\r\n')), (err: unknown) => err instanceof StreamError && err.offset === 77);
  });
});

describe('StreamDescriber at the end of a stream', () => {
  test('a clean end at a checkpoint gets its line before the summary; an END gets none', () => {
    const describe = (end?: StreamEnd): string[] => {
      const d = new StreamDescriber();
      for (const item of ITEMS) d.describe(item);
      return d.finish(end);
    };
    const atCheckpoint = describe({ kind: 'checkpoint', checkpoint: 3 });
    assert.equal(atCheckpoint[0], 'ended after checkpoint 3: a failover point');
    assert.match(atCheckpoint[1], /^summary: libxl stream, libxc v3, x86 HVM, 3 checkpoints/);
    assert.equal(atCheckpoint.length, 2);
    assert.deepEqual(describe({ kind: 'end' }), describe());
    assert.equal(describe().length, 1);
  });
});
