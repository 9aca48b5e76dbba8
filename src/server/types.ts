// What crosses the server/ boundary: plain data only. ldapjs objects never leave this folder.
import type { FilterNode } from '../directory/filter';

export const ResultCode = {
  success: 0,
  operationsError: 1,
  protocolError: 2,
  timeLimitExceeded: 3,
  sizeLimitExceeded: 4,
  authMethodNotSupported: 7,
  unavailableCriticalExtension: 12,
  confidentialityRequired: 13,
  noSuchObject: 32,
  invalidDNSyntax: 34,
  inappropriateAuthentication: 48,
  invalidCredentials: 49,
  insufficientAccessRights: 50,
  busy: 51,
  unavailable: 52,
  unwillingToPerform: 53,
  other: 80,
} as const;

export interface LdapResult {
  code: number;
  message?: string;
  matchedDN?: string;
}

export interface PagedRequest {
  size: number;
  cookie: Buffer;
}

export interface BindOp {
  messageId: number;
  /** the bind name exactly as sent: a DN, user@upn, DOMAIN\user, or a bare name */
  name: string;
  password: string;
}

export type Scope = 'base' | 'one' | 'sub';

export interface SearchOp {
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

export interface Entry {
  dn: string;
  attributes: Array<{ type: string; values: string[] }>;
}

export interface SearchDone extends LdapResult {
  /** response value of the paged-results control, when the request carried one */
  paged?: { size: number; cookie: Buffer };
}

/**
 * How a search ends: a result, or `drop` when the upstream failed after entries went out. Some clients
 * (Defguard's paged sync) take any SearchResultDone as the complete truth, so partial data must not end
 * in one (reference/defguard-ldap.md §2.4).
 */
export type SearchOutcome = SearchDone | { drop: true; reason: string };

export interface SessionInfo<I> {
  readonly id: number;
  readonly remoteAddress: string;
  readonly tls: boolean;
  /** null = anonymous */
  readonly identity: I | null;
}

export interface SearchSink {
  /** Send one entry. Resolves when the socket can take more (backpressure), rejects if the op was abandoned. */
  entry(e: Entry): Promise<void> | void;
  readonly signal: AbortSignal;
}

/** The operations the gateway implements; everything else is answered by the server layer itself. */
export interface Handlers<I> {
  bind(op: BindOp, session: SessionInfo<I>): Promise<{ result: LdapResult; identity?: I }>;
  search(op: SearchOp, session: SessionInfo<I>, sink: SearchSink): Promise<SearchOutcome>;
  /** authzId for the WhoAmI extended operation (RFC 4532): 'dn:…' or '' */
  whoami(session: SessionInfo<I>): string;
  /** the connection is gone: release whatever was kept for it */
  closed?(session: SessionInfo<I>): void;
}

/** Per-operation observation for metrics; the server layer knows no metrics library. */
export interface OpObserver {
  op(type: string, code: number, seconds: number): void;
  connection(delta: 1 | -1, tls: boolean): void;
  rejected(reason: 'max_connections' | 'max_connections_per_ip' | 'pdu_too_large' | 'malformed' | 'busy' | 'idle_timeout'): void;
}
