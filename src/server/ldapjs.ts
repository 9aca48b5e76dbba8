// The one place ldapjs is imported. Its server typings are `any` and partly wrong (toolchain.md §7.12);
// what we use is described here, so the looseness stops at this file.
// We use ldapjs's protocol codec (message parser, message and control classes), not its Server: the
// Server forces bind names through DN parsing (so `alice@upn` and `DOMAIN\alice` fail with 34), lets
// anonymous binds bypass handlers, routes by case-sensitive DN (#323), drops the connection on unknown
// operations, and buffers PDUs without limit. Framing and dispatch are ours (framing.ts, connection.ts).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldap = require('ldapjs') as LdapjsCodec;

export interface DecodedControl {
  type: string;
  criticality: boolean;
  value?: { size?: number; cookie?: Buffer } | unknown;
}

export interface DecodedMessage {
  messageId: number;
  protocolOp: number;
  type: string;
  controls: DecodedControl[];
  // BindRequest
  name?: string;
  credentials?: string;
  version?: number; // SASL binds never decode (ldapjs parses simple auth only); see Session.undecodable
  // SearchRequest (base and filter are decoded by search-decode.ts instead)
  scope?: number;
  sizeLimit?: number;
  timeLimit?: number;
  typesOnly?: boolean;
  attributes?: string[];
  // ExtensionRequest
  requestName?: string;
  requestValue?: string | Buffer;
  // AbandonRequest
  abandonId?: number;
}

interface Encodable {
  toBer(): { buffer: Buffer };
}

interface Parser {
  buffer: Buffer | null;
  on(ev: 'message', fn: (m: DecodedMessage) => void): void;
  on(ev: 'error', fn: (err: Error, m?: DecodedMessage) => void): void;
  write(b: Buffer): void;
}

interface LdapjsCodec {
  Parser: new () => Parser;
  LDAPResult: new (o: { messageId: number; status: number; diagnosticMessage?: string; matchedDN?: string; protocolOp: number; controls?: unknown[] }) => Encodable;
  ExtendedResponse: new (o: { messageId: number; status: number; diagnosticMessage?: string; responseName?: string; responseValue?: string }) => Encodable;
  PagedResultsControl: new (o: { value: { size: number; cookie: Buffer } }) => unknown;
}

export const Parser = ldap.Parser;

export function encodeResult(protocolOp: number, messageId: number, code: number, message = '', controls?: unknown[]): Buffer {
  return new ldap.LDAPResult({ messageId, status: code, diagnosticMessage: message, matchedDN: '', protocolOp, controls }).toBer().buffer;
}

export function encodeExtended(messageId: number, code: number, opts: { name?: string; value?: string; message?: string } = {}): Buffer {
  return new ldap.ExtendedResponse({ messageId, status: code, diagnosticMessage: opts.message ?? '', responseName: opts.name, responseValue: opts.value }).toBer().buffer;
}

// SearchResultEntry is encoded here, not with ldapjs's SearchEntry: that class parses objectName into a DN
// and re-serializes it, hex-escaping commas and every non-ASCII byte (`CN=Doe\2c Jos\c3\a9`), so DNs
// would not come out as AD or our virtual tree wrote them (ldapjs #957/#968). It is also the search hot path.
function tlv(tag: number, body: Buffer | Buffer[]): Buffer[] {
  const parts = Array.isArray(body) ? body : [body];
  let n = 0;
  for (const p of parts) n += p.length;
  let head: Buffer;
  if (n < 0x80) head = Buffer.from([tag, n]);
  else if (n < 0x100) head = Buffer.from([tag, 0x81, n]);
  else if (n < 0x10000) head = Buffer.from([tag, 0x82, n >> 8, n & 0xff]);
  else if (n < 0x1000000) head = Buffer.from([tag, 0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  else head = Buffer.from([tag, 0x84, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
  return [head, ...parts];
}
const one = (parts: Buffer[]) => (parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts));
const octets = (s: string) => one(tlv(0x04, Buffer.from(s, 'utf8')));

function integer(n: number): Buffer {
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  if ((bytes[0] as number) & 0x80) bytes.unshift(0); // stay positive (two's complement)
  return one(tlv(0x02, Buffer.from(bytes)));
}

export function encodeEntry(messageId: number, dn: string, attributes: Array<{ type: string; values: string[] }>): Buffer {
  const attrs = attributes.map((a) => one(tlv(0x30, [octets(a.type), one(tlv(0x31, a.values.map(octets)))])));
  return one(tlv(0x30, [integer(messageId), one(tlv(0x64, [octets(dn), one(tlv(0x30, attrs))]))]));
}

export function pagedResponseControl(size: number, cookie: Buffer): unknown {
  return new ldap.PagedResultsControl({ value: { size, cookie } });
}
