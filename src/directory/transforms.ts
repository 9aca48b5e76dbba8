// Value transforms from AD's representations to what LDAP clients expect. Pure functions.
/** An AD attribute value: text, or a Buffer for binary attributes. */
export type AdValue = string | Buffer;

export type TransformName = 'text' | 'guid' | 'sid' | 'filetime' | 'disabled';

const asBuffer = (v: AdValue): Buffer => (typeof v === 'string' ? Buffer.from(v, 'binary') : v);
const asText = (v: AdValue): string => (typeof v === 'string' ? v : v.toString('utf8'));

/** objectGUID: 16 bytes, the first three fields little-endian (MS-DTYP §2.3.4.2) -> RFC 4122 text. */
export function guidToString(b: Buffer): string | undefined {
  if (b.length !== 16) return undefined;
  const h = (i: number) => (b[i] as number).toString(16).padStart(2, '0');
  const le = (...idx: number[]) => idx.map(h).join('');
  return `${le(3, 2, 1, 0)}-${le(5, 4)}-${le(7, 6)}-${le(8, 9)}-${le(10, 11, 12, 13, 14, 15)}`;
}

/** objectSid (MS-DTYP §2.4.2.2) -> S-1-5-21-... */
export function sidToString(b: Buffer): string | undefined {
  if (b.length < 8) return undefined;
  const count = b[1] as number;
  if (b.length !== 8 + 4 * count) return undefined;
  const authority = b.readUIntBE(2, 6);
  const subs: number[] = [];
  for (let i = 0; i < count; i++) subs.push(b.readUInt32LE(8 + 4 * i));
  return `S-${b[0]}-${authority}${subs.map((s) => `-${s}`).join('')}`;
}

const FILETIME_UNIX_OFFSET = 11644473600n; // seconds from 1601-01-01 to 1970-01-01

/** FILETIME (100 ns since 1601) -> GeneralizedTime; 0 and "never" (int64 max) have no time. */
export function filetimeToGeneralized(text: string): string | undefined {
  if (!/^\d+$/.test(text)) return undefined;
  const ft = BigInt(text);
  if (ft === 0n || ft >= 0x7fffffffffffffffn) return undefined;
  const ms = Number((ft / 10_000n) - FILETIME_UNIX_OFFSET * 1000n);
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return undefined;
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

const defined = <T>(x: T | undefined): x is T => x !== undefined;

export const transforms: Record<TransformName, (values: AdValue[]) => string[]> = {
  text: (vs) => vs.map(asText),
  guid: (vs) => vs.map((v) => guidToString(asBuffer(v))).filter(defined),
  sid: (vs) => vs.map((v) => sidToString(asBuffer(v))).filter(defined),
  filetime: (vs) => vs.map((v) => filetimeToGeneralized(asText(v))).filter(defined),
  // userAccountControl bit 0x2 = ACCOUNTDISABLE
  disabled: (vs) => vs.slice(0, 1).map((v) => ((Number(asText(v)) & 2) !== 0 ? 'TRUE' : 'FALSE')),
};

// The inverse direction, for filters: a value as clients see it -> what AD stores. Each returns undefined
// for a value that no returned value can equal (malformed for the virtual syntax).

/** RFC 4122 text -> objectGUID's 16 bytes (the inverse of guidToString). */
export function guidToBytes(text: string): Buffer | undefined {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(text);
  if (!m) return undefined;
  const rev = (hex: string) => Buffer.from(hex, 'hex').reverse();
  return Buffer.concat([rev(m[1] as string), rev(m[2] as string), rev(m[3] as string), Buffer.from(`${m[4]}${m[5]}`, 'hex')]);
}

/** S-1-5-21-… text -> the SID's bytes (the inverse of sidToString); at most 15 sub-authorities. */
export function sidToBytes(text: string): Buffer | undefined {
  const m = /^S-(\d{1,3})-(\d{1,15})((?:-\d{1,10})*)$/i.exec(text);
  if (!m) return undefined;
  const revision = Number(m[1]);
  const authority = Number(m[2]);
  const subs = (m[3] as string).split('-').slice(1).map(Number);
  if (revision > 255 || authority > 0xffffffffffff || subs.length > 15 || subs.some((s) => s > 0xffffffff)) return undefined;
  const b = Buffer.alloc(8 + 4 * subs.length);
  b[0] = revision;
  b[1] = subs.length;
  b.writeUIntBE(authority, 2, 6);
  subs.forEach((s, i) => b.writeUInt32LE(s, 8 + 4 * i));
  return b;
}

/** The FILETIME values that filetimeToGeneralized turns into a time: 1 .. int64 max - 1. */
export const FILETIME_MIN = 1n;
export const FILETIME_MAX = 0x7fffffffffffffffn - 1n;
const TICKS_PER_SECOND = 10_000_000n;

/** The FILETIME at which a Unix second starts. */
export const filetimeOfSecond = (unixSeconds: bigint): bigint => (unixSeconds + FILETIME_UNIX_OFFSET) * TICKS_PER_SECOND;

/**
 * GeneralizedTime (RFC 4517 §3.3.13: YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|±HH[MM])) -> milliseconds since
 * 1970, possibly fractional.
 */
export function generalizedToMs(text: string): number | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d+))?(Z|[+-]\d{2}(?:\d{2})?)$/.exec(text);
  if (!m) return undefined;
  const [y, mo, d, h] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number];
  const mi = m[5] === undefined ? 0 : Number(m[5]);
  const s = m[6] === undefined ? 0 : Number(m[6]);
  if (m[6] !== undefined && m[5] === undefined) return undefined;
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return undefined;
  const base = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(base);
  if (back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d) return undefined; // 31 February
  const unit = m[6] !== undefined ? 1000 : m[5] !== undefined ? 60_000 : 3_600_000;
  const fraction = m[7] === undefined ? 0 : Number(`0.${m[7]}`) * unit;
  const zone = m[8] as string;
  const offset = zone === 'Z' ? 0 : (zone[0] === '-' ? -1 : 1) * (Number(zone.slice(1, 3)) * 60 + Number(zone.slice(3, 5) || '0')) * 60_000;
  return base + fraction - offset;
}
