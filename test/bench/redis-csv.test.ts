/** Reading redis-benchmark 7's --csv report (src/bench/cluster.ts), as the benchmarks do. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readCsv } from '../../src/bench/cluster.js';

const HEADER = '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"';

test('the throughput and the p50 and p99 latencies are read by column name, whatever the line endings', () => {
  const out = `${HEADER}\r\n"SET","15974.44","1.200","0.200","1.119","2.000","3.159","9.000"\r\n`;
  assert.deepEqual(readCsv(out), { rps: 15974.44, p50ms: 1.119, p99ms: 3.159 });
});

test('a report without its row, or with a field that is not a number, is refused with what was read', () => {
  assert.throws(() => readCsv(`${HEADER}\n`), /cannot read rps from redis-benchmark's output/);
  assert.throws(() => readCsv(''), /cannot read rps/);
  assert.throws(() => readCsv(`${HEADER}\n"SET","15974.44","1.2","0.2","n/a","2","3","9"\n`), /cannot read p50_latency_ms/);
});
