// What a decoded request, a result and an entry are: plain data, shared by server/ (which decodes and
// encodes them), auth/ and directory/ (which decide and answer). No ldapjs type appears here.
import type { FilterNode } from './filter';

export type { FilterNode } from './filter';

export interface LdapResult {
  code: number;
  message?: string;
  matchedDN?: string;
}

export interface Control {
  oid: string;
  critical: boolean;
  value?: Buffer;
}

export type Scope = 'base' | 'one' | 'sub';

export interface PagedRequest {
  size: number;
  cookie: Buffer;
}

// ---- the decoded requests (RFC 4511 §4.2–4.12); `op` tells them apart ----

export interface BindOp {
  op: 'bind';
  messageId: number;
  /** the bind name exactly as sent: a DN, user@upn, DOMAIN\user, or a bare name */
  name: string;
  password: string;
}

export interface SearchOp {
  op: 'search';
  messageId: number;
  base: string;
  scope: Scope;
  filter: FilterNode;
  attributes: string[];
  sizeLimit: number;
  timeLimit: number;
  typesOnly: boolean;
  paged?: PagedRequest;
}

/** An attribute of an Add, or of a Modify change: values as sent (bytes; unicodePwd is not UTF-8). */
export interface Attribute {
  type: string;
  values: Buffer[];
}

export interface AddOp {
  op: 'add';
  messageId: number;
  dn: string;
  attributes: Attribute[];
}

export interface ModifyOp {
  op: 'modify';
  messageId: number;
  dn: string;
  changes: Array<{ operation: 'add' | 'delete' | 'replace'; attribute: Attribute }>;
}

export interface ModifyDNOp {
  op: 'modifyDN';
  messageId: number;
  dn: string;
  newRdn: string;
  deleteOldRdn: boolean;
  newSuperior?: string;
}

export interface DeleteOp {
  op: 'delete';
  messageId: number;
  dn: string;
}

export interface CompareOp {
  op: 'compare';
  messageId: number;
  dn: string;
  attribute: string;
  value: Buffer;
}

/** The Password Modify extended operation (RFC 3062), as ldappasswd sends it. */
export interface PasswordModifyOp {
  op: 'passwordModify';
  messageId: number;
  userIdentity?: string;
  oldPassword?: Buffer;
  newPassword?: Buffer;
}

/** Any other extended operation (StartTLS and WhoAmI are answered by the session itself). */
export interface ExtendedOp {
  op: 'extended';
  messageId: number;
  oid: string;
  value?: Buffer;
}

export interface AbandonOp {
  op: 'abandon';
  messageId: number;
  abandonId: number;
}

export interface UnbindOp {
  op: 'unbind';
  messageId: number;
}

export type WriteOp = AddOp | ModifyOp | ModifyDNOp | DeleteOp | PasswordModifyOp;

export type Operation = BindOp | SearchOp | WriteOp | CompareOp | ExtendedOp | AbandonOp | UnbindOp;

/** One decoded LDAPMessage. */
export interface Message {
  messageId: number;
  controls: Control[];
  operation: Operation;
}

// ---- answers ----

export interface Entry {
  dn: string;
  attributes: Array<{ type: string; values: string[] }>;
}

export interface SearchDone extends LdapResult {
  /** response value of the paged-results control, when the request carried one */
  paged?: { size: number; cookie: Buffer };
}

/**
 * How a search ends: a result, or `drop` when the listing cannot be finished truthfully (the upstream
 * failed after entries went out, or a paged listing cannot be continued). Some clients (Defguard's paged
 * sync) take any SearchResultDone as the complete truth, so those must not end in one
 * (reference/defguard-ldap.md §2.4): the connection is dropped instead.
 */
export type SearchOutcome = SearchDone | { drop: true; reason: string };

// ---- the contract between the server layer and the handlers ----

export interface SessionInfo<I> {
  readonly id: number;
  readonly remoteAddress: string;
  readonly tls: boolean;
  /** null = anonymous */
  readonly identity: I | null;
}

/** An entry encoded before the operation that sends it is known (opaque to the handlers). */
export interface EncodedEntry {
  readonly encoded: Buffer;
}

export interface SearchSink {
  /** Send one entry. Resolves when the socket can take more (backpressure), rejects if the op was abandoned or the client left. */
  entry(e: Entry): Promise<void> | void;
  /**
   * Encode an entry now, for this connection and this request's parameters (typesOnly), to be sent by a
   * later operation of the same listing (a paged search's next page, read ahead): encoding then happens
   * while the client reads the page before.
   */
  encode?(e: Entry): EncodedEntry;
  /** Send an entry encode() gave, as entry() sends one. */
  encoded?(e: EncodedEntry): Promise<void> | void;
  readonly signal: AbortSignal;
}

/** What the gateway does with each operation; the server layer decodes, dispatches and writes the answers. */
export interface Handlers<I> {
  bind(op: BindOp, session: SessionInfo<I>): Promise<{ result: LdapResult; identity?: I }>;
  search(op: SearchOp, session: SessionInfo<I>, sink: SearchSink): Promise<SearchOutcome>;
  add(op: AddOp, session: SessionInfo<I>): Promise<LdapResult>;
  modify(op: ModifyOp, session: SessionInfo<I>): Promise<LdapResult>;
  modifyDN(op: ModifyDNOp, session: SessionInfo<I>): Promise<LdapResult>;
  delete(op: DeleteOp, session: SessionInfo<I>): Promise<LdapResult>;
  compare(op: CompareOp, session: SessionInfo<I>): Promise<LdapResult>;
  passwordModify(op: PasswordModifyOp, session: SessionInfo<I>): Promise<LdapResult>;
  /** authzId for the WhoAmI extended operation (RFC 4532): 'dn:…' or '' */
  whoami(session: SessionInfo<I>): string;
  /** the connection is gone: release whatever was kept for it */
  closed?(session: SessionInfo<I>): void;
}

export type RejectReason = 'max_connections' | 'max_connections_per_ip' | 'pdu_too_large' | 'malformed' | 'busy' | 'idle_timeout' | 'proxy_protocol';

/** Per-operation observation for metrics; the server layer knows no metrics library. */
export interface OpObserver {
  op(type: string, code: number, seconds: number): void;
  connection(delta: 1 | -1, tls: boolean): void;
  rejected(reason: RejectReason): void;
}
