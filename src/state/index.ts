// The composition root of state: per-process stores (memory.ts), or stores on Redis (redis.ts) shared
// by every replica, with the behaviour `state.redis.onUnavailable` asks for while Redis is unreachable:
//   local   (default) each call goes to this process's own stores instead: the gateway goes on, its
//           limits then hold per replica (a warning when Redis goes, an info line when it is back, the
//           gauge ldap_gateway_state_backend_up{backend="redis"}, and /readyz say so). When Redis is back
//           the shared stores are used again; what was counted locally meanwhile stays local.
//   refuse  each call rejects with StateUnavailableError at once (binds are answered 52) and /readyz
//           answers 503, so that a load balancer sends clients to a replica that has its state.
// "Unreachable" is a closed connection or a command without an answer within commandTimeoutMs. Caches
// of directory answers (PER_PROCESS_STORES) are always per process.
import type { Logger } from 'pino';
import type Redis from 'ioredis';
import type { Config } from '../config/schema';
import type { Metrics } from '../observability/metrics';
import { memoryState } from './memory';
import { RedisBus, RedisStores, redisClient } from './redis';
import { PER_PROCESS_STORES, StateUnavailableError, type RateLimiter, type StateStores, type TtlMap, type WindowCounter } from './types';

export interface StateHealth {
  /** false: this replica should not be sent clients (refuse mode with Redis unreachable) */
  ready: boolean;
  /** said in /readyz's body, e.g. "degraded: state is per-process" */
  detail?: string;
}

export interface State extends StateStores {
  health(): StateHealth;
  close(): Promise<void>;
}

const isReplyError = (err: unknown) => (err as Error | undefined)?.name === 'ReplyError';

/** Whether Redis answers, from the connection's events and the commands' outcomes. */
class Availability {
  up = false;
  private probing: NodeJS.Timeout | undefined;
  private lastReplyWarning = 0;
  private announcedDown = false;
  /** close() was called: the connection's end is no outage */
  closed = false;

  constructor(
    private readonly client: Redis,
    private readonly log: Logger,
    private readonly mode: 'local' | 'refuse',
    private readonly probeMs: number,
  ) {
    client.on('ready', () => this.markUp());
    client.on('close', () => this.markDown('connection closed'));
    client.on('error', () => undefined); // every connection error is followed by 'close'; reconnects are ioredis's
  }

  markUp(): void {
    if (this.up) return;
    this.up = true;
    this.stopProbing();
    if (this.announcedDown) {
      this.announcedDown = false;
      this.log.info({ event: 'state_backend', backend: 'redis', up: true }, 'Redis is reachable again: lockout windows and rate limits are shared again');
    }
  }

  markDown(why: string): void {
    if (this.closed || (!this.up && this.announcedDown)) return;
    this.up = false;
    this.announcedDown = true;
    this.log.warn(
      { event: 'state_backend', backend: 'redis', up: false, onUnavailable: this.mode, err: why },
      this.mode === 'local' ? 'Redis is unreachable: going on with per-process state (the lockout windows and rate limits hold per replica until it is back)' : 'Redis is unreachable: binds are refused (52) until it is back',
    );
    // a connection that stays open but does not answer (a stopped server) never says 'ready' again
    if (this.client.status === 'ready') this.startProbing();
  }

  /** A command failed: Redis answered with an error (it is there), or it did not answer at all. */
  failed(err: unknown): void {
    if (isReplyError(err)) {
      if (Date.now() - this.lastReplyWarning > 60_000) {
        this.lastReplyWarning = Date.now();
        this.log.warn({ event: 'state_backend', backend: 'redis', err: (err as Error).message }, 'Redis refused a command: that call used per-process state');
      }
      return;
    }
    this.markDown((err as Error | undefined)?.message ?? String(err));
  }

  private startProbing(): void {
    if (this.probing) return;
    this.probing = setInterval(() => {
      if (this.client.status !== 'ready') return; // 'ready' again will mark it up
      this.client.ping().then(
        () => this.markUp(),
        () => undefined,
      );
    }, this.probeMs);
    this.probing.unref();
  }

  stopProbing(): void {
    if (this.probing) clearInterval(this.probing);
    this.probing = undefined;
  }

  /** The shared call while Redis is up; otherwise (or if it fails) the local one, or a refusal. */
  async run<T>(shared: () => Promise<T>, local: () => Promise<T>): Promise<T> {
    if (this.up) {
      try {
        return await shared();
      } catch (err) {
        this.failed(err);
      }
    }
    if (this.mode === 'refuse') throw new StateUnavailableError();
    return local();
  }
}

function waitReady(client: Redis, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), ms);
    client.on('ready', onReady);
  });
}

async function quit(client: Redis): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.quit().catch(() => undefined), new Promise((r) => (timer = setTimeout(r, 1000)))]);
  clearTimeout(timer);
  client.disconnect();
}

/** Stores made elsewhere (a cluster worker's, through its supervisor): no backend of their own to watch or close. */
export function asState(stores: StateStores): State {
  return { ...stores, health: () => ({ ready: true }), close: async () => undefined };
}

/** Memory stores, or Redis stores with their fallback; the gauge ldap_gateway_state_backend_up. */
export async function buildState(cfg: Config, log: Logger, metrics: Metrics): Promise<State> {
  const local = memoryState();
  const r = cfg.state.redis;
  if (!r) return asState(local);

  const client = redisClient(r, 'commands');
  const subscriber = redisClient(r, 'subscriber');
  subscriber.on('error', () => undefined); // its reconnects are ioredis's too; the commands connection reports
  const stores = new RedisStores(client, r.keyPrefix);
  const availability = new Availability(client, log, r.onUnavailable, Math.max(250, r.commandTimeoutMs));
  const bus = new RedisBus(client, subscriber, r.keyPrefix, (err) => availability.failed(err));
  metrics.gauge('ldap_gateway_state_backend_up', 'Whether the shared state backend answers (1) or this process uses its own state or refuses binds (0)', ['backend'], (g) => g.set({ backend: 'redis' }, availability.up ? 1 : 0));

  if (await waitReady(client, r.connectTimeoutMs)) availability.markUp();
  else availability.markDown(`no connection within ${r.connectTimeoutMs} ms`);

  return {
    ttlMap<V>(name: string, o: Parameters<StateStores['ttlMap']>[1]): TtlMap<V> {
      const mine = local.ttlMap<V>(name, o as never);
      if (PER_PROCESS_STORES.has(name)) return mine;
      const shared = stores.ttlMap<V>(name, o);
      return {
        get: (key) => availability.run(() => shared.get(key), () => mine.get(key)),
        set: (key, value, ttlMs) => availability.run(() => shared.set(key, value, ttlMs), () => mine.set(key, value, ttlMs)),
        delete: (key) => availability.run(() => shared.delete(key), () => mine.delete(key)),
      };
    },
    windowCounter(name, o): WindowCounter {
      const mine = local.windowCounter(name, o);
      const shared = stores.windowCounter(name, o);
      return {
        add: (key, now) => availability.run(() => shared.add(key, now), () => mine.add(key, now)),
        count: (key, now) => availability.run(() => shared.count(key, now), () => mine.count(key, now)),
        clear: (key) => availability.run(() => shared.clear(key), () => mine.clear(key)),
      };
    },
    rateLimiter(name, o): RateLimiter {
      const mine = local.rateLimiter(name, o);
      const shared = stores.rateLimiter(name, o);
      return { take: (key, now) => availability.run(() => shared.take(key, now), () => mine.take(key, now)) };
    },
    bus,
    remote: true,
    health(): StateHealth {
      if (availability.up) return { ready: true };
      return r.onUnavailable === 'local' ? { ready: true, detail: 'degraded: state is per-process (Redis is unreachable)' } : { ready: false, detail: 'Redis is unreachable: binds are refused' };
    },
    async close() {
      availability.closed = true;
      availability.stopProbing();
      await Promise.all([quit(client), quit(subscriber)]);
    },
  };
}
