// Runs a directory search for one client request: the client's paged-results control (RFC 2696) with
// cookies kept per connection (so they survive interleaved operations), size and time limits across
// pages, and the failure rule. Between two client pages the next one is read and mapped ahead (at most
// MAX_AHEAD entries), while the client reads the page it got: memory per paged listing is bounded by that
// and by one upstream page, never by the size of the listing.
import { requestSignature, type SearchCache } from './cache';
import type { Ahead, Cursor, CursorStore } from './cursors';
import { UpstreamFailure, type DirectorySearch, type SearchScope } from './search';
import { ResultCode } from '../ldap/protocol';
import type { EncodedEntry, Entry, LdapResult, SearchOp, SearchOutcome, SearchSink } from '../ldap/types';

const NO_COOKIE = Buffer.alloc(0);

/** Entries of the next page read ahead at most (a client asking for bigger pages gets the rest as it reads). */
export const MAX_AHEAD = 1000;

/**
 * Read up to n more entries of a listing into `from` (what was read ahead and not sent yet). Never
 * rejects: a failure is kept in the result and rethrown where the entries before it run out.
 */
async function readNextPage(gen: AsyncGenerator<Entry, LdapResult>, n: number, from: Ahead, encode?: (e: Entry) => EncodedEntry): Promise<Ahead> {
  try {
    while (from.end === undefined && from.error === undefined && from.entries.length < n) {
      const r = await gen.next();
      if (r.done) {
        // a generator closed meanwhile (the cursor was dropped) returns no result: nothing more to read
        from.end = r.value ?? { code: ResultCode.success };
        break;
      }
      from.entries.push(encode ? encode(r.value) : r.value);
    }
  } catch (err) {
    from.error = err;
  }
  return from;
}

export class SearchRunner {
  constructor(
    private readonly dir: DirectorySearch,
    private readonly cursors: CursorStore,
    private readonly cache?: SearchCache,
  ) {}

  /** identity: the cache partition (who is asking, as authorization sees it) */
  run(op: SearchOp, scope: SearchScope, session: object, sink: SearchSink, identity: string): Promise<SearchOutcome> {
    return op.paged ? this.paged(op, scope, session, sink, identity) : this.whole(op, scope, sink, identity);
  }

  private async whole(op: SearchOp, scope: SearchScope, sink: SearchSink, identity: string): Promise<SearchOutcome> {
    const key = this.cache?.enabled ? this.cache.key(identity, op) : undefined;
    const since = this.cache?.generation ?? 0;
    const hit = key ? await this.cache?.get(key) : undefined;
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
          if (key && kept && r.value.code === ResultCode.success) await this.cache?.set(key, { entries: kept, end: r.value }, since);
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

  /**
   * One page of a paged listing. A cookie that cannot be continued (unknown, expired, evicted, opened by
   * another identity, or sent with other parameters) drops the connection: Defguard ignores result codes
   * on paged listings and would take the pages it got as the whole directory (defguard-ldap.md §2.4).
   */
  private async paged(op: SearchOp, scope: SearchScope, session: object, sink: SearchSink, identity: string): Promise<SearchOutcome> {
    const { size, cookie } = op.paged as { size: number; cookie: Buffer };
    const done = (r: LdapResult): SearchOutcome => ({ ...r, paged: { size: 0, cookie: NO_COOKIE } });
    let cur: Cursor | undefined;
    if (cookie.length === 0) {
      if (size === 0) return done({ code: ResultCode.success });
      cur = { gen: this.dir.entries(op, scope), signature: requestSignature(op), partition: identity, owner: this, sent: 0, startedAt: Date.now(), lastUsed: Date.now() };
    } else {
      cur = this.cursors.take(session, cookie);
      if (!cur) return { drop: true, reason: 'paged results cookie cannot be continued (unknown or expired)' };
      // size 0 abandons the paged search (RFC 2696 §3): the client itself ends the listing
      if (size === 0 && cur.partition === identity) {
        await cur.gen.return({ code: 0 }).catch(() => undefined);
        return done({ code: ResultCode.success });
      }
      if (cur.partition !== identity || cur.signature !== requestSignature(op)) {
        await cur.gen.return({ code: 0 }).catch(() => undefined);
        return { drop: true, reason: cur.partition !== identity ? 'paged results cookie belongs to another identity' : 'paged search parameters changed between pages' };
      }
    }

    const open: Cursor = cur;
    // what was read ahead for this page (or an empty start), handed out before the generator goes on
    const ahead: Ahead = (await open.ahead) ?? { entries: [] };
    open.ahead = undefined;
    let taken = 0;
    const next = async (): Promise<IteratorResult<Entry | EncodedEntry, LdapResult>> => {
      if (taken < ahead.entries.length) return { done: false, value: ahead.entries[taken++] as Entry | EncodedEntry };
      if (ahead.error !== undefined) throw ahead.error;
      if (ahead.end !== undefined) return { done: true, value: ahead.end };
      return open.gen.next();
    };
    let keep = false;
    try {
      for (let n = 0; n < size; n++) {
        const r = await next();
        if (r.done) return done(r.value);
        const limit = this.limit(op, open.sent, Date.now() - open.startedAt);
        if (limit) return done(limit);
        if ('encoded' in r.value) await (sink.encoded as NonNullable<SearchSink['encoded']>)(r.value);
        else await sink.entry(r.value);
        open.sent++;
      }
      keep = true;
      // the next page is read and mapped now, while the client reads this one (a sync asks for it at once);
      // entries read ahead but not sent (a smaller page size this time) stay first in line
      // (not for a page abandoned or a connection gone: nobody will ask for the next one)
      const rest: Ahead = { ...ahead, entries: ahead.entries.slice(taken) };
      open.ahead = sink.signal.aborted ? Promise.resolve(rest) : readNextPage(open.gen, Math.min(size, MAX_AHEAD), rest, sink.encode && sink.encoded ? sink.encode : undefined);
      return { code: ResultCode.success, paged: { size: 0, cookie: await this.cursors.put(session, open) } };
    } catch (err) {
      if (!(err instanceof UpstreamFailure)) throw err;
      // a paged client (Defguard's sync) takes any SearchResultDone as the complete list, even with an
      // error code, and would delete the users it did not get: always drop the connection instead
      return { drop: true, reason: err.message };
    } finally {
      if (!keep) await open.gen.return({ code: 0 }).catch(() => undefined);
    }
  }

  /** Paged listings this runner still has open (its core waits for them before it retires). */
  get openCursors(): number {
    return this.cursors.count(this);
  }

  /** sizeLimitExceeded / timeLimitExceeded when the next entry would break a client limit (RFC 4511 §4.5.1). */
  private limit(op: SearchOp, sent: number, elapsedMs: number): LdapResult | undefined {
    if (op.sizeLimit > 0 && sent >= op.sizeLimit) return { code: ResultCode.sizeLimitExceeded };
    if (op.timeLimit > 0 && elapsedMs > op.timeLimit * 1000) return { code: ResultCode.timeLimitExceeded };
    return undefined;
  }
}
