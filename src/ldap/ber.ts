// The one BER reader and writer (X.690, the subset LDAP uses: definite lengths of at most four octets,
// single-octet tags). Everything that reads or writes LDAP bytes by hand goes through these functions.

export class BerError extends Error {}

/** One element: its tag, and where its content starts and ends in the buffer. */
export interface Element {
  tag: number;
  /** the first byte of the element (its tag) */
  off: number;
  /** the first content byte */
  start: number;
  end: number;
}

/** The element header at off, its content bounded by limit; throws BerError on anything malformed. */
export function element(buf: Buffer, off: number, limit = buf.length): Element {
  const tag = buf[off];
  let len = buf[off + 1];
  if (tag === undefined || len === undefined || off + 2 > limit) throw new BerError('truncated element');
  if ((tag & 0x1f) === 0x1f) throw new BerError('multi-octet tags are not used by LDAP');
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new BerError('indefinite length is not allowed in LDAP');
    if (n > 4) throw new BerError('length too large');
    if (start + n > limit) throw new BerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  const end = start + len;
  if (end > limit) throw new BerError('length beyond enclosing element');
  return { tag, off, start, end };
}

/** The elements inside a constructed element, in order. */
export function children(buf: Buffer, parent: Element): Element[] {
  const out: Element[] = [];
  for (let off = parent.start; off < parent.end; ) {
    const e = element(buf, off, parent.end);
    out.push(e);
    off = e.end;
  }
  return out;
}

/** Total length of the element whose first bytes are head: a number, 'short' (need more bytes), or an error. */
export function frameLength(head: Buffer): number | 'short' | 'indefinite' | 'too_large' {
  if (head.length < 2) return 'short';
  const first = head[1] as number;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n === 0) return 'indefinite';
  if (n > 4) return 'too_large';
  if (head.length < 2 + n) return 'short';
  let len = 0;
  for (let i = 0; i < n; i++) len = len * 256 + (head[2 + i] as number);
  return 2 + n + len;
}

/**
 * Whether every constructed element's children exactly fill it, all the way down, within maxDepth. Run
 * once on every PDU before any decoder sees it: @ldapjs/messages trusts inner lengths (an attribute list
 * whose OCTET STRING claims more bytes than its SEQUENCE holds loops forever; found by the fuzz suite).
 */
export function wellFormed(buf: Buffer, maxDepth: number): boolean {
  const walk = (start: number, end: number, depth: number): boolean => {
    if (depth > maxDepth) return false;
    let off = start;
    while (off < end) {
      let e: Element;
      try {
        e = element(buf, off, end);
      } catch {
        return false;
      }
      if (e.tag & 0x20 && !walk(e.start, e.end, depth + 1)) return false;
      off = e.end;
    }
    return off === end;
  };
  return walk(0, buf.length, 0);
}

export const text = (buf: Buffer, e: Element): string => buf.toString('utf8', e.start, e.end);
export const bytes = (buf: Buffer, e: Element): Buffer => buf.subarray(e.start, e.end);
export const bool = (buf: Buffer, e: Element): boolean => e.end > e.start && buf[e.start] !== 0;

/** A non-negative INTEGER or ENUMERATED of at most 4 octets (message IDs, limits, scopes). */
export function uint(buf: Buffer, e: Element): number {
  const n = e.end - e.start;
  if (n < 1 || n > 5) throw new BerError('integer out of range');
  let v = 0;
  for (let i = e.start; i < e.end; i++) v = v * 256 + (buf[i] as number);
  if (n === 5 && buf[e.start] !== 0) throw new BerError('integer out of range');
  if (n < 5 && (buf[e.start] as number) & 0x80) throw new BerError('negative integer');
  return v;
}

// ---- writing ----

function header(tag: number, n: number): Buffer {
  if (n < 0x80) return Buffer.from([tag, n]);
  if (n < 0x100) return Buffer.from([tag, 0x81, n]);
  if (n < 0x10000) return Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  if (n < 0x1000000) return Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.from([tag, 0x84, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

/** One element from its content parts (concatenated once). */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let n = 0;
  for (const p of parts) n += p.length;
  return Buffer.concat([header(tag, n), ...parts], n + (n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : n < 0x1000000 ? 5 : 6));
}

export const octets = (tag: number, v: string | Buffer): Buffer => tlv(tag, typeof v === 'string' ? Buffer.from(v, 'utf8') : v);

/** A non-negative INTEGER (or ENUMERATED, by tag), minimal two's complement. */
export function integer(tag: number, n: number): Buffer {
  const out: number[] = [];
  let v = n;
  do {
    out.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if ((out[0] as number) & 0x80) out.unshift(0);
  return tlv(tag, Buffer.from(out));
}

export const boolean = (tag: number, v: boolean): Buffer => tlv(tag, Buffer.from([v ? 0xff : 0]));

// ---- one-pass writing of the hot path's SearchResultEntry ----

const headerSize = (n: number): number => (n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : n < 0x1000000 ? 5 : 6);

function putHeader(buf: Buffer, off: number, tag: number, n: number): number {
  buf[off++] = tag;
  if (n < 0x80) buf[off++] = n;
  else {
    const k = headerSize(n) - 2;
    buf[off++] = 0x80 | k;
    for (let i = k - 1; i >= 0; i--) buf[off++] = Math.floor(n / 256 ** i) & 0xff;
  }
  return off;
}

type Attributes = ReadonlyArray<{ type: string; values: readonly string[] }>;

/**
 * LDAPMessage { messageID, SearchResultEntry { objectName, attributes } } (RFC 4511 §4.5.2), sized first
 * and written into one buffer: the same bytes as tlv()/octets() would give, without a buffer per element.
 */
export function encodeSearchEntry(messageId: number, dn: string, attributes: Attributes): Buffer {
  return writeSearchEntry(integer(0x02, messageId), dn, attributes);
}

/**
 * The SearchResultEntry alone ([APPLICATION 4] TLV), for an entry encoded before the request that sends it
 * is known (a paged listing's next page, read ahead): envelope() gives the message's first bytes later.
 */
export function encodeSearchEntryBody(dn: string, attributes: Attributes): Buffer {
  return writeSearchEntry(undefined, dn, attributes);
}

/** The bytes of an LDAPMessage before its protocolOp: SEQUENCE header and messageID. */
export function envelope(messageId: number, opLength: number): Buffer {
  const id = integer(0x02, messageId);
  const msgLen = id.length + opLength;
  const buf = Buffer.allocUnsafe(headerSize(msgLen) + id.length);
  id.copy(buf, putHeader(buf, 0, 0x30, msgLen));
  return buf;
}

/** UTF-8 length of a string; an ASCII string (the usual value) is measured without a native call. */
function utf8Length(s: string): number {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return Buffer.byteLength(s, 'utf8');
  return s.length;
}

/** Write a string of byteLength n (utf8Length); ASCII byte by byte (a length equal to the string's means ASCII). */
function putString(buf: Buffer, off: number, s: string, n: number): number {
  if (n !== s.length) return off + buf.write(s, off, 'utf8');
  for (let i = 0; i < n; i++) buf[off + i] = s.charCodeAt(i);
  return off + n;
}

/** With an encoded messageID: the whole LDAPMessage; without: the SearchResultEntry only. */
function writeSearchEntry(id: Buffer | undefined, dn: string, attributes: Attributes): Buffer {
  const dnLen = utf8Length(dn);
  const lens: number[] = []; // per attribute: type length, then each value's length, then the set's and the sequence's content length
  let attrsLen = 0;
  for (const a of attributes) {
    const typeLen = utf8Length(a.type);
    let setLen = 0;
    lens.push(typeLen);
    for (const v of a.values) {
      const n = utf8Length(v);
      lens.push(n);
      setLen += headerSize(n) + n;
    }
    const seqLen = headerSize(typeLen) + typeLen + headerSize(setLen) + setLen;
    lens.push(setLen, seqLen);
    attrsLen += headerSize(seqLen) + seqLen;
  }
  const opLen = headerSize(dnLen) + dnLen + headerSize(attrsLen) + attrsLen;
  const msgLen = id ? id.length + headerSize(opLen) + opLen : 0;
  const buf = Buffer.allocUnsafe(id ? headerSize(msgLen) + msgLen : headerSize(opLen) + opLen);
  let off = 0;
  if (id) {
    off = putHeader(buf, 0, 0x30, msgLen);
    off += id.copy(buf, off);
  }
  off = putHeader(buf, off, 0x64, opLen);
  off = putHeader(buf, off, 0x04, dnLen);
  off = putString(buf, off, dn, dnLen);
  off = putHeader(buf, off, 0x30, attrsLen);
  let k = 0;
  for (const a of attributes) {
    const typeLen = lens[k++] as number;
    const setLen = lens[k + a.values.length] as number;
    const seqLen = lens[k + a.values.length + 1] as number;
    off = putHeader(buf, off, 0x30, seqLen);
    off = putHeader(buf, off, 0x04, typeLen);
    off = putString(buf, off, a.type, typeLen);
    off = putHeader(buf, off, 0x31, setLen);
    for (const v of a.values) {
      const n = lens[k++] as number;
      off = putHeader(buf, off, 0x04, n);
      off = putString(buf, off, v, n);
    }
    k += 2;
  }
  if (off !== buf.length) throw new Error('SearchResultEntry size mismatch');
  return buf;
}
