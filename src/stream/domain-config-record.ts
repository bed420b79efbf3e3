/**
 * TANDEM_DOMAIN_CONFIG (libxl layer, optional type 0x80005404): the
 * toolstack's configuration of the domain a replication stream carries, right
 * after TANDEM_PRIMARY. A Xen secondary needs it: Xen's restore builds the
 * domain from it (the JSON `xl list -l` prints, which `xl save` puts in its
 * file header). A secondary that builds its replica otherwise skips it, as
 * any optional record. Body: the JSON, UTF-8, no padding of its own (the
 * record's length is the JSON's).
 */
import { ErrorCodes, StreamError } from '../errors.js';

/** libxl's JSON for a guest is a few KiB; a bound far above it keeps a forged length from costing memory. */
export const MAX_DOMAIN_CONFIG_BYTES = 1024 * 1024;
const RECORD = 'libxl TANDEM_DOMAIN_CONFIG';
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function encodeDomainConfigRecord(json: string): Buffer {
  const body = Buffer.from(json, 'utf8');
  if (body.length === 0 || body.length > MAX_DOMAIN_CONFIG_BYTES) throw new RangeError(`a domain config of ${body.length} bytes is not in 1..${MAX_DOMAIN_CONFIG_BYTES}`);
  return body;
}

export interface DomainConfig {
  /** The JSON as sent. */
  json: string;
  /** c_info.name: the domain's name. */
  name: string;
}

/** The config a TANDEM_DOMAIN_CONFIG body carries, checked: UTF-8 JSON of an object that names the domain. */
export function parseDomainConfigRecord(body: Buffer, site: { offset: number }): DomainConfig {
  const fail = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes], detail: string, cause?: unknown): never => {
    throw new StreamError(code, detail, { offset: site.offset, record: RECORD }, cause === undefined ? undefined : { cause });
  };
  if (body.length === 0 || body.length > MAX_DOMAIN_CONFIG_BYTES) fail(ErrorCodes.RECORD_BAD_LENGTH, `body length ${body.length}, expected 1..${MAX_DOMAIN_CONFIG_BYTES}`);
  let parsed: unknown;
  let json = '';
  try {
    json = utf8.decode(body);
    parsed = JSON.parse(json);
  } catch (err) {
    fail(ErrorCodes.RECORD_BAD_FIELD, 'the config is not UTF-8 JSON', err);
  }
  const cInfo = typeof parsed === 'object' && parsed !== null ? (parsed as { c_info?: unknown }).c_info : undefined;
  const name = typeof cInfo === 'object' && cInfo !== null ? (cInfo as { name?: unknown }).name : undefined;
  // xl names the domain being received NAME--incoming and renames it at failover: the name goes on a command line and into xenstore.
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) fail(ErrorCodes.RECORD_BAD_FIELD, 'the config names no domain (c_info.name: 1..64 of A-Z a-z 0-9 _ . -)');
  return { json, name: name as string };
}
