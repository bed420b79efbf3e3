import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { StreamDescriber } from '../../src/stream/describe.js';
import { ColoControl } from '../../src/stream/format.js';

describe('StreamDescriber', () => {
  test('CHECKPOINT_STATE names its control id as ColoControl does', () => {
    const d = new StreamDescriber();
    const lines = Object.entries(ColoControl).flatMap(([, controlId], i) =>
      d.describe({ kind: 'record', offset: i * 16, end: i * 16 + 16, length: 4, record: { layer: 'libxl', type: 'CHECKPOINT_STATE', controlId } }),
    );
    assert.deepEqual(lines, ['NEW', 'SVM_SUSPENDED', 'SVM_READY', 'SVM_RESUMED'].map((n) => `libxl CHECKPOINT_STATE, length 4: ${n}`));
  });
});
