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
  SearchEntry: new (o: { messageId: number; objectName: string; attributes: unknown[] }) => Encodable;
  Attribute: new (o: { type: string; values: string[] }) => unknown;
  PagedResultsControl: new (o: { value: { size: number; cookie: Buffer } }) => unknown;
}

export const Parser = ldap.Parser;

export function encodeResult(protocolOp: number, messageId: number, code: number, message = '', controls?: unknown[]): Buffer {
  return new ldap.LDAPResult({ messageId, status: code, diagnosticMessage: message, matchedDN: '', protocolOp, controls }).toBer().buffer;
}

export function encodeExtended(messageId: number, code: number, opts: { name?: string; value?: string; message?: string } = {}): Buffer {
  return new ldap.ExtendedResponse({ messageId, status: code, diagnosticMessage: opts.message ?? '', responseName: opts.name, responseValue: opts.value }).toBer().buffer;
}

export function encodeEntry(messageId: number, dn: string, attributes: Array<{ type: string; values: string[] }>): Buffer {
  return new ldap.SearchEntry({
    messageId,
    objectName: dn,
    attributes: attributes.map((a) => new ldap.Attribute({ type: a.type, values: a.values })),
  }).toBer().buffer;
}

export function pagedResponseControl(size: number, cookie: Buffer): unknown {
  return new ldap.PagedResultsControl({ value: { size, cookie } });
}
