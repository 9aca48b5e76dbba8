// Runs a directory search for one client request: the client's paged-results control (RFC 2696) with
// cookies kept per connection (so they survive interleaved operations), size and time limits across
// pages, and the failure rule. Memory per paged listing is bounded by one upstream page: the entry
// generator is suspended between client pages, never drained into a buffer.
import { randomBytes } from 'node:crypto';
import { requestSignature, type SearchCache } from './cache';
import { UpstreamFailure, type DirectorySearch, type SearchScope } from './search';
import { ResultCode, type Entry, type LdapResult, type SearchOp, type SearchOutcome, type SearchSink } from '../server/types';

interface Cursor {
  gen: AsyncGenerator<Entry, LdapResult>;
  signature: string;
  sent: number;
  startedAt: number;
  lastUsed: number;
}

export interface PagingOptions {
  /** paged searches a connection may have open at once; the oldest is closed beyond this */
  maxCursorsPerConnection: number;
  /** a cursor not continued within this time is closed */
  cursorIdleMs: number;
}

const NO_COOKIE = Buffer.alloc(0);


export class SearchRunner {
  private readonly cursors = new WeakMap<object, Map<string, Cursor>>();

  constructor(
    private readonly dir: DirectorySearch,
    private readonly o: PagingOptions,
    private readonly cache?: SearchCache,
  ) {}

  /** identity: the cache partition (who is asking, as authorization sees it) */
  run(op: SearchOp, scope: SearchScope, session: object, sink: SearchSink, identity: string): Promise<SearchOutcome> {
    return op.paged ? this.paged(op, scope, session, sink) : this.whole(op, scope, sink, identity);
  }

  /** Close every open paged search of a connection (it went away). */
  async closeSession(session: object): Promise<void> {
    const store = this.cursors.get(session);
    if (!store) return;
    this.cursors.delete(session);
    await Promise.all([...store.values()].map((c) => c.gen.return({ code: 0 }).catch(() => undefined)));
  }

  private async whole(op: SearchOp, scope: SearchScope, sink: SearchSink, identity: string): Promise<SearchOutcome> {
    const key = this.cache?.enabled ? this.cache.key(identity, op) : undefined;
    const hit = key ? this.cache?.get(key) : undefined;
    if (hit) {
      for (const e of hit.entries) await sink.entry(e);
      return hit.end;
    }
    const gen = this.dir.entries(op, scope);
    const startedAt = Date.now();
    // kept for the cache only while the result is small enough to be cached
    let kept: Entry[] | undefined = key ? [] : undefined;
    let sent = 0;
    try {
      for (;;) {
        const r = await gen.next();
        if (r.done) {
          if (key && kept && r.value.code === ResultCode.success) this.cache?.set(key, { entries: kept, end: r.value });
          return r.value;
        }
        const limit = this.limit(op, sent, Date.now() - startedAt);
        if (limit) return limit;
        await sink.entry(r.value);
        sent++;
        if (kept && kept.length < (this.cache?.o.maxResultEntries ?? 0)) kept.push(r.value);
        else kept = undefined;
      }
    } catch (err) {
      if (!(err instanceof UpstreamFailure)) throw err;
      // the directory's own limit: the code itself tells the client the list is incomplete
      if (err.code === ResultCode.sizeLimitExceeded || err.code === ResultCode.timeLimitExceeded) return { code: err.code, message: 'limit of the directory behind the gateway reached' };
      // entries already out: a SearchResultDone now would pass partial data off as complete
      if (sent > 0) return { drop: true, reason: err.message };
      return { code: ResultCode.unavailable, message: 'the directory behind the gateway did not answer' };
    } finally {
      await gen.return({ code: 0 }).catch(() => undefined);
    }
  }

  private async paged(op: SearchOp, scope: SearchScope, session: object, sink: SearchSink): Promise<SearchOutcome> {
    const { size, cookie } = op.paged as { size: number; cookie: Buffer };
    const store = this.storeFor(session);
    const done = (r: LdapResult): SearchOutcome => ({ ...r, paged: { size: 0, cookie: NO_COOKIE } });
    let cur: Cursor;
    if (cookie.length === 0) {
      if (size === 0) return done({ code: ResultCode.success });
      await this.makeRoom(store);
      cur = { gen: this.dir.entries(op, scope), signature: requestSignature(op), sent: 0, startedAt: Date.now(), lastUsed: Date.now() };
    } else {
      const key = cookie.toString('hex');
      const found = store.get(key);
      if (!found) return done({ code: ResultCode.unwillingToPerform, message: 'paged results cookie is invalid or expired' });
      store.delete(key);
      cur = found;
      if (size === 0 || cur.signature !== requestSignature(op)) {
        // size 0 abandons the paged search (RFC 2696 §3); changed parameters are refused
        await cur.gen.return({ code: 0 }).catch(() => undefined);
        return size === 0 ? done({ code: ResultCode.success }) : done({ code: ResultCode.unwillingToPerform, message: 'paged search parameters changed between pages' });
      }
    }

    let keep = false;
    try {
      for (let n = 0; n < size; n++) {
        const r = await cur.gen.next();
        if (r.done) return done(r.value);
        const limit = this.limit(op, cur.sent, Date.now() - cur.startedAt);
        if (limit) return done(limit);
        await sink.entry(r.value);
        cur.sent++;
      }
      keep = true;
      const next = randomBytes(12);
      cur.lastUsed = Date.now();
      store.set(next.toString('hex'), cur);
      return { code: ResultCode.success, paged: { size: 0, cookie: next } };
    } catch (err) {
      if (!(err instanceof UpstreamFailure)) throw err;
      // a paged client (Defguard's sync) takes any SearchResultDone as the complete list, even with an
      // error code, and would delete the users it did not get: always drop the connection instead
      return { drop: true, reason: err.message };
    } finally {
      if (!keep) await cur.gen.return({ code: 0 }).catch(() => undefined);
    }
  }

  /** sizeLimitExceeded / timeLimitExceeded when the next entry would break a client limit (RFC 4511 §4.5.1). */
  private limit(op: SearchOp, sent: number, elapsedMs: number): LdapResult | undefined {
    if (op.sizeLimit > 0 && sent >= op.sizeLimit) return { code: ResultCode.sizeLimitExceeded };
    if (op.timeLimit > 0 && elapsedMs > op.timeLimit * 1000) return { code: ResultCode.timeLimitExceeded };
    return undefined;
  }

  private storeFor(session: object): Map<string, Cursor> {
    let store = this.cursors.get(session);
    if (!store) {
      store = new Map();
      this.cursors.set(session, store);
    }
    return store;
  }

  private async makeRoom(store: Map<string, Cursor>): Promise<void> {
    const now = Date.now();
    for (const [k, c] of store) {
      if (now - c.lastUsed > this.o.cursorIdleMs || store.size >= this.o.maxCursorsPerConnection) {
        store.delete(k); // Map iterates oldest first
        await c.gen.return({ code: 0 }).catch(() => undefined);
      }
    }
  }
}
