// Splits a byte stream into whole LDAPMessage PDUs (BER SEQUENCE, definite length), refusing a PDU
// whose declared length exceeds the cap before buffering it. ldapjs's own parser re-concatenates the
// whole backlog on every chunk with no limit: 64 MiB of one unfinished PDU cost 48 s of CPU
// (toolchain.md §7.11). Here each byte is copied at most once.

export type FrameError = 'too_large' | 'malformed';

export class PduFramer {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private need = 0; // total length of the PDU at the front, once its header is known

  constructor(private readonly maxPdu: number) {}

  /** Feed bytes; returns whole PDUs, or an error after which the connection must be closed. */
  push(data: Buffer): { pdus: Buffer[]; error?: FrameError } {
    this.chunks.push(data);
    this.buffered += data.length;
    const pdus: Buffer[] = [];
    for (;;) {
      if (this.need === 0) {
        const h = this.header();
        if (h === 'short') break;
        if (typeof h === 'string') return { pdus, error: h };
        this.need = h;
      }
      if (this.buffered < this.need) break;
      const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.buffered);
      pdus.push(all.subarray(0, this.need));
      const rest = all.subarray(this.need);
      this.chunks = rest.length ? [rest] : [];
      this.buffered = rest.length;
      this.need = 0;
    }
    return { pdus };
  }

  /** Total PDU length from the tag and length octets, 'short' if more bytes are needed. */
  private header(): number | 'short' | FrameError {
    const head = this.peek(6);
    if (head.length < 2) return 'short';
    if (head[0] !== 0x30) return 'malformed';
    const first = head[1] as number;
    if (first < 0x80) return this.limit(2 + first);
    const n = first & 0x7f;
    if (n === 0) return 'malformed'; // indefinite length is not allowed in LDAP (RFC 4511 §5.1)
    if (n > 4) return 'too_large';
    if (head.length < 2 + n) return 'short';
    let len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (head[2 + i] as number);
    return this.limit(2 + n + len);
  }

  private limit(total: number): number | FrameError {
    return total > this.maxPdu ? 'too_large' : total;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (!first) return Buffer.alloc(0);
    if (first.length >= n || this.chunks.length === 1) return first.subarray(0, n);
    return Buffer.concat(this.chunks, Math.min(n, this.buffered)).subarray(0, n);
  }
}

/** messageID and protocolOp tag of a PDU that ldapjs could not decode, so that we can still answer it. */
export function peekEnvelope(pdu: Buffer): { messageId: number; opTag: number } | undefined {
  let i = 1;
  const lenByte = pdu[i++];
  if (lenByte === undefined) return undefined;
  if (lenByte & 0x80) i += lenByte & 0x7f;
  if (pdu[i++] !== 0x02) return undefined; // INTEGER messageID
  const idLen = pdu[i++];
  if (idLen === undefined || idLen < 1 || idLen > 4) return undefined;
  let id = 0;
  for (let k = 0; k < idLen; k++) {
    const b = pdu[i++];
    if (b === undefined) return undefined;
    id = id * 256 + b;
  }
  const opTag = pdu[i];
  if (opTag === undefined || id > 0x7fffffff) return undefined;
  return { messageId: id, opTag };
}

/**
 * Whether every constructed element's children exactly fill it, all the way down, within maxDepth.
 * ldapjs's decoders trust inner lengths: an attribute list whose OCTET STRING claims more bytes than
 * its SEQUENCE holds makes @ldapjs/messages loop forever on a reader that no longer advances, growing an
 * array until V8 aborts the process (found by test/integration/fuzz.test.ts). One pass per PDU.
 */
export function wellFormed(buf: Buffer, maxDepth: number): boolean {
  const walk = (start: number, end: number, depth: number): boolean => {
    if (depth > maxDepth) return false;
    let off = start;
    while (off < end) {
      const tag = buf[off];
      let len = buf[off + 1];
      if (tag === undefined || len === undefined || (tag & 0x1f) === 0x1f) return false; // no multi-byte tags in LDAP
      let content = off + 2;
      if (len & 0x80) {
        const n = len & 0x7f;
        if (n === 0 || n > 4 || content + n > end) return false;
        len = 0;
        for (let i = 0; i < n; i++) len = len * 256 + (buf[content + i] as number);
        content += n;
      }
      const next = content + len;
      if (next > end) return false;
      if (tag & 0x20 && !walk(content, next, depth + 1)) return false;
      off = next;
    }
    return off === end;
  };
  return walk(0, buf.length, 0);
}

function lengthOctets(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

/** [start of content, end] of the element at off (the PDU is already known to be well formed) */
function element(buf: Buffer, off: number): { tag: number; start: number; end: number } {
  const tag = buf[off] as number;
  let len = buf[off + 1] as number;
  let start = off + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[start + i] as number);
    start += n;
  }
  return { tag, start, end: start + len };
}

/**
 * The controls of a well-formed LDAPMessage (RFC 4511 §4.1.11), and the message without them: for a
 * message ldapjs cannot decode only because of a control (a password-policy request without a value,
 * ldapjs #956, as SSSD and `ldapwhoami -e ppolicy` send it).
 */
export function splitControls(pdu: Buffer): { controls: Array<{ oid: string; critical: boolean }>; stripped: Buffer } | undefined {
  const msg = element(pdu, 0);
  const id = element(pdu, msg.start);
  const op = element(pdu, id.end);
  if (op.end >= msg.end) return undefined;
  const ctl = element(pdu, op.end);
  if (ctl.tag !== 0xa0) return undefined;
  const controls: Array<{ oid: string; critical: boolean }> = [];
  for (let off = ctl.start; off < ctl.end; ) {
    const c = element(pdu, off);
    const type = element(pdu, c.start);
    let critical = false;
    if (type.end < c.end) {
      const next = element(pdu, type.end);
      if (next.tag === 0x01) critical = pdu[next.start] !== 0;
    }
    controls.push({ oid: pdu.toString('latin1', type.start, type.end), critical });
    off = c.end;
  }
  const body = pdu.subarray(msg.start, op.end);
  return { controls, stripped: Buffer.concat([Buffer.from([0x30]), lengthOctets(body.length), body]) };
}

/** The tag of a well-formed BindRequest's authentication choice: 0x80 simple, 0xa3 SASL (RFC 4511 §4.2). */
export function bindAuthenticationTag(pdu: Buffer): number | undefined {
  const msg = element(pdu, 0);
  const id = element(pdu, msg.start);
  const op = element(pdu, id.end);
  if (op.tag !== 0x60) return undefined;
  const version = element(pdu, op.start);
  const name = element(pdu, version.end);
  return name.end < op.end ? element(pdu, name.end).tag : undefined;
}
