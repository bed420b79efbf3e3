/**
 * Fuzz tests for the two Xen wire codecs (and the xenstore client on top of
 * its codec): whatever bytes arrive, in whatever chunks, a decoder either
 * decodes them or throws its own typed error with a stable code, and then
 * stays stopped; it never crashes with another exception or hangs. What it
 * does decode is exactly what was on the wire: each message re-encodes to
 * its own bytes.
 *
 * The corpus is built here from the codecs' encoders; each case is derived
 * from (seed, case index) alone, so a failure names both and replays alone:
 *
 *   TANDEM_FUZZ_SEED=0x... TANDEM_FUZZ_ONLY=<case> node --test dist/test/domain/xen/fuzz.test.js
 *
 * (TANDEM_FUZZ_CASES=<n> runs more or fewer.) The decoders hold at most one
 * message in a fixed buffer (4112 and 65537 bytes), so no case can make them
 * allocate from a length they have not checked; a hang would be caught by
 * the test's timeout.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, test, type TestContext } from 'node:test';
import { ErrorCodes } from '../../../src/errors.js';
import { SaveHelperError, XenstoreError } from '../../../src/domain/xen/errors.js';
import { SaveHelperDecoder, encodeMessage as encodeHelper, type HelperMessage } from '../../../src/domain/xen/save-helper-wire.js';
import { PAYLOAD_MAX, XenstoreDecoder, XsType, encodeMessage as encodeXs, encodeRequest, parseReply, parseWatchEvent, type XsMessage, type XsRequestType } from '../../../src/domain/xen/xenstore-wire.js';
import { XenstoreClient } from '../../../src/domain/xen/xenstore.js';
import { xorshift32 } from '../../../src/util/xorshift.js';

const DEFAULT_SEED = 0x5eed_0d0e;
const DEFAULT_CASES = 20_000;

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${name}=${raw} is not a non-negative integer`);
  return n;
}
const SEED = envInt('TANDEM_FUZZ_SEED', DEFAULT_SEED) >>> 0;
const ONLY = process.env.TANDEM_FUZZ_ONLY;
const CASES = envInt('TANDEM_FUZZ_CASES', DEFAULT_CASES);
const caseRange = (): [number, number] => (ONLY === undefined || ONLY === '' ? [0, CASES] : [envInt('TANDEM_FUZZ_ONLY', 0), envInt('TANDEM_FUZZ_ONLY', 0) + 1]);
const hex32 = (n: number): string => `0x${(n >>> 0).toString(16)}`;

class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = xorshift32(seed);
  }
  int(n: number): number {
    return this.next() % n;
  }
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }
}

const INTERESTING_U32 = [0, 1, 2, 3, 0x7f, 0x80, 0xff, 0x100, 0xfff, 0x1000, 0x1001, 0xfffe, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** One deterministic mutation of `input` (or a splice with `other`). */
function mutate(rng: Rng, input: Buffer, other: Buffer): Buffer {
  const b = Buffer.from(input);
  const at = (): number => rng.int(Math.max(1, b.length));
  switch (rng.int(9)) {
    case 0: // flip bits
      for (let i = rng.range(1, 8); i > 0 && b.length > 0; i--) b[at()] ^= 1 << rng.int(8);
      return b;
    case 1: // interesting bytes
      for (let i = rng.range(1, 4); i > 0 && b.length > 0; i--) b[at()] = rng.pick([0, 1, 0x7f, 0x80, 0xfe, 0xff]);
      return b;
    case 2: // an interesting u32 over a length or type field (or anywhere)
      if (b.length >= 4) b.writeUInt32LE(rng.pick(INTERESTING_U32), rng.int(b.length - 3));
      return b;
    case 3: // an interesting u16
      if (b.length >= 2) b.writeUInt16LE(rng.pick(INTERESTING_U32) & 0xffff, rng.int(b.length - 1));
      return b;
    case 4: // truncate
      return b.subarray(0, at());
    case 5: {
      // delete a range
      const s = at();
      return Buffer.concat([b.subarray(0, s), b.subarray(s + rng.range(1, 32))]);
    }
    case 6: {
      // duplicate a range
      const s = at();
      const e = Math.min(b.length, s + rng.range(1, 64));
      return Buffer.concat([b.subarray(0, e), b.subarray(s, e), b.subarray(e)]);
    }
    case 7: {
      // insert random bytes
      const s = at();
      const junk = Buffer.alloc(rng.range(1, 16));
      for (let i = 0; i < junk.length; i++) junk[i] = rng.int(256);
      return Buffer.concat([b.subarray(0, s), junk, b.subarray(s)]);
    }
    default: // splice: a prefix of one and a suffix of another
      return Buffer.concat([b.subarray(0, at()), other.subarray(rng.int(Math.max(1, other.length)))]);
  }
}

/** Feeds `input` in random chunks; returns what was decoded and the error, if any. */
function feed<M, E extends Error>(rng: Rng, input: Buffer, push: (c: Buffer, out: M[]) => void, isOwnError: (e: unknown) => e is E): { messages: M[]; error: E | undefined } {
  const messages: M[] = [];
  for (let at = 0; at < input.length; ) {
    const n = rng.pick([1, 2, 3, 7, 16, 17, 64, 1000, 5000, 70_000]);
    try {
      push(input.subarray(at, at + n), messages);
    } catch (err) {
      if (isOwnError(err)) return { messages, error: err };
      throw err;
    }
    at += n;
  }
  return { messages, error: undefined };
}

const CODES = new Set<string>(Object.values(ErrorCodes));

// ---------------------------------------------------------------------------
// Corpora
// ---------------------------------------------------------------------------

const XS_REQUEST_TYPES: XsRequestType[] = ['READ', 'WRITE', 'WATCH', 'UNWATCH', 'TRANSACTION_START', 'TRANSACTION_END', 'RESUME'];

function xenstoreCorpus(): Buffer[] {
  const replies = Buffer.concat([
    encodeXs(XsType.READ, 1, 0, Buffer.from('suspend')),
    encodeXs(XsType.WATCH_EVENT, 0, 0, Buffer.from('/local/domain/5/control/shutdown\0tandem-1\0')),
    encodeXs(XsType.ERROR, 2, 0, Buffer.from('ENOENT\0')),
    encodeXs(XsType.WRITE, 3, 7, Buffer.from('OK\0')),
    encodeXs(XsType.TRANSACTION_START, 4, 0, Buffer.from('7\0')),
    encodeXs(XsType.TRANSACTION_END, 5, 7, Buffer.from('OK\0')),
    encodeXs(XsType.ERROR, 6, 0, Buffer.from('EAGAIN\0')),
    encodeXs(XsType.WATCH_EVENT, 0, 0, Buffer.from('@releaseDomain\0tandem-2\0')),
  ]);
  const requests = Buffer.concat([
    encodeRequest({ type: 'READ', path: '/local/domain/5/control/shutdown' }, 1),
    encodeRequest({ type: 'WRITE', path: '/local/domain/5/control/shutdown', value: 'suspend' }, 2, 7),
    encodeRequest({ type: 'WATCH', path: '@releaseDomain', token: 'tandem-2' }, 3),
    encodeRequest({ type: 'TRANSACTION_START' }, 4),
    encodeRequest({ type: 'TRANSACTION_END', commit: true }, 5, 7),
    encodeRequest({ type: 'RESUME', domid: 5 }, 6),
  ]);
  const big = Buffer.concat([encodeXs(XsType.READ, 1, 0, Buffer.alloc(PAYLOAD_MAX, 0x41)), encodeXs(XsType.READ, 2, 0, Buffer.alloc(0))]);
  return [replies, requests, big];
}

const CTX = 'xc';
const helperLog = (level: number, text: string): HelperMessage => ({ type: 'log', level, errno: -1, context: CTX, text });

function helperCorpus(): Buffer[] {
  const save: HelperMessage[] = [helperLog(1, 'starting save'), { type: 'switch_qemu_logdirty', domid: 5, enable: 1 }];
  for (let e = 0; e < 3; e++) {
    save.push({ type: 'progress', context: CTX, doingWhat: 'Memory', done: BigInt(e), total: 3n }, { type: 'suspend' }, { type: 'postcopy' }, { type: 'checkpoint' });
  }
  save.push(helperLog(8, 'Save failed (0 = Success)'), { type: 'switch_qemu_logdirty', domid: 5, enable: 0 }, { type: 'complete', retval: 0, errno: 0 }, helperLog(1, 'ünïcödé after complete'));
  const restore: HelperMessage[] = [
    { type: 'static_data_done', missing: 0 },
    { type: 'checkpoint' },
    { type: 'wait_checkpoint' },
    { type: 'restore_results', storeGfn: 0xfeffcn, consoleGfn: 2n ** 64n - 1n },
    { type: 'complete', retval: -1, errno: 28 },
  ];
  const long: HelperMessage[] = [helperLog(9, 'x'.repeat(40_000)), { type: 'suspend' }];
  return [save, restore, long].map((ms) => Buffer.concat(ms.map(encodeHelper)));
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

interface Tally {
  cases: number;
  decoded: number;
  errors: Record<string, number>;
}

function report(t: TestContext, name: string, tally: Tally, first: number, end: number): void {
  t.diagnostic(`${name}: seed ${hex32(SEED)}, cases ${first}..${end - 1}: ${tally.decoded} messages decoded; errors ${JSON.stringify(tally.errors)}`);
}

describe(`xen wire codecs under fuzzing (seed ${hex32(SEED)})`, () => {
  test('xenstore: mutated streams decode exactly or fail with a XenstoreError, and stay failed', { timeout: 300_000 }, (t) => {
    const corpus = xenstoreCorpus();
    const [first, end] = caseRange();
    const tally: Tally = { cases: 0, decoded: 0, errors: {} };
    for (let i = first; i < end; i++) {
      const rng = new Rng((SEED ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0 || 1);
      let input = rng.pick(corpus);
      for (let m = rng.range(1, 3); m > 0; m--) input = mutate(rng, input, rng.pick(corpus));
      const where = `case ${i} (seed ${hex32(SEED)}), input ${input.toString('hex').slice(0, 200)}`;
      const d = new XenstoreDecoder();
      const { messages, error } = feed<XsMessage, XenstoreError>(rng, input, (c, out) => d.push(c, out), (e): e is XenstoreError => e instanceof XenstoreError);
      tally.cases++;
      tally.decoded += messages.length;
      // What was decoded is exactly what was on the wire.
      for (const m of messages) {
        assert.ok(encodeXs(m.type, m.reqId, m.txId, m.payload).equals(input.subarray(m.offset, m.offset + 16 + m.payload.length)), `${where}: message at ${m.offset} does not re-encode to its bytes`);
        // The payload parsers take anything the decoder let through without crashing.
        for (const type of XS_REQUEST_TYPES) {
          try {
            parseReply(type, m);
          } catch (err) {
            assert.ok(err instanceof XenstoreError && err.code === 'ERR_XENSTORE_BAD_MESSAGE', `${where}: parseReply(${type}) threw ${String(err)}`);
          }
        }
        try {
          parseWatchEvent(m);
        } catch (err) {
          assert.ok(err instanceof XenstoreError && err.code === 'ERR_XENSTORE_BAD_MESSAGE', `${where}: parseWatchEvent threw ${String(err)}`);
        }
      }
      if (error) {
        assert.ok(CODES.has(error.code), `${where}: unknown code ${error.code}`);
        assert.ok(['ERR_XENSTORE_TOO_LARGE', 'ERR_XENSTORE_BAD_MESSAGE'].includes(error.code), `${where}: ${error.code}`);
        tally.errors[error.code] = (tally.errors[error.code] ?? 0) + 1;
        assert.throws(
          () => d.push(Buffer.alloc(16)),
          (e: unknown) => e instanceof XenstoreError && e.code === 'ERR_XENSTORE_DECODER_STOPPED' && e.cause === error,
          `${where}: not sticky`,
        );
      }
    }
    report(t, 'xenstore', tally, first, end);
    if (first === 0 && end >= DEFAULT_CASES) {
      assert.ok(tally.errors.ERR_XENSTORE_TOO_LARGE > 0 && tally.errors.ERR_XENSTORE_BAD_MESSAGE > 0, 'both refusals reached');
    }
  });

  test('save helper: mutated streams decode exactly or fail with a SaveHelperError, and stay failed', { timeout: 300_000 }, (t) => {
    const corpus = helperCorpus();
    const [first, end] = caseRange();
    const tally: Tally = { cases: 0, decoded: 0, errors: {} };
    for (let i = first; i < end; i++) {
      const rng = new Rng((SEED ^ Math.imul(i + 1, 0x85ebca6b)) >>> 0 || 1);
      let input = rng.pick(corpus);
      for (let m = rng.range(1, 3); m > 0; m--) input = mutate(rng, input, rng.pick(corpus));
      const where = `case ${i} (seed ${hex32(SEED)}), input ${input.toString('hex').slice(0, 200)}`;
      const d = new SaveHelperDecoder();
      const { messages, error } = feed<HelperMessage, SaveHelperError>(rng, input, (c, out) => d.push(c, out), (e): e is SaveHelperError => e instanceof SaveHelperError);
      tally.cases++;
      tally.decoded += messages.length;
      for (const m of messages) {
        const start = m.offset!;
        const original = input.subarray(start, start + 2 + input.readUInt16LE(start));
        const again = encodeHelper(m);
        if (m.type !== 'log' && m.type !== 'progress') {
          assert.ok(again.equals(original), `${where}: ${m.type} at ${start} does not re-encode to its bytes`);
        } else {
          // Strings are decoded as UTF-8, so bytes that are not UTF-8 come back changed; the decoded message is a fixed point.
          const [back] = new SaveHelperDecoder().push(again);
          assert.deepEqual({ ...back, offset: start }, m, `${where}: ${m.type} at ${start} is not a fixed point`);
        }
      }
      if (error) {
        assert.ok(CODES.has(error.code), `${where}: unknown code ${error.code}`);
        assert.ok(['ERR_SAVE_HELPER_BAD_MESSAGE', 'ERR_SAVE_HELPER_UNKNOWN_TYPE'].includes(error.code), `${where}: ${error.code}`);
        tally.errors[error.code] = (tally.errors[error.code] ?? 0) + 1;
        assert.throws(
          () => d.push(Buffer.from([2, 0, 3, 0])),
          (e: unknown) => e instanceof SaveHelperError && e.code === 'ERR_SAVE_HELPER_DECODER_STOPPED' && e.cause === error,
          `${where}: not sticky`,
        );
      }
    }
    report(t, 'save helper', tally, first, end);
    if (first === 0 && end >= DEFAULT_CASES) {
      assert.ok(tally.errors.ERR_SAVE_HELPER_BAD_MESSAGE > 0 && tally.errors.ERR_SAVE_HELPER_UNKNOWN_TYPE > 0, 'both refusals reached');
    }
  });

  test('the xenstore client fed mutated replies: every request settles with a reply or a XenstoreError; nothing escapes', { timeout: 300_000 }, async (t) => {
    // A socket stand-in: what the client writes is dropped, what the "daemon" sends is pushed.
    class Wire extends Duplex {
      override _read(): void {}
      override _write(_c: Buffer, _e: BufferEncoding, cb: () => void): void {
        cb();
      }
    }
    const corpus = xenstoreCorpus().slice(0, 1); // replies to req_ids 1..6, as a fresh client numbers them
    const [first, end] = caseRange();
    const cases = Math.min(end - first, 2_000);
    const outcomes: Record<string, number> = {};
    for (let i = first; i < first + cases; i++) {
      const rng = new Rng((SEED ^ Math.imul(i + 1, 0xc2b2ae35)) >>> 0 || 1);
      const input = mutate(rng, corpus[0], corpus[0]);
      const wire = new Wire();
      const client = new XenstoreClient(wire, { timeoutMs: 1000 });
      client.on('watch-error', () => undefined);
      // In the order of the corpus' replies (req_ids 1..6); the watch (7) is never answered, but its token gets events.
      const pending = [
        client.read('/a'),
        client.read('/b'),
        client.write('/c', 'x'),
        client.transactionStart(),
        client.transactionEnd(7, true),
        client.read('/d'),
        client.watch('/local/domain/5/control/shutdown', () => undefined),
      ].map((p: Promise<unknown>) =>
        p.then(
          () => 'ok',
          (err: unknown) => {
            assert.ok(err instanceof XenstoreError, `case ${i}: rejected with ${String(err)}`);
            return err.code;
          },
        ),
      );
      for (let at = 0; at < input.length; ) {
        const n = rng.range(1, 64);
        wire.push(input.subarray(at, at + n));
        at += n;
      }
      await new Promise((r) => setImmediate(r));
      client.close();
      for (const o of await Promise.all(pending)) outcomes[o] = (outcomes[o] ?? 0) + 1;
    }
    t.diagnostic(`client: ${cases} cases; outcomes ${JSON.stringify(outcomes)}`);
    assert.ok(outcomes.ok > 0 && outcomes.ERR_XENSTORE_CLOSED > 0);
  });
});
