/**
 * The "ssh" `xl remus` runs its receiver through, on one lab host (by
 * bench/xen/remus.sh, as `xl remus -s`): drops the host argument, runs the
 * rest (xl's `xl migrate-receive ...`) with the stream passed through, and
 * counts the checkpoints in it with Tandem's reader, into COUNT_FILE after
 * each one. Usage: node dist/bench/xen/tap.js COUNT_FILE HOST COMMAND...
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { ImageReader } from '../../src/stream/image-reader.js';

const [countFile, , ...command] = process.argv.slice(2);
const child = spawn(command[0], command.slice(1), { stdio: ['pipe', 'inherit', 'inherit'] });
const reader = new ImageReader({ endAtCheckpoint: true });
let checkpoints = 0;
let readable = true;
writeFileSync(countFile, '0\n');
process.stdin.on('data', (chunk: Buffer) => {
  if (readable) {
    try {
      for (const item of reader.push(chunk)) {
        if (item.kind === 'record' && item.record.type === 'CHECKPOINT_END') writeFileSync(countFile, `${++checkpoints}\n`);
      }
    } catch {
      // Counting stops; the stream goes on to Xen untouched.
      readable = false;
    }
  }
  if (!child.stdin.write(chunk)) {
    process.stdin.pause();
    child.stdin.once('drain', () => process.stdin.resume());
  }
});
process.stdin.on('end', () => child.stdin.end());
child.stdin.on('error', () => undefined);
child.on('close', (code) => process.exit(code ?? 1));
