// The outbox's own Redis connection (state.redis): bounded in every direction, so that a bind never
// waits on Redis longer than commandTimeoutMs: no offline queue (a command while disconnected fails at
// once), no resending of a command caught by a dropped connection, reconnects forever with back-off.
// Auto-pipelining: concurrent appends share one round trip (and, with appendfsync always, one fsync).
import { readFileSync } from 'node:fs';
import Redis, { type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema';

export type RedisSettings = NonNullable<Config['state']['redis']>;

export function outboxRedis(o: RedisSettings, extra: RedisOptions = {}): Redis {
  const secure = o.url.startsWith('rediss:') || o.tls !== undefined;
  const options: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    commandTimeout: o.commandTimeoutMs,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    maxRetriesPerRequest: 0,
    retryStrategy: (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    lazyConnect: false,
    connectionName: 'ldap-gateway-outbox',
    ...(o.password ? { password: o.password } : {}),
    ...(secure ? { tls: { ...(o.tls?.ca ? { ca: [readFileSync(o.tls.ca)] } : {}), rejectUnauthorized: o.tls?.verify ?? true } } : {}),
    ...extra,
  };
  const r = new Redis(o.url, options);
  r.on('error', () => undefined); // reported by the outbox (once per outage), reconnects on its own
  return r;
}
