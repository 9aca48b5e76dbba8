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
