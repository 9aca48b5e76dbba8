// The search cache: whole, small results of non-paged searches, keyed by the effective identity and the
// full request, so a result is never served to another identity. Time-bounded (TTL) and size-bounded.
// Nothing invalidates an entry early: a change in AD shows after at most ttlMs.
import { filterToString } from './filter';
import type { Entry, LdapResult, SearchOp } from '../ldap/types';
import { ForgetfulMap, type StateStores } from '../state/types';

export interface CacheOptions {
  ttlMs: number; // 0 disables the cache
  maxSearches: number;
  maxBytes: number;
  /** results with more entries than this are not cached */
  maxResultEntries: number;
}

export interface CachedResult {
  entries: Entry[];
  end: LdapResult;
}

export type CacheEvent = 'hit' | 'miss' | 'evict';

/** The parts of a search request that decide its result (and must not change between pages, RFC 2696 §3). */
export const requestSignature = (op: SearchOp): string => JSON.stringify([op.base.trim().toLowerCase(), op.scope, filterToString(op.filter), op.attributes, op.sizeLimit, op.typesOnly]);

const sizeOf = (r: CachedResult) => r.entries.reduce((n, e) => n + e.dn.length + e.attributes.reduce((m, a) => m + a.type.length + a.values.reduce((k, v) => k + v.length + 16, 0), 0), 64);

export class SearchCache {
  private readonly store: ForgetfulMap<CachedResult> | undefined;

  constructor(
    readonly o: CacheOptions,
    state: StateStores,
    private readonly onEvent: (e: CacheEvent) => void = () => undefined,
  ) {
    if (o.ttlMs <= 0) return;
    this.store = new ForgetfulMap(state.ttlMap<CachedResult>('search-cache', { max: o.maxSearches, maxBytes: o.maxBytes, sizeOf, ttlMs: o.ttlMs, onEvict: () => this.onEvent('evict') }));
  }

  /** A write changed the directory: no result cached before it is answered again. */
  forgetAll(): void {
    this.store?.forgetAll();
  }

  get enabled(): boolean {
    return this.store !== undefined;
  }

  /** identity: who is asking, as the authorization sees it (e.g. `consumer:defguard`, `user:<AD DN>`) */
  key(identity: string, op: SearchOp): string {
    return JSON.stringify([identity, requestSignature(op)]);
  }

  async get(key: string): Promise<CachedResult | undefined> {
    if (!this.store) return undefined;
    const r = await this.store.get(key);
    this.onEvent(r ? 'hit' : 'miss');
    return r;
  }

  /** The point a look-up starts from: a result computed from it is kept only if no write came in between. */
  get generation(): number {
    return this.store?.now ?? 0;
  }

  /** since: `generation` when the search began (a write meanwhile: the result is not kept) */
  async set(key: string, r: CachedResult, since = this.generation): Promise<void> {
    if (this.store && r.entries.length <= this.o.maxResultEntries) await this.store.set(key, r, undefined, since);
  }
}
