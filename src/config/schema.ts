/**
 * The vocabulary the configuration schemas are written in (config.ts and
 * domain/config.ts): zod schemas whose messages say what was expected and
 * what the file held, sections whose YAML snake_case keys come out camelCase,
 * rules across keys, and the one function that turns zod's issues into a
 * ConfigError. Messages are made here so that every key gets the same wording
 * without repeating it next to each key.
 */
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { readAddress } from '../util/address.js';

/** A value or key quoted in a message is cut to this: the file may hold a megabyte in one string. */
const MAX_SHOWN_CHARS = 80;
/** At most this many problems (and unknown keys) are listed: a wrong file is fixed a few keys at a time. */
const MAX_LISTED = 5;
/** `[IPv6]:PORT` or a 253-character host name, a colon and five digits. */
const MAX_ADDRESS_CHARS = 261;
/** Linux's PATH_MAX. */
export const MAX_PATH_CHARS = 4096;

function clip(text: string): string {
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...` : text;
}

/** The first few of `items`, then how many more. */
function listed(items: readonly string[], separator: string): string {
  const more = items.length > MAX_LISTED ? `${separator}and ${items.length - MAX_LISTED} more` : '';
  return items.slice(0, MAX_LISTED).join(separator) + more;
}

/** What the file held, as JSON; numbers as written (JSON would print Infinity, YAML's .inf, as null). */
function shown(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'number') return String(value);
  try {
    return clip(JSON.stringify(value) ?? `a ${typeof value}`);
  } catch {
    // A YAML alias can make a cycle, which JSON cannot print.
    return Array.isArray(value) ? 'a list that contains itself' : 'a mapping that contains itself';
  }
}

const expected =
  (what: string) =>
  (issue: { input?: unknown }): string =>
    `expected ${what}, got ${shown(issue.input)}`;

export const int = (min: number, max: number) =>
  z
    .int({ error: expected(`an integer in ${min}..${max}`) })
    .min(min)
    .max(max);

export const bool = () => z.boolean({ error: expected('true or false') });

export const oneOf = <const T extends readonly [string | number, ...(string | number)[]]>(choices: T) =>
  z.literal(choices, { error: expected(`one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`) });

/** A HOST:PORT string, read into an Address. Port 0 (any free port) only where `zero`: a listening address. */
export const address = ({ zero = false } = {}) =>
  z
    .string({ error: (issue) => (issue.input === undefined ? 'expected HOST:PORT, got nothing' : expected('a HOST:PORT string')(issue)) })
    .max(MAX_ADDRESS_CHARS)
    .transform((text, ctx) => {
      const read = readAddress(text, zero);
      if (typeof read !== 'string') return read;
      ctx.issues.push({ code: 'custom', message: read, input: text });
      return z.NEVER;
    });

/** A file or directory path; whether the file is there and readable is for its reader to say. */
export const path = () =>
  z
    .string({ error: expected('a path') })
    .min(1, { error: 'expected a path, got an empty string' })
    .max(MAX_PATH_CHARS, { error: `expected a path of at most ${MAX_PATH_CHARS} characters` });

/** A string that `problem` accepts (it returns what is wrong, or undefined), at most `maxChars` long. */
export const checked = (what: string, maxChars: number, problem: (text: string) => string | undefined) =>
  z
    .string({ error: expected(what) })
    .max(maxChars, { error: expected(what) })
    .transform((text, ctx) => {
      const wrong = problem(text);
      if (wrong === undefined) return text;
      ctx.issues.push({ code: 'custom', message: wrong, input: text });
      return z.NEVER;
    });

/** A string that may be a secret (a token, where a token is kept): no message ever shows it. */
export const secret = (minChars: number, maxChars: number) =>
  z
    .string({ error: `expected a string of ${minChars}..${maxChars} characters` })
    .min(minChars)
    .max(maxChars);

type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Head}${Capitalize<CamelCase<Tail>>}` : S;
/** The YAML's keys in camelCase, every one present (undefined when left out and optional). */
export type CamelCased<T> = { -readonly [K in keyof T & string as CamelCase<K>]-?: T[K] };

const camelCase = (key: string): string => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * A mapping whose keys are `shape`'s (snake_case, as in the YAML), any other
 * key refused, that comes out with the same keys in camelCase. Each key of
 * the configuration is declared once, in a shape, with its default.
 */
export function section<Shape extends z.ZodRawShape>(shape: Shape) {
  const keys = Object.keys(shape);
  return z
    .strictObject(shape, {
      error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown key${issue.keys.length > 1 ? 's' : ''} (known: ${keys.join(', ')})` : expected('a mapping')(issue)),
    })
    .transform((value) => {
      const out: Record<string, unknown> = {};
      for (const key of keys) out[camelCase(key)] = (value as Record<string, unknown>)[key];
      return out as CamelCased<z.output<z.ZodObject<Shape>>>;
    });
}

/** A key's schema without its default or optional: what a value given for it must be. */
function given(schema: z.ZodType): z.ZodType {
  if (schema instanceof z.ZodDefault || schema instanceof z.ZodOptional) return given(schema.unwrap() as z.ZodType);
  return schema;
}

/**
 * Some of a section's keys (`keys` of `shape`), each checked as in the
 * section but with no default: a key left out comes out undefined, for
 * whoever lays the values given over a whole section (a domain's overlay).
 */
export function overlay<Shape extends z.ZodRawShape, K extends keyof Shape & string>(shape: Shape, keys: readonly K[]) {
  const picked: Record<string, z.ZodType> = {};
  for (const key of keys) picked[key] = given(shape[key] as unknown as z.ZodType).optional();
  return section(picked).transform((value) => value as Partial<CamelCased<z.output<z.ZodObject<Pick<Shape, K>>>>>);
}

/** A section that may be left out or left empty (YAML's `key:` is null): then all its defaults. */
export const defaulted = <T extends z.ZodType>(schema: T) => z.preprocess((value) => value ?? {}, schema);

/** A section that may be left out or left empty: then undefined. */
export const optional = <T extends z.ZodType>(schema: T) => z.preprocess((value) => value ?? undefined, schema.optional());

/**
 * Sections told apart by their `type` key (one schema per type; the one whose
 * `type` has a default is what a section without `type` gets).
 */
export const byType = <const T extends readonly [z.core.$ZodTypeDiscriminable, ...z.core.$ZodTypeDiscriminable[]]>(members: T) =>
  z.discriminatedUnion('type', members, {
    error: (issue) => {
      // No member for the `type` given: zod lists the types it knows (undefined among them if one is the default).
      const types = issue.code === 'invalid_union' ? (issue as { options?: readonly unknown[] }).options : undefined;
      if (types === undefined) return expected('a mapping')(issue);
      const known = types.filter((t) => t !== undefined).map((t) => JSON.stringify(t));
      return expected(`one of ${known.join(', ')}`)({ input: (issue.input as Record<string, unknown>).type });
    },
  });

/** Marks a rule's issue: its message names its keys in full, so it takes no path in front. */
const RULE = 'tandem-config-rule';

/**
 * A rule across keys of one section, for `.check()`: `complaint` returns what
 * is wrong, naming the keys by their full YAML path, or undefined when the
 * rule holds. It runs only once every key of the section is valid.
 */
export const rule =
  <T>(complaint: (value: T) => string | undefined) =>
  (ctx: z.core.ParsePayload<T>): void => {
    const message = complaint(ctx.value);
    if (message !== undefined) ctx.issues.push({ code: 'custom', message, input: ctx.value, params: { [RULE]: true } });
  };

/** The key path as the YAML spells it (`primary.precopy.max_iterations`). */
const keyPath = (path: readonly PropertyKey[]): string =>
  path.length === 0 ? '(top level)' : path.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i === 0 ? '' : '.'}${clip(String(k))}`)).join('');

/** Where an issue is: its key path, or the paths of the unknown keys it is about. */
function where(issue: z.core.$ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return listed(issue.keys.map((key) => keyPath([...issue.path, key])), ', ');
  return keyPath(issue.path);
}

/** Each problem once (zod may find two for one key): `key.path: what is wrong`. */
function problems(issues: readonly z.core.$ZodIssue[]): string[] {
  const byPlace = new Map<string, string>();
  for (const issue of issues) {
    const isRule = issue.code === 'custom' && issue.params?.[RULE] === true;
    const at = isRule ? issue.message : where(issue);
    if (!byPlace.has(at)) byPlace.set(at, isRule ? issue.message : `${at}: ${issue.message}`);
  }
  return [...byPlace.values()];
}

/** The configuration error for what zod found wrong in `source`: every problem (up to a few) on one line. */
export function configError(source: string, error: z.ZodError): ConfigError {
  return new ConfigError(`${source}: ${listed(problems(error.issues), '; ')}`, { cause: error });
}
