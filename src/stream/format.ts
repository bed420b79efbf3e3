/**
 * Constants of Xen's migration v2/v3 stream: the libxc domain image format
 * (docs/specs/libxc-migration-stream, revision 3) and the libxl domain image
 * format (docs/specs/libxl-migration-stream, revision 2). One table per layer;
 * the codec switches on these numbers and nothing else.
 */

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

/** Every record is padded so that the whole record is a multiple of 8 octets. */
export const RECORD_ALIGN = 8;
export const RECORD_HEADER_SIZE = 8;

export const IMAGE_HEADER_SIZE = 24;
export const DOMAIN_HEADER_SIZE = 16;
export const LIBXL_HEADER_SIZE = 16;

/** "XENF" */
export const IHDR_IDENT = 0x58454e46;
/** Options bit 0: endianness, 1 = big-endian. Bits 1-15 reserved. */
export const IHDR_OPT_BIG_ENDIAN = 0x0001;
export const IHDR_OPT_RESERVED_MASK = 0xfffe;

/** "LibxlFmt" */
export const LIBXL_IDENT = Buffer.from('LibxlFmt', 'latin1');
export const LIBXL_VERSION = 2;
export const LIBXL_OPT_BIG_ENDIAN = 0x1;
export const LIBXL_OPT_LEGACY = 0x2;
export const LIBXL_OPT_RESERVED_MASK = 0xfffffffc;

export const DomainType = {
  X86_PV: 1,
  X86_HVM: 2,
} as const;

/** Records with bit 31 set are optional: a reader may skip one it does not know. */
export const RECORD_OPTIONAL_BIT = 0x80000000;
export const isOptionalType = (type: number): boolean => (type & RECORD_OPTIONAL_BIT) !== 0;

export const LibxcType = {
  END: 0x00,
  PAGE_DATA: 0x01,
  X86_PV_INFO: 0x02,
  X86_PV_P2M_FRAMES: 0x03,
  X86_PV_VCPU_BASIC: 0x04,
  X86_PV_VCPU_EXTENDED: 0x05,
  X86_PV_VCPU_XSAVE: 0x06,
  SHARED_INFO: 0x07,
  X86_TSC_INFO: 0x08,
  HVM_CONTEXT: 0x09,
  HVM_PARAMS: 0x0a,
  TOOLSTACK: 0x0b,
  X86_PV_VCPU_MSRS: 0x0c,
  VERIFY: 0x0d,
  CHECKPOINT: 0x0e,
  CHECKPOINT_DIRTY_PFN_LIST: 0x0f,
  STATIC_DATA_END: 0x10,
  X86_CPUID_POLICY: 0x11,
  X86_MSR_POLICY: 0x12,
} as const;

export const LibxlType = {
  END: 0x00,
  LIBXC_CONTEXT: 0x01,
  EMULATOR_XENSTORE_DATA: 0x02,
  EMULATOR_CONTEXT: 0x03,
  CHECKPOINT_END: 0x04,
  CHECKPOINT_STATE: 0x05,
} as const;

/** libxl CHECKPOINT_STATE control ids (COLO): "new checkpoint" goes forward, the secondary's states come back. */
export const ColoControl = { NEW: 0, SVM_SUSPENDED: 1, SVM_READY: 2, SVM_RESUMED: 3 } as const;

const invert = <K extends string>(table: Record<K, number>): Map<number, K> =>
  new Map(Object.entries(table).map(([k, v]) => [v as number, k as K]));

const LIBXC_NAMES = invert(LibxcType);
const LIBXL_NAMES = invert(LibxlType);

/**
 * Tandem's own records, in the optional range (bit 31) so that any reader
 * following the spec may skip them: TANDEM_ACK travels the back-channel,
 * TANDEM_DISK_WRITES a checkpoint's libxl section, TANDEM_PRIMARY opens a
 * replication stream, TANDEM_DOMAIN_CONFIG follows it with the toolstack's
 * configuration of the domain where the secondary's hypervisor needs it to
 * build the domain, TANDEM_PAGE_XBZRLE carries compressed pages in the libxc
 * layer of a stream whose secondary offered to decode them, and
 * TANDEM_FEATURES (back-channel) is that offer (docs/stream.md).
 */
export const TandemType = {
  TANDEM_ACK: 0x80005401,
  TANDEM_DISK_WRITES: 0x80005402,
  TANDEM_PRIMARY: 0x80005403,
  TANDEM_DOMAIN_CONFIG: 0x80005404,
  TANDEM_PAGE_XBZRLE: 0x80005405,
  TANDEM_FEATURES: 0x80005406,
} as const;

/**
 * Bits of TANDEM_FEATURES: what a secondary can decode beyond Xen's stream.
 * A primary uses a feature only on a connection whose secondary offered it.
 */
export const TandemFeature = {
  /** TANDEM_PAGE_XBZRLE records, after the stream's first checkpoint. */
  PAGE_XBZRLE: 0x1,
} as const;
export const KNOWN_FEATURES = TandemFeature.PAGE_XBZRLE;
const TANDEM_NAMES = invert(TandemType);

export type Layer = 'libxc' | 'libxl';

/** `PAGE_DATA`, or `OPTIONAL_0x80001234` / `UNKNOWN_0x00000042` for unknown types. */
export function recordTypeName(layer: Layer, type: number): string {
  const name = (layer === 'libxc' ? LIBXC_NAMES : LIBXL_NAMES).get(type);
  if (name !== undefined) return name;
  const tandem = TANDEM_NAMES.get(type);
  if (tandem !== undefined) return tandem;
  const hex = `0x${type.toString(16).padStart(8, '0')}`;
  return isOptionalType(type) ? `OPTIONAL_${hex}` : `UNKNOWN_${hex}`;
}

export function isKnownType(layer: Layer, type: number): boolean {
  return (layer === 'libxc' ? LIBXC_NAMES : LIBXL_NAMES).has(type);
}

/**
 * PAGE_DATA pfn words: bits 63-60 page type (XEN_DOMCTL_PFINFO_* >> 28),
 * bits 59-52 reserved, bits 51-0 the PFN.
 */
export const PageType = {
  NOTAB: 0x0,
  L1TAB: 0x1,
  L2TAB: 0x2,
  L3TAB: 0x3,
  L4TAB: 0x4,
  L1TAB_PIN: 0x9,
  L2TAB_PIN: 0xa,
  L3TAB_PIN: 0xb,
  L4TAB_PIN: 0xc,
  BROKEN: 0xd,
  XALLOC: 0xe,
  XTAB: 0xf,
} as const;

export const PFN_BITS = 52;
export const MAX_PFN = 2 ** PFN_BITS - 1;

/** "Restoring an image with unrecognised page types shall fail": 0x5-0x8 are reserved. */
export const isValidPageType = (t: number): boolean => Number.isInteger(t) && t >= 0 && (t <= 0x4 || (t >= 0x9 && t <= 0xf));
/** "PFNs with type BROKEN, XALLOC, or XTAB do not have any corresponding page_data." */
export const pageTypeHasData = (t: number): boolean => t < PageType.BROKEN;

export const EmulatorId = {
  UNKNOWN: 0,
  QEMU_TRADITIONAL: 1,
  QEMU_UPSTREAM: 2,
} as const;

/** Fixed body sizes, from the record layouts in the specs. */
export const TSC_INFO_SIZE = 24;
export const X86_PV_INFO_SIZE = 8;
export const CPUID_LEAF_SIZE = 24; // xen_cpuid_leaf_t: leaf, subleaf, a, b, c, d
export const MSR_ENTRY_SIZE = 16; // xen_msr_entry_t: idx, flags, val
export const HVM_PARAM_SIZE = 16;
export const VCPU_HEADER_SIZE = 8;
export const EMULATOR_HEADER_SIZE = 8;

/** Body length rounded up to the record alignment. Arithmetic, not bit ops: lengths are u32. */
export const alignUp = (n: number): number => n + ((RECORD_ALIGN - (n % RECORD_ALIGN)) % RECORD_ALIGN);
