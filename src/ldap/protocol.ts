// The protocol's plain vocabulary (RFC 4511): result codes, operation tags and names, OIDs. Defined once;
// server/, directory/, auth/ and observability/ import them from here. No code, only data.

export const ResultCode = {
  success: 0,
  operationsError: 1,
  protocolError: 2,
  timeLimitExceeded: 3,
  sizeLimitExceeded: 4,
  compareFalse: 5,
  compareTrue: 6,
  authMethodNotSupported: 7,
  unavailableCriticalExtension: 12,
  confidentialityRequired: 13,
  noSuchAttribute: 16,
  undefinedAttributeType: 17,
  constraintViolation: 19,
  attributeOrValueExists: 20,
  invalidAttributeSyntax: 21,
  noSuchObject: 32,
  invalidDNSyntax: 34,
  inappropriateAuthentication: 48,
  invalidCredentials: 49,
  insufficientAccessRights: 50,
  busy: 51,
  unavailable: 52,
  unwillingToPerform: 53,
  namingViolation: 64,
  objectClassViolation: 65,
  notAllowedOnNonLeaf: 66,
  notAllowedOnRDN: 67,
  entryAlreadyExists: 68,
  other: 80,
} as const;

export type ResultCodeName = keyof typeof ResultCode;

const NAMES = new Map<number, string>(Object.entries(ResultCode).map(([name, code]) => [code, name]));

/** A stable label for a result code (metrics, logs): its RFC 4511 name, or the number. */
export function resultName(code: number): string {
  return NAMES.get(code) ?? String(code);
}

/** protocolOp tags of LDAPMessage (RFC 4511 §4.2–4.12), application class. */
export const Tag = {
  bindRequest: 0x60,
  bindResponse: 0x61,
  unbindRequest: 0x42,
  searchRequest: 0x63,
  searchResultEntry: 0x64,
  searchResultDone: 0x65,
  searchResultReference: 0x73,
  modifyRequest: 0x66,
  modifyResponse: 0x67,
  addRequest: 0x68,
  addResponse: 0x69,
  delRequest: 0x4a,
  delResponse: 0x6b,
  modDNRequest: 0x6c,
  modDNResponse: 0x6d,
  compareRequest: 0x6e,
  compareResponse: 0x6f,
  abandonRequest: 0x50,
  extendedRequest: 0x77,
  extendedResponse: 0x78,
} as const;

/** The operations a client may request, by the name metrics and logs use. */
export type OpName = 'bind' | 'unbind' | 'search' | 'modify' | 'add' | 'delete' | 'modifyDN' | 'compare' | 'abandon' | 'extended';

/** request tag -> operation name and the tag of its response (unbind and abandon have none) */
export const REQUESTS: ReadonlyMap<number, { name: OpName; response?: number }> = new Map([
  [Tag.bindRequest, { name: 'bind', response: Tag.bindResponse }],
  [Tag.unbindRequest, { name: 'unbind' }],
  [Tag.searchRequest, { name: 'search', response: Tag.searchResultDone }],
  [Tag.modifyRequest, { name: 'modify', response: Tag.modifyResponse }],
  [Tag.addRequest, { name: 'add', response: Tag.addResponse }],
  [Tag.delRequest, { name: 'delete', response: Tag.delResponse }],
  [Tag.modDNRequest, { name: 'modifyDN', response: Tag.modDNResponse }],
  [Tag.compareRequest, { name: 'compare', response: Tag.compareResponse }],
  [Tag.abandonRequest, { name: 'abandon' }],
  [Tag.extendedRequest, { name: 'extended', response: Tag.extendedResponse }],
]);

/** Object identifiers the gateway knows. */
export const OID = {
  // extended operations
  startTLS: '1.3.6.1.4.1.1466.20037',
  whoami: '1.3.6.1.4.1.4203.1.11.3',
  passwordModify: '1.3.6.1.4.1.4203.1.11.1',
  noticeOfDisconnection: '1.3.6.1.4.1.1466.20036',
  // controls
  pagedResults: '1.2.840.113556.1.4.319',
  manageDsaIT: '2.16.840.1.113730.3.4.2',
  // AD matching rules
  inChain: '1.2.840.113556.1.4.1941',
  bitAnd: '1.2.840.113556.1.4.803',
} as const;

/** Controls the gateway honours; any other control marked critical fails its operation (RFC 4511 §4.1.11). */
export const SUPPORTED_CONTROLS: ReadonlyArray<string> = [OID.pagedResults, OID.manageDsaIT];
