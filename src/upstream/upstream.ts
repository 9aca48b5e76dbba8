// The gateway's one door to the directory servers: service searches (paged, references dropped) and
// user binds, each on its own pool. Everything ldapts-shaped stays in this folder.
import { Attribute, Change, InvalidCredentialsError, ResultCodeError, type Entry } from 'ldapts';
import type { UpstreamConfig } from '../config/schema';
import type { AdEntry, AdValue } from '../directory/mapping';
import type { BindReason } from '../auth/reasons';
import { decodeBindFailure, decodeWriteFailure, type WriteReason } from './ad-errors';
import { DcSet, isConnectionError, Pool, SlowOperationError, type PooledConnection } from './pool';

/**
 * An async iterator read one item ahead: item k+1 is requested when item k is handed out, so producing
 * it overlaps with consuming k. At most two items exist at once; an early return waits for the item
 * under way, then closes the source.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let done = false;
  try {
    let next = it.next();
    for (;;) {
      const r = await next;
      if (r.done) {
        done = true;
        return;
      }
      next = it.next();
      next.catch(() => undefined); // rethrown where it is awaited (above), or dropped with the iterator
      yield r.value;
    }
  } finally {
    if (!done) await it.return?.();
  }
}

/** Binary attributes: ldapts would otherwise decode them as (broken) UTF-8. */
const BINARY_ATTRIBUTES = ['objectGUID', 'objectSid', 'thumbnailPhoto', 'jpegPhoto'];

export interface UpstreamQuery {
  base: string;
  scope: 'base' | 'one' | 'sub';
  filter: string;
  attributes: string[];
  pageSize?: number;
}

export type UpstreamBindResult =
  | { ok: true; dc: string; ms: number }
  | { ok: false; reason: BindReason; diagnostic: string; dc?: string; ms: number };

export interface UpstreamTiming {
  (op: 'search' | 'bind' | 'write', dc: string, seconds: number, ok: boolean): void;
}

/** One change of an AD Modify; values as bytes where they are not text (unicodePwd). */
export interface AdChange {
  operation: 'add' | 'delete' | 'replace';
  type: string;
  values: Array<string | Buffer>;
}

export type AdWrite =
  | { op: 'add'; dn: string; attributes: Array<{ type: string; values: Array<string | Buffer> }> }
  | { op: 'modify'; dn: string; changes: AdChange[] }
  /** a new RDN under the same parent */
  | { op: 'rename'; dn: string; newRdn: string }
  | { op: 'delete'; dn: string };

/** AD refused a write (its code and decoded reason), or no DC could take it (code 52). */
export class WriteFailure extends Error {
  constructor(
    readonly code: number,
    readonly reason: WriteReason,
    readonly diagnostic: string,
    readonly dc?: string,
  ) {
    super(diagnostic);
    this.name = 'WriteFailure';
  }
}

const withoutCodeSuffix = (m: string) => m.replace(/ Code: 0x[0-9a-f]+$/i, '');

/** AD's ranged answer for a large multi-valued attribute: `member;range=0-1499` (MS-ADTS 3.1.1.3.1.3.3). */
const RANGED = /^([^;]+);range=(\d+)-(\d+|\*)$/i;

/** Attribute names as AD spells them -> lower case (a handful of names, met on every entry). */
const lowerNames = new Map<string, string>();
function lowerName(k: string): string {
  let l = lowerNames.get(k);
  if (l === undefined) {
    l = k.toLowerCase();
    if (lowerNames.size < 4096) lowerNames.set(k, l);
  }
  return l;
}

function toAdEntry(e: Entry): AdEntry {
  const attrs = new Map<string, AdValue[]>();
  for (const k in e) {
    if (k === 'dn') continue;
    const v = e[k] as AdValue | AdValue[];
    if (!Array.isArray(v)) attrs.set(lowerName(k), [v]);
    else if (v.length > 0) attrs.set(lowerName(k), v);
  }
  return { dn: e.dn, attrs };
}

/** Ranged attributes still to fetch: name -> the next index, for every `x;range=a-b` with b not '*'. */
function pendingRanges(e: AdEntry): Map<string, number> {
  const out = new Map<string, number>();
  for (const key of [...e.attrs.keys()]) {
    const m = RANGED.exec(key);
    if (!m) continue;
    const name = (m[1] as string).toLowerCase();
    const values = e.attrs.get(key) as AdValue[];
    e.attrs.delete(key);
    e.attrs.set(name, [...(e.attrs.get(name) ?? []), ...values]);
    if (m[3] !== '*') out.set(name, Number(m[3]) + 1);
  }
  return out;
}

export class Upstream {
  readonly dcs: DcSet;
  readonly service: Pool;
  readonly binds: Pool;
  private readonly pageSize: number;

  constructor(
    cfg: UpstreamConfig,
    private readonly timing: UpstreamTiming = () => undefined,
  ) {
    this.dcs = new DcSet({
      urls: cfg.urls,
      startTLS: cfg.startTLS,
      tls: cfg.tls,
      connectMs: cfg.timeouts.connectMs,
      operationMs: cfg.timeouts.operationMs,
      idleMs: cfg.timeouts.idleMs,
      failureBackoffMs: cfg.failureBackoffMs,
    });
    this.service = new Pool(this.dcs, { name: 'service', size: cfg.pool.service, mode: 'shared', bindDN: cfg.bind.dn, bindPassword: cfg.bind.password });
    this.binds = new Pool(this.dcs, { name: 'bind', size: cfg.pool.bind, mode: 'exclusive', bindDN: '', bindPassword: '' });
    this.pageSize = cfg.pageSize;
    this.stickyMs = cfg.stickyAfterWriteMs;
    // every DC reached over LDAPS, or StartTLS on each: only then may a password travel
    this.encrypted = cfg.startTLS || cfg.urls.every((u) => u.toLowerCase().startsWith('ldaps://'));
  }

  /** Whether every upstream connection is encrypted (a password may only be written over one). */
  readonly encrypted: boolean;
  private readonly stickyMs: number;

  /** Read one entry by DN; undefined when AD has no such object. */
  async read(dn: string, attributes: string[]): Promise<AdEntry | undefined> {
    try {
      const res = await this.service.use((c) => c.client.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes, explicitBufferAttributes: BINARY_ATTRIBUTES }));
      const e = res.searchEntries[0];
      return e ? toAdEntry(e) : undefined;
    } catch (err) {
      if (err instanceof ResultCodeError && err.code === 32) return undefined;
      throw err;
    }
  }

  /**
   * One write on a service connection. Resolves with the DC that took it, which reads and binds then
   * prefer for stickyAfterWriteMs; a refusal or an unreachable directory becomes a WriteFailure.
   */
  async write(w: AdWrite): Promise<string> {
    const t0 = process.hrtime.bigint();
    let dc: string | undefined;
    try {
      await this.service.use(async (c) => {
        dc = c.url;
        await this.timedWrite(c, t0, async () => {
          switch (w.op) {
            case 'add':
              return c.client.add(w.dn, w.attributes.map((a) => new Attribute({ type: a.type, values: a.values as string[] })));
            case 'modify':
              return c.client.modify(
                w.dn,
                w.changes.map((ch) => new Change({ operation: ch.operation, modification: new Attribute({ type: ch.type, values: ch.values as string[] }) })),
              );
            case 'rename':
              return c.client.modifyDN(w.dn, w.newRdn);
            case 'delete':
              return c.client.del(w.dn);
          }
        });
      });
      this.dcs.pinTo(dc as string, this.stickyMs);
      return dc as string;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      // no answer in time from a DC that answers otherwise: AD may have applied the write or not
      if (err instanceof SlowOperationError) throw new WriteFailure(52, 'upstream_unavailable', `${message} (the outcome of the write is unknown)`, dc);
      if (err instanceof ResultCodeError) {
        const diagnostic = withoutCodeSuffix(message);
        throw new WriteFailure(err.code, decodeWriteFailure(err.code, diagnostic), diagnostic, dc);
      }
      throw new WriteFailure(52, 'upstream_unavailable', message, dc);
    }
  }

  /**
   * Page by page (at most two pages in memory: the next one is read ahead), continuation references dropped.
   * Always paged: Windows AD caps unpaged results at MaxPageSize (1000) with sizeLimitExceeded.
   * A pooled connection found dead before the first page (a DC restarted or cut it), or a DC that did
   * not answer in time and no longer answers a probe (now in back-off), is retried on a fresh connection
   * (DcSet.retryable); a DC that answers the probe was only slow on this query: timeLimitExceeded, not
   * retried. Once a page has gone out, a failure is the caller's to handle.
   */
  async *search(q: UpstreamQuery): AsyncGenerator<AdEntry[]> {
    for (let attempt = 0; ; attempt++) {
      let yielded = false;
      try {
        for await (const page of this.searchOnce(q)) {
          yielded = true;
          yield page;
        }
        return;
      } catch (err) {
        if (yielded || !this.dcs.retryable(err, attempt)) throw err;
      }
    }
  }

  /** Complete every ranged attribute of a page's entries, so callers only ever see whole attributes. */
  private async completeRanges(entries: AdEntry[]): Promise<AdEntry[]> {
    for (const e of entries) {
      let pending = pendingRanges(e);
      while (pending.size > 0) {
        const attributes = [...pending].map(([name, from]) => `${name};range=${from}-*`);
        const res = await this.service.use((c) => c.client.search(e.dn, { scope: 'base', filter: '(objectClass=*)', attributes, explicitBufferAttributes: BINARY_ATTRIBUTES }));
        const more = res.searchEntries[0];
        if (!more) break;
        const next = toAdEntry(more);
        for (const [k, v] of next.attrs) if (RANGED.test(k)) e.attrs.set(k, v);
        const before = pending;
        pending = pendingRanges(e);
        // a DC that answers a range request with no range would loop forever: stop instead
        if ([...pending].every(([n, from]) => before.get(n) === from)) break;
      }
    }
    return entries;
  }

  private async *searchOnce(q: UpstreamQuery): AsyncGenerator<AdEntry[]> {
    const opts = {
      scope: q.scope,
      filter: q.filter,
      attributes: q.attributes,
      explicitBufferAttributes: BINARY_ATTRIBUTES,
      paged: { pageSize: Math.min(q.pageSize ?? this.pageSize, this.pageSize) },
    };
    // a base-scope read needs no paging; a paged control on it is harmless but costs a round trip
    if (q.scope === 'base') {
      const t0 = process.hrtime.bigint();
      const res = await this.service.use(async (c) => this.timed('search', c, t0, () => c.client.search(q.base, { ...opts, paged: false })));
      yield await this.completeRanges(res.searchEntries.map(toAdEntry));
      return;
    }
    const conn = await this.service.acquire();
    const t0 = process.hrtime.bigint();
    let failure: unknown;
    let elsewhere = false; // a failure of the range reads, on another connection (handled there)
    try {
      // the next page is asked for as soon as one arrives: the DC works on it while this one is mapped,
      // sent and read by the client (a paged client's next request then finds it under way or done)
      for await (const page of readAhead(conn.client.searchPaginated(q.base, opts))) {
        let entries: AdEntry[];
        try {
          entries = await this.completeRanges(page.searchEntries.map(toAdEntry));
        } catch (err) {
          elsewhere = true;
          throw err;
        }
        yield entries;
      }
    } catch (err) {
      failure = err;
      this.timing('search', conn.url, Number(process.hrtime.bigint() - t0) / 1e9, elsewhere || err instanceof ResultCodeError);
      if (!elsewhere) throw await this.service.fail(conn, err);
      this.service.release(conn);
      throw err;
    } finally {
      if (failure === undefined) {
        this.timing('search', conn.url, Number(process.hrtime.bigint() - t0) / 1e9, true);
        this.service.release(conn);
      }
    }
  }

  /**
   * Bind as a user on a dedicated connection; AD's `data XXX` decoded into a reason. A connection that
   * died under the bind, or a hung DC (no answer in time, nor to the probe after), is retried on a fresh
   * connection as a search is (DcSet.retryable), so a hung DC costs one timeout and one probe, and the
   * next DC is asked.
   */
  async bind(dn: string, password: string): Promise<UpstreamBindResult> {
    const t0 = process.hrtime.bigint();
    const ms = () => Number(process.hrtime.bigint() - t0) / 1e6;
    let dc: string | undefined;
    for (let attempt = 0; ; attempt++) {
      try {
        await this.binds.use(async (c) => {
          dc = c.url;
          await this.timed('bind', c, t0, () => c.client.bind(dn, password));
        });
        return { ok: true, dc: dc as string, ms: ms() };
      } catch (err) {
        if (err instanceof InvalidCredentialsError) {
          return { ok: false, reason: decodeBindFailure(err.message), diagnostic: err.message, dc, ms: ms() };
        }
        if (this.dcs.retryable(err, attempt)) continue;
        // no DC reachable, or the connection died under the bind: either way the directory was unavailable
        if (isConnectionError(err)) return { ok: false, reason: 'upstream_unavailable', diagnostic: err instanceof Error ? err.message : String(err), dc, ms: ms() };
        const diagnostic = err instanceof Error ? err.message : String(err);
        return { ok: false, reason: 'upstream_error', diagnostic, dc, ms: ms() };
      }
    }
  }

  /** Readiness: can at least one DC take the service bind (a pooled connection proves it). */
  async ready(): Promise<boolean> {
    try {
      await this.service.use(async (c) => {
        await c.client.search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] });
      });
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await Promise.all([this.service.close(), this.binds.close()]);
  }

  private async timedWrite<T>(c: PooledConnection, t0: bigint, fn: () => Promise<T>): Promise<T> {
    let ok = false;
    try {
      const r = await fn();
      ok = true;
      return r;
    } catch (err) {
      ok = err instanceof ResultCodeError; // AD answered: the DC is healthy
      throw err;
    } finally {
      this.timing('write', c.url, Number(process.hrtime.bigint() - t0) / 1e9, ok);
    }
  }

  private async timed<T>(op: 'search' | 'bind', c: PooledConnection, t0: bigint, fn: () => Promise<T>): Promise<T> {
    try {
      const r = await fn();
      this.timing(op, c.url, Number(process.hrtime.bigint() - t0) / 1e9, true);
      return r;
    } catch (err) {
      // a refused bind is an answer from a healthy DC
      this.timing(op, c.url, Number(process.hrtime.bigint() - t0) / 1e9, err instanceof ResultCodeError);
      throw err;
    }
  }

}
