// The one place ldapjs is imported. Its server typings are `any` and partly wrong (toolchain.md §7.12);
// what we use is described here, so the looseness stops at this file.
// We use ldapjs's protocol codec for encoding ExtendedResponse, the paged-results response control and the
// results that carry it. Requests are decoded by decode.ts (byte-exact, and for bind, unbind and abandon
// faster than ldapjs's parser), and results without controls are written here. Not its Server (it forces
// bind names through DN parsing, lets anonymous binds bypass handlers, routes by case-sensitive DN, drops
// the connection on unknown operations and buffers PDUs without limit), and not its decoders for requests
// that carry filters, DNs or values (decode.ts says why).
import { encodeSearchEntry, integer, octets, tlv } from '../ldap/ber';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const ldap = require('ldapjs') as LdapjsCodec;

interface Encodable {
  toBer(): { buffer: Buffer };
}

interface LdapjsCodec {
  LDAPResult: new (o: { messageId: number; status: number; diagnosticMessage?: string; matchedDN?: string; protocolOp: number; controls?: unknown[] }) => Encodable;
  ExtendedResponse: new (o: { messageId: number; status: number; diagnosticMessage?: string; responseName?: string; responseValue?: string }) => Encodable;
  PagedResultsControl: new (o: { value: { size: number; cookie: Buffer } }) => unknown;
}

/**
 * An LDAPResult-shaped response. Without controls (every bind and most results) it is written here, the
 * same bytes as ldapjs's (framing.test.ts compares them), without its message object and BER writer per
 * response; with controls (the paged-results cookie) ldapjs encodes it.
 */
export function encodeResult(protocolOp: number, messageId: number, code: number, message = '', controls?: unknown[], matchedDN = ''): Buffer {
  if (!controls || controls.length === 0) return tlv(0x30, integer(0x02, messageId), tlv(protocolOp, integer(0x0a, code), octets(0x04, matchedDN), octets(0x04, message)));
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
