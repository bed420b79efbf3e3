import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/errors.js';
import { ProxyError } from '../../proxy/errors.js';
import { NotifyDecoder, NotifyWords, encodeNotify } from '../../proxy/notify.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const code = (c: string) => (err: unknown): boolean => err instanceof ProxyError && err.code === c;

describe('notify codec', () => {
  test('DO_CHECKPOINT is a length and 13 ASCII bytes, no NUL', () => {
    assert.equal(encodeNotify(NotifyWords.DO_CHECKPOINT, { direction: 'from-proxy' }).toString('hex'), '0000000d' + Buffer.from('DO_CHECKPOINT').toString('hex'));
  });

  test('messages to the proxy carry a zero vnet length field when vnet support is on; messages from it never do', () => {
    assert.equal(encodeNotify(NotifyWords.CHECKPOINT_DONE, { direction: 'to-proxy', vnetHdr: true }).subarray(0, 8).toString('hex'), '0000000f00000000');
    assert.equal(encodeNotify(NotifyWords.DO_CHECKPOINT, { direction: 'from-proxy', vnetHdr: true }).length, 4 + 13);
  });

  test('decodes both words of each direction, cut anywhere', () => {
    const toProxy = Buffer.concat([encodeNotify(NotifyWords.PROXY_INIT, { direction: 'to-proxy' }), encodeNotify(NotifyWords.CHECKPOINT_DONE, { direction: 'to-proxy' })]);
    for (let cut = 0; cut <= toProxy.length; cut++) {
      const dec = new NotifyDecoder({ direction: 'to-proxy' });
      const words = [...dec.push(toProxy.subarray(0, cut)), ...dec.push(toProxy.subarray(cut))];
      assert.deepEqual(words, ['COLO_USERSPACE_PROXY_INIT', 'COLO_CHECKPOINT'], `cut at ${cut}`);
    }
    const fromProxy = new NotifyDecoder({ direction: 'from-proxy' });
    assert.deepEqual(fromProxy.push(hex('00000019' + Buffer.from('COLO_COMPARE_GET_XEN_INIT').toString('hex'))), ['COLO_COMPARE_GET_XEN_INIT']);
  });

  test('an unknown word is refused and the decoder stops', () => {
    const dec = new NotifyDecoder({ direction: 'to-proxy' });
    assert.throws(() => dec.push(hex('00000004 48454c4f')), (err: unknown) => code(ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE)(err) && /unknown notify message "HELO"/.test((err as Error).message));
    assert.throws(() => dec.push(encodeNotify(NotifyWords.PROXY_INIT, { direction: 'to-proxy' })), code(ErrorCodes.PROXY_DECODER_STOPPED));
  });

  test('a word travelling the wrong way is refused', () => {
    const dec = new NotifyDecoder({ direction: 'to-proxy' });
    assert.throws(() => dec.push(hex('0000000d' + Buffer.from('DO_CHECKPOINT').toString('hex'))), code(ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE));
    assert.throws(() => encodeNotify(NotifyWords.DO_CHECKPOINT, { direction: 'to-proxy' }), code(ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE));
  });

  test('a trailing NUL or other unprintable bytes are refused', () => {
    const dec = new NotifyDecoder({ direction: 'to-proxy' });
    assert.throws(() => dec.push(Buffer.concat([hex('00000010'), Buffer.from('COLO_CHECKPOINT\0')])), code(ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE));
  });

  test('a record longer than 64 bytes is refused before buffering it', () => {
    const dec = new NotifyDecoder({ direction: 'to-proxy' });
    assert.throws(() => dec.push(hex('00000041')), code(ErrorCodes.PROXY_FRAME_TOO_LARGE));
  });

  test('with vnet support, a non-zero vnet length on a notify message is refused', () => {
    const dec = new NotifyDecoder({ direction: 'to-proxy', vnetHdr: true });
    assert.throws(() => dec.push(Buffer.concat([hex('0000000f 00000001'), Buffer.from('COLO_CHECKPOINT')])), code(ErrorCodes.PROXY_NOTIFY_BAD_MESSAGE));
  });
});
