// Intake's first step: split a byte stream into whole LDAPMessage PDUs (BER SEQUENCE, definite length),
// refusing a PDU whose declared length exceeds the cap before buffering it. ldapjs's own parser
// re-concatenates the whole backlog on every chunk with no limit: 64 MiB of one unfinished PDU cost 48 s
// of CPU (toolchain.md §7.11). Here each byte is copied at most once.
import { frameLength } from '../ldap/ber';

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
    if (head.length >= 1 && head[0] !== 0x30) return 'malformed';
    const n = frameLength(head);
    if (n === 'indefinite') return 'malformed'; // not allowed in LDAP (RFC 4511 §5.1)
    if (typeof n === 'string') return n;
    return n > this.maxPdu ? 'too_large' : n;
  }

  private peek(n: number): Buffer {
    const first = this.chunks[0];
    if (!first) return Buffer.alloc(0);
    if (first.length >= n || this.chunks.length === 1) return first.subarray(0, n);
    return Buffer.concat(this.chunks, Math.min(n, this.buffered)).subarray(0, n);
  }
}
