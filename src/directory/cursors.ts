// Open paged listings (RFC 2696 cookies), per connection. The store outlives the core a reload replaces:
// a listing started before a SIGHUP is continued by the core that started it (whose upstream stays open
// until its last cursor ends; see Core.retire). A cursor belongs to the identity that opened it: after a
// rebind as someone else, an old cookie is not continued with the old rights.
import { randomBytes } from 'node:crypto';
import type { EncodedEntry, Entry, LdapResult } from '../ldap/types';

/** Entries of a listing read before the client asked for them, and how the listing went on after them. */
export interface Ahead {
  /** encoded when the connection's sink can encode ahead (SearchSink.encode) */
  entries: Array<Entry | EncodedEntry>;
  /** the listing ended after these entries */
  end?: LdapResult;
  /** reading on failed after these entries (rethrown where they run out) */
  error?: unknown;
}

export interface Cursor {
  gen: AsyncGenerator<Entry, LdapResult>;
  /** the next page, being read while the client reads this one (paging.ts) */
  ahead?: Promise<Ahead>;
  /** the request's parameters (cache.ts requestSignature): they must not change between pages */
  signature: string;
  /** who the listing is for (the policy's partition) */
  partition: string;
  /** the core that runs it */
  owner: object;
  sent: number;
  startedAt: number;
  lastUsed: number;
}

export interface CursorLimits {
  /** paged searches a connection may have open at once; the oldest is closed beyond this */
  maxCursorsPerConnection: number;
  /** a cursor not continued within this time is closed */
  cursorIdleMs: number;
}

const close = (c: Cursor) => c.gen.return({ code: 0 }).then(
  () => undefined,
  () => undefined,
);

export class CursorStore {
  private readonly bySession = new Map<object, Map<string, Cursor>>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private limits: CursorLimits) {
    this.sweeper = setInterval(() => this.sweep(), Math.max(1000, Math.floor(limits.cursorIdleMs / 4))).unref();
  }

  /** a reload may change the limits; open cursors stay */
  configure(limits: CursorLimits): void {
    this.limits = limits;
  }

  /** Keep a cursor for the next page; returns its cookie. Makes room first (idle or oldest cursors go). */
  async put(session: object, cur: Cursor): Promise<Buffer> {
    let store = this.bySession.get(session);
    if (!store) {
      store = new Map();
      this.bySession.set(session, store);
    }
    const now = Date.now();
    // closed without waiting: a cursor reading its next page ahead ends only after that read
    for (const [k, c] of [...store]) {
      if (now - c.lastUsed > this.limits.cursorIdleMs || store.size >= this.limits.maxCursorsPerConnection) {
        store.delete(k); // Map iterates oldest first
        void close(c);
      }
    }
    const cookie = randomBytes(12);
    cur.lastUsed = now;
    store.set(cookie.toString('hex'), cur);
    return cookie;
  }

  /** The cursor a cookie names, removed from the store (the caller puts it back or closes it). */
  take(session: object, cookie: Buffer): Cursor | undefined {
    const store = this.bySession.get(session);
    const key = cookie.toString('hex');
    const cur = store?.get(key);
    if (!cur) return undefined;
    store?.delete(key);
    if (Date.now() - cur.lastUsed > this.limits.cursorIdleMs) {
      void close(cur);
      return undefined;
    }
    return cur;
  }

  /** Open cursors run by one core (a retiring core waits for them). */
  count(owner: object): number {
    let n = 0;
    for (const store of this.bySession.values()) for (const c of store.values()) if (c.owner === owner) n++;
    return n;
  }

  /** The connection went away: close its listings. */
  async closeSession(session: object): Promise<void> {
    const store = this.bySession.get(session);
    if (!store) return;
    this.bySession.delete(session);
    await Promise.all([...store.values()].map(close));
  }

  private sweep(): void {
    const now = Date.now();
    for (const [session, store] of this.bySession) {
      for (const [k, c] of store) {
        if (now - c.lastUsed > this.limits.cursorIdleMs) {
          store.delete(k);
          void close(c);
        }
      }
      if (store.size === 0) this.bySession.delete(session);
    }
  }

  stop(): void {
    clearInterval(this.sweeper);
  }
}
