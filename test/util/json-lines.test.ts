/** onJsonLines: JSON objects out of a byte stream, however it is cut. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { onJsonLines, type JsonLine } from '../../src/util/json-lines.js';

test('objects cut across chunks arrive whole; other lines and a trailing partial line do not', () => {
  const bytes = Buffer.from('{"a":1}\nnot json\n[1,2]\nnull\n{"b":"x\\ny é"}\n{"c":');
  for (let cut = 0; cut <= bytes.length; cut++) {
    const s = new PassThrough();
    const got: JsonLine[] = [];
    onJsonLines(s, (l) => got.push(l));
    s.write(bytes.subarray(0, cut));
    s.write(bytes.subarray(cut));
    assert.deepEqual(got, [{ a: 1 }, { b: 'x\ny é' }], `cut at byte ${cut}`);
  }
});
