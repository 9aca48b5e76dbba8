// The one place ldapjs is imported. Its server typings are `any` and partly wrong (toolchain.md §7.12);
// what we use is described here, so the looseness stops at this file.
// We use ldapjs's protocol codec where it is correct: decoding bind, abandon and unbind requests, and
// encoding LDAPResult / ExtendedResponse and the paged-results response control. Not its Server (it forces
// bind names through DN parsing, lets anonymous binds bypass handlers, routes by case-sensitive DN, drops
// the connection on unknown operations and buffers PDUs without limit), and not its decoders for requests
// that carry filters, DNs or values (decode.ts says why).
import { BerError, encodeSearchEntry, encodeSearchEntryBody, integer, tlv, type Element } from '../ldap/ber';
import { Tag } from '../ldap/protocol';
import type { AbandonOp, BindOp, UnbindOp } from '../ldap/types';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldap = require('ldapjs') as LdapjsCodec;

interface DecodedMessage {
  messageId: number;
  protocolOp: number;
  name?: string;
  credentials?: string;
  version?: number;
  abandonId?: number;
}

interface Encodable {
  toBer(): { buffer: Buffer };
}

interface Parser {
  buffer: Buffer | null;
  on(ev: 'message', fn: (m: DecodedMessage) => void): void;
  on(ev: 'error', fn: (err: Error) => void): void;
  write(b: Buffer): void;
}

interface LdapjsCodec {
  Parser: new () => Parser;
  LDAPResult: new (o: { messageId: number; status: number; diagnosticMessage?: string; matchedDN?: string; protocolOp: number; controls?: unknown[] }) => Encodable;
  ExtendedResponse: new (o: { messageId: number; status: number; diagnosticMessage?: string; responseName?: string; responseValue?: string }) => Encodable;
  PagedResultsControl: new (o: { value: { size: number; cookie: Buffer } }) => unknown;
}

// ldapjs's parser answers synchronously: one instance serves every connection
const parser = new ldap.Parser();
let decoded: DecodedMessage | undefined;
let failed: Error | undefined;
parser.on('message', (m) => (decoded = m));
parser.on('error', (err) => (failed = err));

/**
 * A bind, abandon or unbind request, decoded by ldapjs from the protocolOp alone: the envelope and the
 * controls are decode.ts's (ldapjs fails a whole message on a control it cannot parse, ldapjs #956).
 */
export function decodeSimpleOp(pdu: Buffer, op: Element, messageId: number): BindOp | AbandonOp | UnbindOp {
  decoded = undefined;
  failed = undefined;
  parser.buffer = null;
  parser.write(tlv(0x30, integer(0x02, messageId), pdu.subarray(op.off, op.end)));
  const m = decoded as DecodedMessage | undefined;
  if (failed || !m) throw failed ?? new Error('could not decode request');
  switch (op.tag) {
    case Tag.bindRequest:
      if (m.version !== 3) throw new BerError('only LDAPv3 is supported');
      return { op: 'bind', messageId, name: m.name ?? '', password: m.credentials ?? '' };
    case Tag.abandonRequest:
      return { op: 'abandon', messageId, abandonId: m.abandonId ?? -1 };
    default:
      return { op: 'unbind', messageId };
  }
}

export function encodeResult(protocolOp: number, messageId: number, code: number, message = '', controls?: unknown[], matchedDN = ''): Buffer {
  return new ldap.LDAPResult({ messageId, status: code, diagnosticMessage: message, matchedDN, protocolOp, controls }).toBer().buffer;
}

export function encodeExtended(messageId: number, code: number, opts: { name?: string; value?: string; message?: string } = {}): Buffer {
  return new ldap.ExtendedResponse({ messageId, status: code, diagnosticMessage: opts.message ?? '', responseName: opts.name, responseValue: opts.value }).toBer().buffer;
}

export function pagedResponseControl(size: number, cookie: Buffer): unknown {
  return new ldap.PagedResultsControl({ value: { size, cookie } });
}

// SearchResultEntry is encoded here, not with ldapjs's SearchEntry: that class parses objectName into a DN
// and re-serializes it, hex-escaping commas and every non-ASCII byte (`CN=Doe\2c Jos\c3\a9`), so DNs
// would not come out as AD or our virtual tree wrote them (ldapjs #957/#968). It is the search hot path:
// lengths are worked out first, then the entry is written into one buffer (ldap/ber.ts sizedWriter).
export function encodeEntry(messageId: number, dn: string, attributes: ReadonlyArray<{ type: string; values: readonly string[] }>): Buffer {
  return encodeSearchEntry(messageId, dn, attributes);
}

/** The same SearchResultEntry without its message envelope (ldap/ber.ts envelope() adds it when sent). */
export function encodeEntryBody(dn: string, attributes: ReadonlyArray<{ type: string; values: readonly string[] }>): Buffer {
  return encodeSearchEntryBody(dn, attributes);
}
