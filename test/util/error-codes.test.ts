/** codeChain: the codes along an error's causes, which a log line of the outer error alone would hide. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codeChain, ErrorCodes, StreamError, TandemError } from '../../src/errors.js';

test('the codes of an error and its causes, outermost first; causes without a code are passed over', () => {
  const inner = new StreamError(ErrorCodes.STREAM_TRUNCATED, 'cut', { offset: 3 });
  const middle = new Error('no code here', { cause: inner });
  const outer = new TandemError(ErrorCodes.LINK_FAILED, 'the link failed', { cause: middle });
  assert.deepEqual(codeChain(outer), [ErrorCodes.LINK_FAILED, ErrorCodes.STREAM_TRUNCATED]);
  assert.deepEqual(codeChain(new Error('plain')), []);
  assert.deepEqual(codeChain('not an error'), []);
});

test('a cause chain that loops is cut off, not followed for ever', () => {
  const a = new TandemError(ErrorCodes.LINK_FAILED, 'a');
  const b = new TandemError(ErrorCodes.FENCED, 'b', { cause: a });
  (a as { cause?: unknown }).cause = b;
  assert.equal(codeChain(b).length, 8);
});
