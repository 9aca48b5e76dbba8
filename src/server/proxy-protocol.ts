// PROXY protocol v1 and v2 (HAProxy's "PROXY protocol" specification, haproxy.org/download/2.6/doc/
// proxy-protocol.txt): a load balancer in TCP mode writes one header before the client's first byte, naming
// the client's address. This module reads that header from the first bytes of a connection (it may arrive
// split over several segments, or together with the first LDAP or TLS bytes, which are handed back
// untouched), matches peers against the trusted list (addresses or CIDRs, IPv4-mapped IPv6 peers as IPv4),
// and nothing else: what a header or its absence means for a connection is decided in listener.ts.
import type { Socket } from 'node:net';

/** The address the gateway sees a client by, from the header; `local`: the peer's own (v2 LOCAL, v1 UNKNOWN, v2 AF_UNSPEC). */
export type ProxyHeader =
  | { version: 1 | 2; command: 'proxy'; family: 'tcp4' | 'tcp6'; source: { address: string; port: number }; destination: { address: string; port: number } }
  | { version: 1 | 2; command: 'local' };

export type ProxyParse =
  | { state: 'more' }
  | { state: 'done'; header: ProxyHeader; rest: Buffer }
  | { state: 'error'; reason: string };

/** v1: "PROXY " … CRLF, 107 bytes at most (spec §2.1) */
export const V1_MAX = 107;
/** v2: 16 fixed bytes, then the address block and TLVs; larger headers than this are refused */
export const V2_MAX = 4096;
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');

/** Do these first bytes of a connection begin (or, while shorter, could they begin) a PROXY header? */
export function startsWithProxySignature(b: Buffer): boolean {
  if (b.length === 0) return false;
  const prefixOf = (sig: Buffer) => b.subarray(0, Math.min(b.length, sig.length)).equals(sig.subarray(0, Math.min(b.length, sig.length)));
  return prefixOf(V1_SIGNATURE) || prefixOf(V2_SIGNATURE);
}

/**
 * Incremental reader of one PROXY header. push() every chunk until it answers 'done' (the header and the
 * bytes after it) or 'error'; the bytes it holds never exceed the header's cap.
 */
export class ProxyHeaderParser {
  private buf: Buffer = Buffer.alloc(0);
  private finished = false;

  push(data: Buffer): ProxyParse {
    if (this.finished) throw new Error('PROXY header already read');
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const r = parseProxyHeader(this.buf);
    if (r.state !== 'more') {
      this.finished = true;
      this.buf = Buffer.alloc(0);
    }
    return r;
  }

  /** bytes received so far (for "closed before the header was complete") */
  get buffered(): number {
    return this.buf.length;
  }
}

/** Parse a header from the start of b: 'more' while b is a proper prefix of a valid header. */
export function parseProxyHeader(b: Buffer): ProxyParse {
  if (b.length === 0) return { state: 'more' };
  if (b[0] === 0x50) return parseV1(b);
  if (b[0] === 0x0d) return parseV2(b);
  return { state: 'error', reason: 'no PROXY header' };
}

function parseV1(b: Buffer): ProxyParse {
  const n = Math.min(b.length, V1_SIGNATURE.length);
  if (!b.subarray(0, n).equals(V1_SIGNATURE.subarray(0, n))) return { state: 'error', reason: 'no PROXY header' };
  const end = b.indexOf('\r\n', 0, 'latin1');
  if (end < 0 || end + 2 > V1_MAX) {
    if (b.length >= V1_MAX) return { state: 'error', reason: 'v1 header longer than 107 bytes' };
    // a CR may only come right before the LF, and nothing but printable ASCII before it
    for (let i = 0; i < b.length; i++) {
      const c = b[i] as number;
      if (c === 0x0d ? i !== b.length - 1 : c < 0x20 || c > 0x7e) return { state: 'error', reason: 'malformed v1 header' };
    }
    return { state: 'more' };
  }
  const line = b.toString('latin1', V1_SIGNATURE.length, end);
  const rest = b.subarray(end + 2);
  if (/[^\x20-\x7e]/.test(line)) return { state: 'error', reason: 'malformed v1 header' };
  if (line === 'UNKNOWN' || line.startsWith('UNKNOWN ')) return { state: 'done', header: { version: 1, command: 'local' }, rest }; // the rest of the line is ignored (spec §2.1)
  const f = line.split(' ');
  if (f.length !== 5) return { state: 'error', reason: 'malformed v1 header' };
  const [proto, src, dst, sport, dport] = f as [string, string, string, string, string];
  if (proto !== 'TCP4' && proto !== 'TCP6') return { state: 'error', reason: `unsupported v1 protocol ${proto.slice(0, 16)}` };
  const ip = proto === 'TCP4' ? parseIPv4 : parseIPv6Only;
  const s = ip(src);
  const d = ip(dst);
  const sp = port(sport);
  const dp = port(dport);
  if (!s || !d || sp === undefined || dp === undefined) return { state: 'error', reason: 'malformed v1 header' };
  return {
    state: 'done',
    header: { version: 1, command: 'proxy', family: proto === 'TCP4' ? 'tcp4' : 'tcp6', source: { address: formatIp(s), port: sp }, destination: { address: formatIp(d), port: dp } },
    rest,
  };
}

function port(s: string): number | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

function parseV2(b: Buffer): ProxyParse {
  const n = Math.min(b.length, V2_SIGNATURE.length);
  if (!b.subarray(0, n).equals(V2_SIGNATURE.subarray(0, n))) return { state: 'error', reason: 'no PROXY header' };
  if (b.length < 16) return { state: 'more' };
  const verCmd = b[12] as number;
  if (verCmd >> 4 !== 2) return { state: 'error', reason: `unsupported PROXY protocol version ${verCmd >> 4}` };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { state: 'error', reason: `unknown v2 command ${cmd}` };
  const famProto = b[13] as number;
  const len = b.readUInt16BE(14);
  if (16 + len > V2_MAX) return { state: 'error', reason: `v2 header of ${16 + len} bytes is larger than ${V2_MAX}` };
  if (b.length < 16 + len) return { state: 'more' };
  const rest = b.subarray(16 + len);
  // LOCAL: the load balancer's own connection (health checks); the address block, if any, is ignored
  if (cmd === 0) return { state: 'done', header: { version: 2, command: 'local' }, rest };
  const block = b.subarray(16, 16 + len); // addresses, then TLVs, which are skipped
  switch (famProto) {
    case 0x00: // AF_UNSPEC: "the receiver ... may use the real endpoint addresses" (spec §2.2)
      return { state: 'done', header: { version: 2, command: 'local' }, rest };
    case 0x11: // AF_INET, STREAM
      if (len < 12) return { state: 'error', reason: 'v2 IPv4 address block shorter than 12 bytes' };
      return {
        state: 'done',
        header: { version: 2, command: 'proxy', family: 'tcp4', source: { address: formatIp(block.subarray(0, 4)), port: block.readUInt16BE(8) }, destination: { address: formatIp(block.subarray(4, 8)), port: block.readUInt16BE(10) } },
        rest,
      };
    case 0x21: // AF_INET6, STREAM
      if (len < 36) return { state: 'error', reason: 'v2 IPv6 address block shorter than 36 bytes' };
      return {
        state: 'done',
        header: { version: 2, command: 'proxy', family: 'tcp6', source: { address: formatIp(block.subarray(0, 16)), port: block.readUInt16BE(32) }, destination: { address: formatIp(block.subarray(16, 32)), port: block.readUInt16BE(34) } },
        rest,
      };
    default:
      return { state: 'error', reason: `unsupported v2 address family/transport 0x${famProto.toString(16).padStart(2, '0')}` };
  }
}

// ---- addresses ----

function parseIPv4(s: string): Buffer | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const parts = m.slice(1).map((x) => (x.length > 1 && x.startsWith('0') ? NaN : Number(x)));
  return parts.every((x) => x >= 0 && x <= 255) ? Buffer.from(parts) : undefined;
}

/** 16 bytes of an IPv6 address (embedded dotted IPv4 allowed, zone index ignored), or undefined */
function parseIPv6Only(s: string): Buffer | undefined {
  s = s.replace(/%[^%]*$/, '');
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  if (s.includes('.')) {
    // a trailing dotted IPv4 (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) stands for the last two groups
    const lastColon = s.lastIndexOf(':');
    const v4 = lastColon < 0 ? undefined : parseIPv4(s.slice(lastColon + 1));
    if (!v4) return undefined;
    s = `${s.slice(0, lastColon + 1)}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = groups(halves[0] as string);
  const back = halves.length === 2 ? groups(halves[1] as string) : [];
  if (!head || !back) return undefined;
  const explicit = head.length + back.length;
  let all: number[];
  if (halves.length === 2) {
    if (explicit > 7) return undefined;
    all = [...head, ...new Array<number>(8 - explicit).fill(0), ...back];
  } else {
    if (explicit !== 8) return undefined;
    all = head;
  }
  const out = Buffer.alloc(16);
  all.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

/** 4 or 16 bytes; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes its 4 IPv4 bytes */
export function parseIp(s: string): Buffer | undefined {
  const v4 = parseIPv4(s);
  if (v4) return v4;
  const v6 = parseIPv6Only(s);
  if (!v6) return undefined;
  return isMapped(v6) ? v6.subarray(12) : v6;
}

const isMapped = (b: Buffer): boolean => b.length === 16 && b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;

/** dotted IPv4, or RFC 5952 IPv6 (lower case, longest run of zero groups as "::"); IPv4-mapped as IPv4 */
export function formatIp(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (isMapped(b)) return [...b.subarray(12)].join('.');
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push(b.readUInt16BE(i));
  let best = -1;
  let bestLen = 1; // a single zero group is not shortened
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  return best < 0 ? hex(g) : `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/** A peer's address as the gateway names it: IPv4-mapped IPv6 (a dual-stack listener) as plain IPv4. */
export function normalizeAddress(s: string): string {
  const b = parseIp(s);
  return b ? formatIp(b) : s;
}

/** Is this an IPv4 or IPv6 address, or a CIDR of one (a.b.c.d/n, n ≤ 32; x::y/n, n ≤ 128)? */
export function isAddressOrCidr(s: string): boolean {
  try {
    parseCidr(s);
    return true;
  } catch {
    return false;
  }
}

function parseCidr(s: string): { net: Buffer; bits: number } {
  const slash = s.indexOf('/');
  const addr = slash < 0 ? s : s.slice(0, slash);
  const v4 = parseIPv4(addr);
  const v6 = v4 ? undefined : parseIPv6Only(addr);
  const raw = v4 ?? v6;
  if (!raw) throw new Error(`not an IP address or CIDR: ${s}`);
  const max = raw.length * 8;
  let bits = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) throw new Error(`not an IP address or CIDR: ${s}`);
    bits = Number(p);
  }
  // ::ffff:a.b.c.d/n (n ≥ 96) is the IPv4 network a.b.c.d/(n-96): peers are matched as IPv4
  if (v6 && isMapped(v6) && bits >= 96) return { net: v6.subarray(12), bits: bits - 96 };
  return { net: raw, bits };
}

/** The trusted load balancers: addresses and CIDRs, IPv4 and IPv6; an IPv4-mapped IPv6 peer matches as IPv4. */
export class AddressMatcher {
  private readonly nets: Array<{ net: Buffer; bits: number }>;

  /** throws on an entry that is neither an address nor a CIDR */
  constructor(entries: readonly string[]) {
    this.nets = entries.map(parseCidr);
  }

  has(address: string): boolean {
    const a = parseIp(address);
    if (!a) return false;
    return this.nets.some(({ net, bits }) => net.length === a.length && prefixEqual(net, a, bits));
  }
}

function prefixEqual(x: Buffer, y: Buffer, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (x[i] !== y[i]) return false;
  const r = bits & 7;
  if (r === 0) return true;
  const mask = (0xff << (8 - r)) & 0xff;
  return (((x[whole] as number) ^ (y[whole] as number)) & mask) === 0;
}

// ---- reading the header off a socket ----

export type ProxyRead =
  | { ok: true; header: ProxyHeader }
  /** `bytes`: how many bytes came before the failure (0 with 'closed': the peer left without a word) */
  | { ok: false; reason: 'timeout' | 'closed' | 'malformed'; detail: string; bytes: number };

/**
 * Read one PROXY header from the start of a socket, within timeoutMs. On success the socket is left
 * paused with every byte after the header back in its read buffer (socket.unshift), so whoever takes the
 * connection next (a Session's 'data' listener after resume(), or a TLSSocket, which drains a wrapped
 * socket's buffer first) sees the stream exactly as the client sent it.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyRead> {
  return new Promise((resolve) => {
    const parser = new ProxyHeaderParser();
    let bytes = 0;
    const finish = (r: ProxyRead, rest?: Buffer): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onClose);
      socket.removeListener('end', onClose);
      if (r.ok) {
        socket.pause();
        if (rest && rest.length) socket.unshift(rest);
      }
      resolve(r);
    };
    const onData = (d: Buffer): void => {
      bytes += d.length;
      const r = parser.push(d);
      if (r.state === 'done') finish({ ok: true, header: r.header }, r.rest);
      else if (r.state === 'error') finish({ ok: false, reason: 'malformed', detail: r.reason, bytes });
    };
    const onClose = (): void => finish({ ok: false, reason: 'closed', detail: bytes ? 'connection closed inside the PROXY header' : 'connection closed before any byte', bytes });
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout', detail: `no complete PROXY header within ${timeoutMs} ms`, bytes }), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onClose);
    socket.once('close', onClose);
  });
}

/** The first chunk a socket sends (paused and put back into its read buffer), or undefined if it ends first or within timeoutMs sends nothing. */
export function peekFirstChunk(socket: Socket, timeoutMs: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const finish = (d: Buffer | undefined): void => {
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('close', onEnd);
      socket.removeListener('end', onEnd);
      if (d) {
        socket.pause();
        socket.unshift(d);
      }
      resolve(d);
    };
    const onData = (d: Buffer): void => finish(d);
    const onEnd = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), timeoutMs);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}
