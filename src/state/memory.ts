// In-process implementations of the state interfaces, on lru-cache: bounded in entries (and bytes
// where asked), expiring by time. One process's view only.
import { LRUCache } from 'lru-cache';
import type { Bus, RateLimiter, StateStores, TtlMap, TtlMapOptions, WindowCounter } from './types';

class MemoryTtlMap<V extends object | string | number | boolean> implements TtlMap<V> {
  private readonly lru: LRUCache<string, V>;
  constructor(o: TtlMapOptions<V>) {
    const sizeOf = o.sizeOf;
    this.lru = new LRUCache<string, V>({
      max: o.max,
      ttl: Math.max(1, o.ttlMs),
      ...(o.maxBytes && sizeOf ? { maxSize: o.maxBytes, sizeCalculation: (v: V) => Math.max(1, sizeOf(v)) } : {}),
      ...(o.onEvict ? { dispose: (_v: V, _k: string, reason: string) => reason === 'evict' && o.onEvict?.() } : {}),
    });
  }
  async get(key: string): Promise<V | undefined> {
    return this.lru.get(key);
  }
  async set(key: string, value: V, ttlMs?: number): Promise<void> {
    this.lru.set(key, value, ttlMs ? { ttl: ttlMs } : undefined);
  }
  async delete(key: string): Promise<void> {
    this.lru.delete(key);
  }
}

/** Event times within the window, oldest first; at most `cap` kept per key. */
class MemoryWindowCounter implements WindowCounter {
  private readonly lru: LRUCache<string, number[]>;
  constructor(private readonly o: { windowMs: number; cap: number; max: number }) {
    this.lru = new LRUCache({ max: o.max, ttl: Math.max(1, o.windowMs), updateAgeOnGet: false });
  }
  async add(key: string, now = Date.now()): Promise<void> {
    const times = this.lru.get(key) ?? [];
    times.push(now);
    if (times.length > this.o.cap) times.shift();
    this.lru.set(key, times);
  }
  async count(key: string, now = Date.now()): Promise<number> {
    const times = this.lru.get(key);
    if (!times) return 0;
    while (times.length > 0 && (times[0] as number) <= now - this.o.windowMs) times.shift();
    return times.length;
  }
  async clear(key: string): Promise<void> {
    this.lru.delete(key);
  }
}

class MemoryRateLimiter implements RateLimiter {
  private readonly lru: LRUCache<string, { tokens: number; at: number }>;
  constructor(private readonly o: { ratePerSec: number; burst: number; max: number }) {
    this.lru = new LRUCache({ max: o.max, ttl: 60_000 });
  }
  async take(key: string, now = Date.now()): Promise<boolean> {
    if (this.o.ratePerSec <= 0) return true;
    const b = this.lru.get(key) ?? { tokens: this.o.burst, at: now };
    b.tokens = Math.min(this.o.burst, b.tokens + ((now - b.at) / 1000) * this.o.ratePerSec);
    b.at = now;
    const ok = b.tokens >= 1;
    if (ok) b.tokens -= 1;
    this.lru.set(key, b);
    return ok;
  }
}

/** Delivered to this process's subscribers, synchronously, before publish() resolves. */
export class MemoryBus implements Bus {
  private readonly subs = new Map<string, Set<(m: string) => void>>();
  async publish(topic: string, message: string): Promise<void> {
    this.deliver(topic, message);
  }
  subscribe(topic: string, fn: (message: string) => void): () => void {
    let set = this.subs.get(topic);
    if (!set) this.subs.set(topic, (set = new Set()));
    set.add(fn);
    return () => void set.delete(fn);
  }
  deliver(topic: string, message: string): void {
    for (const fn of [...(this.subs.get(topic) ?? [])]) {
      try {
        fn(message);
      } catch {
        // one subscriber's failure does not keep the message from the others
      }
    }
  }
}

export function memoryState(): StateStores {
  return {
    bus: new MemoryBus(),
    ttlMap: <V>(_name: string, o: TtlMapOptions<V>) => new MemoryTtlMap(o as TtlMapOptions<V & object>) as unknown as TtlMap<V>,
    windowCounter: (_name, o) => new MemoryWindowCounter(o),
    rateLimiter: (_name, o) => new MemoryRateLimiter(o),
  };
}
