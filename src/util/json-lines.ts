/**
 * Splits a byte stream of JSON lines (a tandem process's pino log) and
 * hands each parsed object to `onLine`. A line that is not a JSON object
 * (a one-line error printed before the logger existed) is skipped; a line
 * (or a UTF-8 character) cut across chunks waits for its end.
 */
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';

export type JsonLine = Record<string, unknown>;

export function onJsonLines(stream: Readable, onLine: (line: JsonLine) => void): void {
  const utf8 = new StringDecoder('utf8');
  let rest = '';
  stream.on('data', (d: Buffer) => {
    const parts = (rest + utf8.write(d)).split('\n');
    rest = parts.pop()!;
    for (const p of parts) {
      let line: unknown;
      try {
        line = JSON.parse(p);
      } catch {
        continue;
      }
      if (line !== null && typeof line === 'object' && !Array.isArray(line)) onLine(line as JsonLine);
    }
  });
}
