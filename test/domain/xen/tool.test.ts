/** runTool: a host tool's stdout, or an error of the caller's code naming the command, its exit and its stderr. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runTool } from '../../../src/domain/xen/tool.js';

test('stdout on success; exit and last stderr lines on failure; a missing tool said as such; stdout bounded', async () => {
  assert.equal(await runTool('/bin/sh', ['-c', 'echo hello; echo noise >&2'], 'ERR_XEN_SAVE_FAILED'), 'hello\n');
  await assert.rejects(runTool('/bin/sh', ['-c', 'echo one >&2; echo two >&2; exit 3'], 'ERR_XEN_NETBUF_FAILED'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'ERR_XEN_NETBUF_FAILED');
    assert.match(err.message, /^\/bin\/sh -c .* failed \(exit 3\): one \| two$/);
    return true;
  });
  await assert.rejects(runTool('/nonexistent/xl', ['list'], 'ERR_XEN_SAVE_FAILED'), /^Error: \/nonexistent\/xl list: cannot run it: .*ENOENT|cannot run it: .*ENOENT/);
  await assert.rejects(runTool('/bin/sh', ['-c', 'head -c 5000000 /dev/zero'], 'ERR_XEN_SAVE_FAILED'), /printed more than 4194304 bytes/);
});
