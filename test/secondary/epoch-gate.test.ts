/** EpochGate: only whole, valid checkpoints pass, as raw bytes, whatever the chunking. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { saveDomain } from '../../src/checkpoint/save.js';
import { EpochGate } from '../../src/secondary/epoch-gate.js';
import { StreamDecoder } from '../../src/stream/decoder.js';
import { ImageReader } from '../../src/stream/image-reader.js';
import { wrapInXlSaveFile } from '../../src/stream/xl-writer.js';
import { silent, simBinding } from '../helpers/sim.js';

/** An xl-framed checkpointed stream of the sim (4 checkpoints, then END), and where each CHECKPOINT_END ends in it. */
async function remusFile(): Promise<{ file: Buffer; ends: number[] }> {
  const primary = simBinding(64).primary(silent);
  const chunks: Buffer[] = [];
  await saveDomain(primary.domain, { framing: 'libxl', version: 3, checkpoints: 4 }, (c) => c.forEach((b) => chunks.push(Buffer.from(b))));
  const file = Buffer.concat(wrapInXlSaveFile(chunks, { configJson: JSON.stringify({ c_info: { name: 'gated' } }) }));
  const headerBytes = file.length - Buffer.concat(chunks).length;
  const ends: number[] = [];
  for (const item of new StreamDecoder().push(Buffer.concat(chunks))) {
    if (item.kind === 'record' && item.record.type === 'CHECKPOINT_END') ends.push(headerBytes + item.end);
  }
  return { file, ends };
}

test('each checkpoint is handed on once whole, as the exact bytes from the previous one, whatever the chunking', async () => {
  const { file, ends } = await remusFile();
  assert.equal(ends.length, 4);
  for (const size of [1, 7, 4096, 65536, file.length]) {
    const gate = new EpochGate();
    const given: { checkpoint: number; bytes: Buffer }[] = [];
    for (let at = 0; at < file.length; at += size) {
      for (const e of gate.push(file.subarray(at, at + size))) given.push({ checkpoint: e.checkpoint, bytes: Buffer.concat(e.chunks) });
    }
    assert.deepEqual(gate.end(), { clean: true });
    // Before checkpoint 1 the records go on as they come (checkpoint 0); after it, whole epochs only.
    const complete = given.filter((g) => g.checkpoint > 0);
    assert.deepEqual(complete.map((g) => g.checkpoint), [1, 2, 3, 4], `chunks of ${size}`);
    assert.ok(given.slice(given.findIndex((g) => g.checkpoint === 1)).every((g) => g.checkpoint > 0), 'nothing partial after checkpoint 1');
    if (size < 4096) assert.ok(given.filter((g) => g.checkpoint === 0).length > 10, `the pre-copy goes on record by record (chunks of ${size})`);
    // Together they are the file up to the last CHECKPOINT_END; the END after it is not a checkpoint.
    assert.deepEqual(Buffer.concat(given.map((g) => g.bytes)), file.subarray(0, ends[3]), `chunks of ${size}`);
    assert.equal(complete[1].bytes.length, ends[1] - ends[0]);
    assert.equal(gate.domainName, 'gated');
  }
});

test('a stream torn or corrupted inside an epoch gives only the checkpoints before it', async () => {
  const { file, ends } = await remusFile();
  const torn = new EpochGate();
  const tornGiven = torn.push(file.subarray(0, ends[2] - 100)).map((e) => e.checkpoint);
  assert.deepEqual(tornGiven.filter((c) => c > 0), [1, 2]);
  const end = torn.end();
  assert.equal(end.clean, false);
  assert.equal(torn.complete, 2);

  // The third CHECKPOINT_END's type overwritten: that epoch never completes, and nothing after it counts.
  const bad = Buffer.from(file);
  bad.writeUInt32LE(0x7fff_fff0, ends[2] - 8);
  const gate = new EpochGate();
  const given = gate.push(bad).map((e) => e.checkpoint);
  assert.deepEqual(given.filter((c) => c > 0), [1, 2]);
  assert.ok(gate.failure !== undefined, 'the reader said why');
  assert.deepEqual(gate.push(Buffer.alloc(16)), [], 'stopped for good');
});

test('stripped records are checked, shown to the caller and cut out; the pages of each epoch are counted', async () => {
  const { file, ends } = await remusFile();
  const seen: string[] = [];
  const gate = new EpochGate({
    strip: (item) => {
      seen.push(item.record.type);
      // Strip the LIBXC_CONTEXT marker (a libxl record with no body) to see the cut.
      return item.record.layer === 'libxl' && item.record.type === 'LIBXC_CONTEXT';
    },
  });
  const given = gate.push(file);
  assert.ok(seen.includes('LIBXC_CONTEXT') && seen.includes('PAGE_DATA'), 'every record is shown');
  const bytes = Buffer.concat(given.map((g) => Buffer.concat(g.chunks)));
  // LIBXC_CONTEXT is 8 bytes (a header, no body): the output is the file up to the last checkpoint, less those 8.
  assert.equal(bytes.length, ends[3] - 8);
  assert.equal(given.reduce((n, g) => n + g.bytes, 0), bytes.length, 'bytes counts what is handed on');
  // The pages counted are the PFNs of the PAGE_DATA records handed on, epoch by epoch.
  const pfnsBetween = (from: number, to: number): number =>
    new ImageReader({ endAtCheckpoint: true }).push(file).reduce((n, i) => n + (i.kind === 'record' && i.record.type === 'PAGE_DATA' && i.offset >= from && i.end <= to ? i.record.pfns.length : 0), 0);
  assert.equal(given.reduce((n, g) => n + g.pages, 0), pfnsBetween(0, ends[3]));
  assert.ok(pfnsBetween(0, ends[0]) >= 64, 'the pre-copy and checkpoint 1 carry every page of the 64-page guest');
  for (const k of [2, 3, 4]) assert.equal(given.find((g) => g.checkpoint === k)!.pages, pfnsBetween(ends[k - 2], ends[k - 1]), `checkpoint ${k}`);
});
