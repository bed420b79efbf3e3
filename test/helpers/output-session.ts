import type { OutputBuffer } from '../../src/front/output-buffer.js';

/**
 * A protection session past its pre-copy: setup, then a suspend numbered 0,
 * so output from now on is tagged 1 and waits for commit(1). (A session's
 * first suspend arms the buffer; output before it passes as unprotected
 * output does.)
 */
export function sessionAtEpoch1(buffer: OutputBuffer): void {
  buffer.setup();
  buffer.postsuspend(0);
}
