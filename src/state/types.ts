// The small interfaces behind which the gateway keeps state that several processes or replicas may
// share: a TTL map, a sliding-window counter, a rate limiter, and an invalidation bus. Handlers see only
// these; which implementation backs them (memory.ts: one process; redis.ts: every replica on one Redis)
// is chosen at the composition root (index.ts). Every call is asynchronous, so a networked
// implementation fits without touching the callers.

export interface TtlMap<V> {
  get(key: string): Promise<V | undefined>;
  /** ttlMs overrides the map's default time to live for this entry */
  set(key: string, value: V, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Events per key within a sliding window of time. */
export interface WindowCounter {
  add(key: string, now?: number): Promise<void>;
  count(key: string, now?: number): Promise<number>;
  clear(key: string): Promise<void>;
}

/** A token bucket per key: take() is false when the key is over its rate. */
export interface RateLimiter {
  take(key: string, now?: number): Promise<boolean>;
}

export interface TtlMapOptions<V> {
  /** entries kept at most (the least recently used go first) */
  max: number;
  ttlMs: number;
  /** bound on the sum of sizeOf over the entries */
  maxBytes?: number;
  sizeOf?: (v: V) => number;
  /** an entry was pushed out by the bounds (not expired, not deleted) */
  onEvict?: () => void;
}

/**
 * Caches of what the directory answered (search results, bind-name look-ups): every process keeps its
 * own, within the bounds of TtlMapOptions, also when a shared backend is configured. They are not limits;
 * a write through another process or replica reaches them as an invalidation on the bus.
 */
export const PER_PROCESS_STORES: ReadonlySet<string> = new Set(['search-cache', 'bind-names']);

/** Messages to every process sharing the state (the writer's own process included). */
export interface Bus {
  /** resolves once handed to the backend; a shared backend that is down drops the message for other replicas */
  publish(topic: string, message: string): Promise<void>;
  /** returns the unsubscribe function */
  subscribe(topic: string, fn: (message: string) => void): () => void;
}

/**
 * A shared backend that is unreachable, with `onUnavailable: refuse`: the call was not carried out.
 * The bind flow answers it with 52 (unavailable).
 */
export class StateUnavailableError extends Error {
  constructor(message = 'the shared state (Redis) is unavailable') {
    super(message);
    this.name = 'StateUnavailableError';
  }
}

export interface StateStores {
  /** name: what the store holds (a key prefix for a shared backend) */
  ttlMap<V>(name: string, o: TtlMapOptions<V>): TtlMap<V>;
  windowCounter(name: string, o: { windowMs: number; /** events kept per key */ cap: number; max: number }): WindowCounter;
  rateLimiter(name: string, o: { ratePerSec: number; burst: number; max: number }): RateLimiter;
  bus: Bus;
  /** reads cross the network (Redis): worth remembering answers that the bus says are still true */
  remote?: boolean;
}

/**
 * A TtlMap whose entries can all be forgotten at once (after a write changed what they remember): keys
 * carry a generation, and forgetAll() starts a new one; the old entries age out of the inner map.
 */
export class ForgetfulMap<V> implements TtlMap<V> {
  private generation = 0;
  constructor(private readonly inner: TtlMap<V>) {}
  private k = (key: string) => `${this.generation}|${key}`;
  /** The generation now: a value computed from a look-up that starts now is stored only in it (set's `since`). */
  get now(): number {
    return this.generation;
  }
  get(key: string): Promise<V | undefined> {
    return this.inner.get(this.k(key));
  }
  /** since: the generation when the value's look-up began; a value computed before a forgetAll() is not kept */
  async set(key: string, value: V, ttlMs?: number, since = this.generation): Promise<void> {
    if (since !== this.generation) return;
    return this.inner.set(this.k(key), value, ttlMs);
  }
  delete(key: string): Promise<void> {
    return this.inner.delete(this.k(key));
  }
  forgetAll(): void {
    this.generation++;
  }
}
