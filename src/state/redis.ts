// The state interfaces on Redis (ioredis), so that every replica sees the same lockout windows, bind
// rates, dedupe window and remembered renames, and every replica hears a write's invalidation.
//
// Keys: `<keyPrefix><store>:<key>`, each with a time to live, so Redis holds only what is still in its
// window: a window counter lives windowMs after its last event, a token bucket until it would be full
// again, a TTL map entry for its TTL. Nothing else bounds Redis memory (the in-memory `max` entries do
// not apply); see config/README.md for the sizes. Window events are stamped with the caller's clock
// (the replicas' clocks should agree within a small part of the window: NTP).
//
// When Redis is unreachable (a connection error, or no answer within commandTimeoutMs) the calls go to
// the fallback (index.ts: per-process stores, or a refusal) until the connection is ready again; ioredis
// reconnects on its own. Caches of directory answers (PER_PROCESS_STORES) never go to Redis.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Redis, { type RedisOptions } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Bus, RateLimiter, TtlMap, TtlMapOptions, WindowCounter } from './types';
import { MemoryBus } from './memory';

export interface RedisConnectionOptions {
  url: string;
  password?: string;
  tls?: { ca?: string; verify: boolean };
  connectTimeoutMs: number;
  commandTimeoutMs: number;
}

/** Bounded everything: connects within connectTimeoutMs, answers within commandTimeoutMs or fails, reconnects forever with back-off. */
export function redisClient(o: RedisConnectionOptions, role: 'commands' | 'subscriber'): Redis {
  const secure = o.url.startsWith('rediss:') || o.tls !== undefined;
  const options: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    // the subscriber only ever sends (re)subscriptions: they wait for the connection
    ...(role === 'commands' ? { commandTimeout: o.commandTimeoutMs, enableOfflineQueue: false, enableAutoPipelining: true } : {}),
    // a command caught by a dropped connection fails at once (the caller falls back), it is not resent
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    autoResubscribe: true,
    lazyConnect: false,
    ...(o.password ? { password: o.password } : {}),
    ...(secure ? { tls: { ...(o.tls?.ca ? { ca: [readFileSync(o.tls.ca)] } : {}), rejectUnauthorized: o.tls?.verify ?? true } } : {}),
  };
  return new Redis(o.url, options);
}

// Every script touches only its KEYS[1], so it runs atomically on one Redis (and on one cluster slot).
const WINDOW_ADD = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], now, ARGV[4])
local n = redis.call('ZCARD', KEYS[1])
if n > cap then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1) end
redis.call('PEXPIRE', KEYS[1], window)
return n`;

const BUCKET_TAKE = `
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local b = redis.call('HMGET', KEYS[1], 't', 'a')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then tokens = burst; at = now end
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed / 1000 * rate)
local ok = 0
if tokens >= 1 then tokens = tokens - 1; ok = 1 end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'a', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], ttl)
return ok`;

type Script = (key: string, ...args: Array<string | number>) => Promise<unknown>;

/** The stores on one connection; every call may reject (the caller decides what that means). */
export class RedisStores {
  private readonly windowAdd: Script;
  private readonly bucketTake: Script;
  /** makes two events in the same millisecond two members of the sorted set */
  private readonly tag = randomBytes(6).toString('base64url');
  private seq = 0;

  constructor(
    readonly client: Redis,
    private readonly keyPrefix: string,
  ) {
    client.defineCommand('ldapgwWindowAdd', { lua: WINDOW_ADD, numberOfKeys: 1 });
    client.defineCommand('ldapgwBucketTake', { lua: BUCKET_TAKE, numberOfKeys: 1 });
    const commands = client as unknown as Record<string, Script>;
    this.windowAdd = (commands.ldapgwWindowAdd as Script).bind(client);
    this.bucketTake = (commands.ldapgwBucketTake as Script).bind(client);
  }

  key(store: string, key: string): string {
    return `${this.keyPrefix}${store}:${key}`;
  }

  ttlMap<V>(name: string, o: Pick<TtlMapOptions<V>, 'ttlMs'>): TtlMap<V> {
    const k = (key: string) => this.key(name, key);
    return {
      get: async (key) => {
        const text = await this.client.get(k(key));
        return text === null ? undefined : (JSON.parse(text) as V);
      },
      set: async (key, value, ttlMs) => {
        await this.client.set(k(key), JSON.stringify(value), 'PX', Math.max(1, Math.round(ttlMs ?? o.ttlMs)));
      },
      delete: async (key) => {
        await this.client.del(k(key));
      },
    };
  }

  windowCounter(name: string, o: { windowMs: number; cap: number }): WindowCounter {
    const k = (key: string) => this.key(name, key);
    const windowMs = Math.max(1, Math.round(o.windowMs));
    const cap = Math.max(1, o.cap);
    // keys this process just counted as empty: their next clear() is a no-op, not a round trip (a
    // success clears the windows it counted a moment before). Events another replica added in between
    // are kept, which only makes the shield stricter. One-shot, and only for 10 s.
    const empty = new LRUCache<string, true>({ max: 10_000, ttl: 10_000 });
    return {
      add: async (key, now = Date.now()) => {
        empty.delete(key);
        await this.windowAdd(k(key), now, windowMs, cap, `${now}:${this.tag}:${(this.seq = (this.seq + 1) % 1e9)}`);
      },
      // events strictly inside (now - windowMs, +inf), as memory.ts counts them; read-only, no script
      count: async (key, now = Date.now()) => {
        const n = Number(await this.client.zcount(k(key), `(${now - windowMs}`, '+inf'));
        if (n === 0) empty.set(key, true);
        else empty.delete(key);
        return n;
      },
      clear: async (key) => {
        if (empty.delete(key)) return;
        await this.client.del(k(key));
      },
    };
  }

  rateLimiter(name: string, o: { ratePerSec: number; burst: number }): RateLimiter {
    const k = (key: string) => this.key(name, key);
    // an absent bucket is a full one: keep a bucket until it would have refilled
    const ttlMs = o.ratePerSec > 0 ? Math.max(1000, Math.ceil((o.burst / o.ratePerSec) * 1000) + 1000) : 1000;
    return {
      take: async (key, now = Date.now()) => {
        if (o.ratePerSec <= 0) return true;
        return Number(await this.bucketTake(k(key), now, o.ratePerSec, o.burst, ttlMs)) === 1;
      },
    };
  }
}

/** Every message carries who sent it: a process hears its own messages at once, in-process, not back from Redis. */
const SEP = '\n';

/**
 * Pub/sub on its own connection (a subscribed connection can send nothing else), channel
 * `<keyPrefix>bus:<topic>`. Subscribers in this process hear a publish synchronously; other replicas
 * hear it from Redis. A gap in the subscription (the connection was lost: messages may be missing) is
 * told to every subscriber as the message RESYNC.
 */
export class RedisBus implements Bus {
  static readonly RESYNC = '';
  private readonly local = new MemoryBus();
  private readonly origin = randomBytes(9).toString('base64url');
  private readonly channels = new Map<string, string>(); // channel -> topic
  private lostSubscription = false;

  constructor(
    private readonly publisher: Redis,
    private readonly subscriber: Redis,
    private readonly keyPrefix: string,
    private readonly onError: (err: Error) => void,
  ) {
    subscriber.on('message', (channel: string, text: string) => {
      const topic = this.channels.get(channel);
      const at = text.indexOf(SEP);
      if (topic === undefined || at < 0 || text.slice(0, at) === this.origin) return;
      this.local.deliver(topic, text.slice(at + 1));
    });
    subscriber.on('close', () => {
      if (this.channels.size === 0 || this.lostSubscription) return;
      this.lostSubscription = true;
      // messages sent from now on are lost: what relies on hearing them forgets now, and again when back
      for (const topic of this.channels.values()) this.local.deliver(topic, RedisBus.RESYNC);
    });
    subscriber.on('ready', () => {
      if (!this.lostSubscription) return;
      this.lostSubscription = false;
      for (const topic of this.channels.values()) this.local.deliver(topic, RedisBus.RESYNC);
    });
  }

  private channel(topic: string): string {
    return `${this.keyPrefix}bus:${topic}`;
  }

  async publish(topic: string, message: string): Promise<void> {
    this.local.deliver(topic, message);
    try {
      await this.publisher.publish(this.channel(topic), `${this.origin}${SEP}${message}`);
    } catch (err) {
      this.onError(err as Error);
    }
  }

  subscribe(topic: string, fn: (message: string) => void): () => void {
    const channel = this.channel(topic);
    if (!this.channels.has(channel)) {
      this.channels.set(channel, topic);
      this.subscriber.subscribe(channel).catch((err: Error) => this.onError(err));
    }
    return this.local.subscribe(topic, fn);
  }
}
