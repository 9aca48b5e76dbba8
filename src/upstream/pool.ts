// A small pool of ldapts clients over an ordered list of domain controllers.
// ldapts has no pool and a connect race (toolchain.md §8): a connection here is always opened by one
// serial operation (the service bind, or an anonymous bind for the bind pool) before anyone shares it.
//   shared:    service connections, bound once as the service account, multiplexed (least in-flight)
//   exclusive: bind connections, leased to one user bind at a time (a bind changes the whole connection)
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { Client, ResultCodeError, TimeLimitExceededError } from 'ldapts';

export interface DcOptions {
  urls: string[];
  startTLS: boolean;
  tls: { ca?: string; verify: boolean; servername?: string };
  connectMs: number;
  operationMs: number;
  idleMs: number;
  failureBackoffMs: number;
}

export interface PoolOptions {
  name: 'service' | 'bind';
  size: number;
  mode: 'shared' | 'exclusive';
  /** the identity a new connection binds as before use; '' / '' = anonymous */
  bindDN: string;
  bindPassword: string;
}

/** An operation that outlived timeouts.operationMs on a DC that still answers: its own time limit, not an outage. */
export class SlowOperationError extends TimeLimitExceededError {}

export class UpstreamUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpstreamUnavailableError';
  }
}

/** Per-DC health, shared by every pool over the same DCs (the circuit breaker). */
export class DcSet {
  readonly dcs: Array<{ url: string; downUntil: number; up: boolean; lastError?: string }>;
  readonly tlsOptions: ConnectionOptions;

  constructor(readonly opts: DcOptions) {
    this.dcs = opts.urls.map((url) => ({ url, downUntil: 0, up: true }));
    this.tlsOptions = {
      rejectUnauthorized: opts.tls.verify,
      ...(opts.tls.ca ? { ca: [readFileSync(opts.tls.ca)] } : {}),
      ...(opts.tls.servername ? { servername: opts.tls.servername } : {}),
    };
  }

  private pin: { url: string; until: number } | undefined;

  /**
   * DCs to try, in configured order; those in back-off come last, so an all-down set still retries.
   * A DC pinned after a write comes first while the pin lasts.
   */
  candidates(now = Date.now()): string[] {
    const ready = this.dcs.filter((d) => d.downUntil <= now);
    const waiting = this.dcs.filter((d) => d.downUntil > now).sort((a, b) => a.downUntil - b.downUntil);
    const order = [...ready, ...waiting.slice(0, ready.length ? 0 : 1)].map((d) => d.url);
    const pinned = this.pinned(now);
    return pinned && order.includes(pinned) ? [pinned, ...order.filter((u) => u !== pinned)] : order;
  }

  /** After a write: reads and binds go to this DC for ms (AD replicates between DCs with a delay). */
  pinTo(url: string, ms: number): void {
    if (ms > 0 && this.dcs.length > 1) this.pin = { url, until: Date.now() + ms };
  }

  /** The DC reads must go to now, if a recent write pinned one and it is not in back-off. */
  pinned(now = Date.now()): string | undefined {
    const p = this.pin;
    if (!p || p.until <= now) return undefined;
    const dc = this.dcs.find((d) => d.url === p.url);
    return dc && dc.downUntil <= now ? p.url : undefined;
  }

  markDown(url: string, err: unknown): void {
    const dc = this.dcs.find((d) => d.url === url);
    if (!dc) return;
    dc.up = false;
    dc.downUntil = Date.now() + this.opts.failureBackoffMs;
    dc.lastError = err instanceof Error ? err.message : String(err);
  }

  /** Not in back-off since its last failure (a connection to a DC that failed is not reused). */
  isUp(url: string): boolean {
    return this.dcs.find((d) => d.url === url)?.up !== false;
  }

  /**
   * Whether an operation that failed on a connection may be tried again on a fresh one: a connection-level
   * failure other than "none reachable" (which already tried every DC), with a DC left that has not failed,
   * at most once per DC (at least once: a pooled connection a DC cut while it sat idle).
   */
  retryable(err: unknown, attempt: number): boolean {
    return isConnectionError(err) && !(err instanceof UpstreamUnavailableError) && attempt + 1 < Math.max(2, this.dcs.length) && this.dcs.some((d) => d.up);
  }

  private readonly probes = new Map<string, Promise<boolean>>();

  /**
   * Whether a DC that let an operation time out still answers: a rootDSE read on a fresh connection,
   * within timeouts.connectMs (one probe per DC at a time, shared by every operation that timed out).
   * A DC that answers anything, even an error, answers.
   */
  answers(url: string): Promise<boolean> {
    let p = this.probes.get(url);
    if (!p) {
      p = this.probe(url).finally(() => this.probes.delete(url));
      this.probes.set(url, p);
    }
    return p;
  }

  private async probe(url: string): Promise<boolean> {
    const client = this.client(url, this.opts.connectMs);
    try {
      if (this.opts.startTLS && url.toLowerCase().startsWith('ldap://')) await client.startTLS(this.tlsOptions);
      await client.search('', { scope: 'base', filter: '(objectClass=*)', attributes: ['1.1'] });
      return true;
    } catch (err) {
      return !isConnectionError(err);
    } finally {
      void client.unbind().catch(() => undefined);
    }
  }

  /** An ldapts client for one DC (not yet connected). */
  client(url: string, timeoutMs = this.opts.operationMs): Client {
    return new Client({
      url,
      timeout: timeoutMs,
      connectTimeout: this.opts.connectMs,
      // ldapts wraps the socket in TLS whenever tlsOptions is set, even for ldap://
      ...(url.toLowerCase().startsWith('ldaps://') ? { tlsOptions: this.tlsOptions } : {}),
      strictDN: false,
    });
  }

  markUp(url: string): void {
    const dc = this.dcs.find((d) => d.url === url);
    if (dc) {
      dc.up = true;
      dc.downUntil = 0;
    }
  }
}

export class PooledConnection {
  inFlight = 0;
  lastUsed = Date.now();
  broken = false;
  constructor(
    readonly client: Client,
    readonly url: string,
  ) {}
}

/** A connection-level failure (socket, TLS, timeout), as opposed to an LDAP result code from the DC. */
export function isConnectionError(err: unknown): boolean {
  return !(err instanceof ResultCodeError);
}

/** No answer within timeouts.operationMs on an open connection (ldapts: "<Request>: Operation timed out"). */
export function isTimeout(err: unknown): boolean {
  return err instanceof Error && / Operation timed out$/.test(err.message);
}

export class Pool {
  private readonly conns = new Set<PooledConnection>();
  private readonly idle: PooledConnection[] = []; // exclusive mode only
  private readonly waiters: Array<(c: PooledConnection | Error) => void> = [];
  private opening = 0;
  private readonly reaper: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly dcs: DcSet,
    readonly opts: PoolOptions,
  ) {
    // retire idle connections before AD's MaxConnIdleTime (900 s) cuts them under us
    this.reaper = setInterval(() => this.reap(), Math.min(30_000, Math.max(1000, dcs.opts.idleMs / 4)));
    this.reaper.unref();
  }

  /** in use / idle connections per domain controller */
  statsByDc(): Map<string, { inUse: number; idle: number }> {
    const out = new Map<string, { inUse: number; idle: number }>();
    for (const c of this.conns) {
      const s = out.get(c.url) ?? { inUse: 0, idle: 0 };
      if (c.inFlight > 0) s.inUse++;
      else s.idle++;
      out.set(c.url, s);
    }
    return out;
  }

  stats(): { size: number; inUse: number; idle: number; waiting: number } {
    let inUse = 0;
    for (const c of this.conns) if (c.inFlight > 0) inUse++;
    return { size: this.conns.size, inUse, idle: this.conns.size - inUse, waiting: this.waiters.length };
  }

  /** Run fn on a pooled connection. A connection-level error discards the connection and is rethrown (see fail). */
  async use<T>(fn: (c: PooledConnection) => Promise<T>): Promise<T> {
    const c = await this.acquire();
    try {
      const r = await fn(c);
      this.release(c);
      return r;
    } catch (err) {
      throw await this.fail(c, err);
    }
  }

  /**
   * Release a connection whose work failed; returns the error to rethrow. An operation that timed out
   * asks whether its DC still answers (DcSet.answers): if not, the DC is hung, as much down as one
   * refusing connections (back-off, its connections not reused, the next DC asked, offline binds may
   * apply); if it does, only this operation was slow: timeLimitExceeded, an answer, not an outage.
   */
  async fail(c: PooledConnection, err: unknown): Promise<unknown> {
    this.release(c, err);
    if (!isTimeout(err)) return err;
    if (await this.dcs.answers(c.url)) return new SlowOperationError(`${(err as Error).message}: the domain controller answers, but not this operation within timeouts.operationMs`);
    this.dcs.markDown(c.url, err);
    return err;
  }

  /** Lease a connection; every acquire is paired with one release (pass the error if the work failed). */
  async acquire(): Promise<PooledConnection> {
    if (this.closed) throw new UpstreamUnavailableError('upstream pool is closed');
    const pinned = this.dcs.pinned();
    if (this.opts.mode === 'shared') {
      let best: PooledConnection | undefined;
      let bestAny: PooledConnection | undefined;
      for (const c of this.conns) {
        if (c.broken || !c.client.isConnected) continue;
        if (!this.dcs.isUp(c.url)) {
          if (c.inFlight === 0) this.discard(c); // its DC failed since: not reused
          continue;
        }
        if (!bestAny || c.inFlight < bestAny.inFlight) bestAny = c;
        if ((!pinned || c.url === pinned) && (!best || c.inFlight < best.inFlight)) best = c;
      }
      // a full pool with no connection to the pinned DC serves from another rather than grow past its size
      if (!best && this.conns.size + this.opening >= this.opts.size) best = bestAny;
      if (best && (best.inFlight === 0 || this.conns.size + this.opening >= this.opts.size)) {
        best.inFlight++;
        return best;
      }
      const c = await this.open();
      c.inFlight++;
      return c;
    }
    if (pinned) {
      // reads after a write go to the DC that took it: an idle connection there, or a new one (an idle
      // connection to another DC makes room for it)
      const i = this.idle.findIndex((c) => c.url === pinned);
      if (i >= 0) this.idle.push(...this.idle.splice(i, 1)); // the pop below takes it
      else {
        if (this.conns.size + this.opening >= this.opts.size && this.idle.length > 0) this.discard(this.idle[0] as PooledConnection);
        if (this.conns.size + this.opening < this.opts.size) {
          const c = await this.open();
          c.inFlight++;
          return c;
        }
      }
    }
    while (this.idle.length > 0) {
      const c = this.idle.pop() as PooledConnection;
      if (!c.broken && c.client.isConnected && this.dcs.isUp(c.url)) {
        c.inFlight++;
        return c;
      }
      this.discard(c);
    }
    if (this.conns.size + this.opening < this.opts.size) {
      const c = await this.open();
      c.inFlight++;
      return c;
    }
    const c = await new Promise<PooledConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new UpstreamUnavailableError(`no ${this.opts.name} connection free within ${this.dcs.opts.operationMs} ms`));
      }, this.dcs.opts.operationMs);
      const waiter = (r: PooledConnection | Error) => {
        clearTimeout(timer);
        if (r instanceof Error) reject(r);
        else resolve(r);
      };
      this.waiters.push(waiter);
    });
    c.inFlight++;
    return c;
  }

  release(c: PooledConnection, err?: unknown): void {
    const failed = err !== undefined && isConnectionError(err);
    if (failed) c.broken = true;
    c.inFlight--;
    c.lastUsed = Date.now();
    // a broken connection is not used again; one that only timed out serves the operations still running
    // on it (a shared connection: other searches, paged listings) and goes when the last one ends
    if (c.broken && (c.inFlight <= 0 || (failed && !isTimeout(err)))) this.discard(c);
    if (this.opts.mode === 'shared' || c.broken) return;
    const w = this.waiters.shift();
    if (w) w(c);
    else this.idle.push(c);
  }

  private discard(c: PooledConnection): void {
    c.broken = true;
    const i = this.idle.indexOf(c);
    if (i >= 0) this.idle.splice(i, 1);
    if (!this.conns.delete(c)) return;
    void c.client.unbind().catch(() => undefined);
    // a waiter may now open a fresh connection in the freed slot
    const w = this.waiters.shift();
    if (w) this.open().then(w, w);
  }

  /** Open a connection on the first DC that answers; each failure puts that DC into back-off. */
  private async open(): Promise<PooledConnection> {
    this.opening++;
    try {
      let lastErr: unknown;
      for (const url of this.dcs.candidates()) {
        const client = this.dcs.client(url);
        try {
          if (this.dcs.opts.startTLS && url.toLowerCase().startsWith('ldap://')) await client.startTLS(this.dcs.tlsOptions);
          await client.bind(this.opts.bindDN, this.opts.bindPassword);
          this.dcs.markUp(url);
          if (this.closed) {
            // the pool closed while this connection was being made: it must not outlive the pool
            void client.unbind().catch(() => undefined);
            throw new UpstreamUnavailableError('upstream pool is closed');
          }
          const c = new PooledConnection(client, url);
          this.conns.add(c);
          return c;
        } catch (err) {
          lastErr = err;
          void client.unbind().catch(() => undefined);
          // a refused service bind is a configuration problem, not a dead DC: report it as it is
          if (!isConnectionError(err)) throw err;
          this.dcs.markDown(url, err);
        }
      }
      const msg = lastErr instanceof Error ? lastErr.message : 'no domain controller configured';
      throw new UpstreamUnavailableError(`no domain controller reachable: ${msg}`);
    } finally {
      this.opening--;
    }
  }

  private reap(): void {
    const cutoff = Date.now() - this.dcs.opts.idleMs;
    for (const c of [...this.conns]) {
      if (c.inFlight === 0 && (c.lastUsed < cutoff || !c.client.isConnected)) this.discard(c);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.reaper);
    for (const w of this.waiters.splice(0)) w(new UpstreamUnavailableError('upstream pool is closed'));
    await Promise.all([...this.conns].map((c) => c.client.unbind().catch(() => undefined)));
    this.conns.clear();
    this.idle.length = 0;
  }
}
