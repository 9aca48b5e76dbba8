// Host-wide state for `workers: N` without Redis: every worker keeps a replica of the limits' stores
// (lockout windows, the wrong-password memory, bind rate, provisioning dedupe, renames), reads it
// locally, and sends each update to the supervisor, which applies it to every other worker. So a limit
// holds for the whole host (twenty wrong binds spread over the workers count as twenty) without a round
// trip on a bind's path: a successful bind of an account with no recent failures sends nothing at all.
// The replicas agree within the time an IPC message takes (well under a millisecond here); two
// failures of one account at the same instant on two workers may each see the other's a moment late.
// A worker that starts (or replaces a dead one) gets the supervisor's copy first.
// Caches stay each worker's own (they are not limits; a write's invalidation reaches every worker over
// the bus): the search cache and the bind-name look-ups.
import type { Channel } from './ipc';
import { MemoryBus, memoryState } from '../state/memory';
import { PER_PROCESS_STORES, type Bus, type RateLimiter, type StateStores, type TtlMap, type TtlMapOptions, type WindowCounter } from '../state/types';

/** One update of a replicated store, as it travels: which store (kind, name, options), which call. */
export type Update = [kind: 'ttlMap' | 'windowCounter' | 'rateLimiter', name: string, opts: unknown, method: string, args: unknown[]];

/** Stores created on first use from the update's description, so a replica needs no prior set-up. */
export class Replica {
  private readonly stores = memoryState();
  private readonly made = new Map<string, Record<string, (...a: unknown[]) => Promise<unknown>>>();
  /** every update applied so far, for a worker that starts later (bounded: old ones age out) */
  private readonly log: Array<{ at: number; u: Update }> = [];

  constructor(private readonly keepMs = 0) {}

  store(kind: Update[0], name: string, opts: unknown): Record<string, (...a: unknown[]) => Promise<unknown>> {
    const id = `${kind}:${name}`;
    let s = this.made.get(id);
    if (!s) {
      if (kind === 'ttlMap') s = this.stores.ttlMap(name, opts as TtlMapOptions<unknown>) as never;
      else if (kind === 'windowCounter') s = this.stores.windowCounter(name, opts as never) as never;
      else s = this.stores.rateLimiter(name, opts as never) as never;
      this.made.set(id, s as Record<string, (...a: unknown[]) => Promise<unknown>>);
    }
    return s as Record<string, (...a: unknown[]) => Promise<unknown>>;
  }

  async apply(u: Update): Promise<void> {
    const [kind, name, opts, method, args] = u;
    const store = this.store(kind, name, opts);
    const fn = store[method];
    if (typeof fn !== 'function') throw new Error(`cluster: ${kind} has no method ${method}`);
    await fn.apply(store, args);
    if (this.keepMs > 0) {
      const now = Date.now();
      this.log.push({ at: now, u });
      while (this.log.length > 0 && (this.log[0] as { at: number }).at < now - this.keepMs) this.log.shift();
      if (this.log.length > 200_000) this.log.splice(0, this.log.length - 200_000);
    }
  }

  /** The updates still within the window, oldest first: replayed, they rebuild the state. */
  snapshot(): Update[] {
    return this.log.map((e) => e.u);
  }
}

/** The worker's view: host-wide stores replicated (reads local, updates sent on), caches local, the bus through the supervisor. */
export function workerState(ch: Channel, publish: (topic: string, message: string) => void): StateStores & { bus: Bus; deliver(topic: string, message: string): void; applyRemote(u: Update): Promise<void>; replica: Replica } {
  const replica = new Replica();
  const caches = memoryState();
  const bus = new MemoryBus();
  // an update: applied here at once, then sent to the supervisor for the other workers
  const update = async (u: Update): Promise<void> => {
    await replica.apply(u);
    ch.post('update', [u]);
  };
  return {
    replica,
    ttlMap<V>(name: string, o: TtlMapOptions<V>): TtlMap<V> {
      if (PER_PROCESS_STORES.has(name)) return caches.ttlMap(name, o);
      const opts = { max: o.max, ttlMs: o.ttlMs };
      const mine = replica.store('ttlMap', name, opts) as unknown as TtlMap<V>;
      return {
        get: (key) => mine.get(key),
        set: (key, value, ttlMs) => update(['ttlMap', name, opts, 'set', [key, value, ttlMs]]),
        delete: (key) => update(['ttlMap', name, opts, 'delete', [key]]),
      };
    },
    windowCounter(name, o): WindowCounter {
      const mine = replica.store('windowCounter', name, o) as unknown as WindowCounter;
      return {
        // the time is the worker's, so every replica counts the event at the same instant
        add: (key, now = Date.now()) => update(['windowCounter', name, o, 'add', [key, now]]),
        count: (key, now) => mine.count(key, now),
        // the common case, a success with no failures before it, sends nothing
        clear: async (key) => {
          if ((await mine.count(key)) > 0) await update(['windowCounter', name, o, 'clear', [key]]);
        },
      };
    },
    rateLimiter(name, o): RateLimiter {
      // a rate of 0 is no limit: nothing to share
      if (o.ratePerSec <= 0) return { take: async () => true };
      const mine = replica.store('rateLimiter', name, o) as unknown as RateLimiter;
      return {
        take: async (key, now = Date.now()) => {
          const ok = await mine.take(key, now);
          // the token is taken on every replica (a refused take changes nothing there either)
          if (ok) ch.post('update', [['rateLimiter', name, o, 'take', [key, now]] satisfies Update]);
          return ok;
        },
      };
    },
    bus: {
      publish: async (topic, message) => publish(topic, message),
      subscribe: (topic, fn) => bus.subscribe(topic, fn),
    },
    deliver: (topic, message) => bus.deliver(topic, message),
    applyRemote: (u) => replica.apply(u),
  };
}

/** A worker's view of the other workers' connections per address, kept from their announcements. */
export class PeerConnections {
  private readonly others = new Map<number, Map<string, number>>();
  constructor(private readonly announce: (ip: string, n: number) => void) {}

  elsewhere(ip: string): number {
    let n = 0;
    for (const m of this.others.values()) n += m.get(ip) ?? 0;
    return n;
  }

  mine(ip: string, n: number): void {
    this.announce(ip, n);
  }

  /** another worker's count (n undefined with ip undefined: that worker is gone) */
  heard(worker: number, ip?: string, n?: number): void {
    if (ip === undefined) return void this.others.delete(worker);
    let m = this.others.get(worker);
    if (!m) this.others.set(worker, (m = new Map()));
    if (!n) m.delete(ip);
    else m.set(ip, n);
  }
}
