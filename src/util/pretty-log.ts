/**
 * The human-readable log format (`--log-format pretty`): one line per
 * event, written from pino's JSON line after redaction, so it can hold
 * nothing the JSON would not:
 *
 *   2024-05-01T12:00:00.123Z INFO  tandem-secondary: secondary listening port=7700 heartbeat=127.0.0.1:7701
 *
 * time (UTC), level, the logger's name, the message, then every other
 * field as key=value (strings quoted when they would not read back as one
 * word; objects as compact JSON; an error as its code and message, without
 * the stack, which stays in the JSON format). Newlines in values are
 * escaped: an event is always one line.
 */

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** pino's own fields, shown in the line's head or left out (pid and hostname say nothing a reader of one host's log needs). */
const HEAD = new Set(['level', 'time', 'name', 'msg', 'pid', 'hostname']);
/** A value long enough to drown the line is cut (the JSON format keeps all of it). */
const MAX_VALUE_CHARS = 1024;

/** A pino JSON line (ending in a newline) as a pretty one; a line that is not a JSON object passes unchanged. */
export function prettyLine(json: string): string {
  let event: unknown;
  try {
    event = JSON.parse(json);
  } catch {
    return json;
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return json;
  const e = event as Record<string, unknown>;
  // A Date holds at most 8.64e15 ms either side of the epoch; beyond, toISOString would throw.
  const time = typeof e.time === 'number' && Math.abs(e.time) <= 8.64e15 ? new Date(e.time).toISOString() : '-';
  const level = typeof e.level === 'number' ? (LEVELS[e.level] ?? `L${e.level}`) : typeof e.level === 'string' ? e.level.toUpperCase() : '-';
  const name = typeof e.name === 'string' ? `${e.name}: ` : '';
  const parts = [`${time} ${level.padEnd(5)} ${name}${oneLine(typeof e.msg === 'string' ? e.msg : '')}`];
  for (const [key, value] of Object.entries(e)) {
    if (HEAD.has(key) || value === undefined) continue;
    parts.push(`${key}=${render(value)}`);
  }
  return `${parts.join(' ')}\n`;
}

function render(value: unknown): string {
  if (typeof value === 'string') return word(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) return String(value);
  if (isSerializedError(value)) {
    const code = typeof value.code === 'string' ? ` [${value.code}]` : '';
    return word(`${value.message}${code}`);
  }
  return cut(JSON.stringify(value));
}

/** pino's err serializer: {type, message, stack, ...}. */
function isSerializedError(v: unknown): v is { message: string; stack?: string; code?: unknown } {
  return typeof v === 'object' && v !== null && typeof (v as { message?: unknown }).message === 'string' && typeof (v as { stack?: unknown }).stack === 'string';
}

/** A string as it reads back as one value: bare if it is one word, else JSON-quoted (which escapes newlines). */
function word(s: string): string {
  const text = cut(s);
  return /^[^\s"=\\]+$/.test(text) ? text : JSON.stringify(text);
}

/** The message, bare but with anything that would break the line escaped. */
function oneLine(s: string): string {
  return cut(s).replace(/\r|\n/g, (c) => (c === '\n' ? '\\n' : '\\r'));
}

function cut(s: string): string {
  return s.length > MAX_VALUE_CHARS ? `${s.slice(0, MAX_VALUE_CHARS)}…` : s;
}
