/**
 * What `tandem stream inspect` says about the domain config in an xl header:
 * the few fields an operator checks (name, type, memory, vCPUs), read from
 * libxl's JSON (libxl_domain_config: c_info.name, c_info.type as "hvm", "pv"
 * or "pvh", b_info.max_memkb, b_info.target_memkb, b_info.max_vcpus).
 *
 * The config is input like any other: its size was bounded by the header
 * decoder, a malformed one is reported as such (never thrown), and fields of
 * the wrong type are left out rather than trusted.
 */
import type { XlHeader } from './xl-header.js';

export type XlConfigSummary =
  | { format: 'none' }
  /** Mandatory flag bit 0 clear: xl config-file syntax (xl writes JSON since Xen 4.5); not parsed. */
  | { format: 'xl-cfg'; bytes: number }
  | { format: 'json'; bytes: number; valid: false; problem: string }
  | {
      format: 'json';
      bytes: number;
      valid: true;
      name?: string;
      type?: string;
      maxMemKiB?: number;
      targetMemKiB?: number;
      vcpus?: number;
    };

/** C0 and C1 control characters (newlines included) become spaces. */
const printable = (text: string): string => Array.from(text, (ch) => (/\p{Cc}/u.test(ch) ? ' ' : ch)).join('');

const utf8 = new TextDecoder('utf-8', { fatal: true });

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const count = (v: unknown): number | undefined => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

export function summarizeXlConfig(header: XlHeader): XlConfigSummary {
  const config = header.config;
  if (config === undefined || config.length === 0) return { format: 'none' };
  if (!header.configJson) return { format: 'xl-cfg', bytes: config.length };
  // The header decoder saw to the trailing NUL: the JSON is what precedes it.
  const body = config.at(-1) === 0 ? config.subarray(0, config.length - 1) : config;
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(body));
  } catch (err) {
    // TypeError for bad UTF-8, SyntaxError for bad JSON; whatever it is, it is the config's fault.
    // V8 quotes a piece of the input in its message: control characters out, length bounded.
    const why = printable(err instanceof Error ? err.message : String(err)).slice(0, 160);
    return { format: 'json', bytes: config.length, valid: false, problem: `not valid JSON: ${why}` };
  }
  if (!isObject(parsed)) return { format: 'json', bytes: config.length, valid: false, problem: 'the JSON is not an object' };
  const c = isObject(parsed.c_info) ? parsed.c_info : {};
  const b = isObject(parsed.b_info) ? parsed.b_info : {};
  const out: XlConfigSummary = { format: 'json', bytes: config.length, valid: true };
  const fields = { name: str(c.name), type: str(c.type), maxMemKiB: count(b.max_memkb), targetMemKiB: count(b.target_memkb), vcpus: count(b.max_vcpus) };
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) Object.assign(out, { [k]: v });
  return out;
}

/** Longest domain name printed; longer ones are cut (Xen itself bounds names only by xenstore's limits). */
const MAX_NAME_SHOWN = 64;

/** A JSON-quoted string, cut to `max` characters, with every control character (C1 too) escaped. */
const quote = (text: string, max: number): string =>
  JSON.stringify(text.length > max ? `${text.slice(0, max)}...` : text).replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/** One line for `tandem stream inspect`; the name is quoted with escapes, so a hostile name cannot forge output. */
export function describeXlConfig(s: XlConfigSummary): string {
  switch (s.format) {
    case 'none':
      return 'xl config: none (xl restore needs a config file)';
    case 'xl-cfg':
      return `xl config: ${s.bytes} bytes in xl config-file syntax (not parsed)`;
    case 'json': {
      if (!s.valid) return `xl config: ${s.bytes} bytes of JSON, malformed: ${s.problem}`;
      const parts: string[] = [];
      if (s.name !== undefined) parts.push(`domain ${quote(s.name, MAX_NAME_SHOWN)}`);
      if (s.type !== undefined) parts.push(`type ${/^[a-z]{1,16}$/.test(s.type) ? s.type : quote(s.type, 16)}`);
      if (s.targetMemKiB !== undefined) parts.push(`memory ${s.targetMemKiB} KiB`);
      if (s.maxMemKiB !== undefined) parts.push(`max memory ${s.maxMemKiB} KiB`);
      if (s.vcpus !== undefined) parts.push(`${s.vcpus} vCPU${s.vcpus === 1 ? '' : 's'}`);
      return `xl config: ${s.bytes} bytes of JSON${parts.length > 0 ? `: ${parts.join(', ')}` : ', no domain name, type or memory in it'}`;
    }
  }
}
