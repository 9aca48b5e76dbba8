// What `ldap-gateway outbox list|retry|purge` works on: the Redis outbox when state.redis is configured
// (every replica's events; the local outbox beside it holds only what waits for Redis), else the local
// SQLite outbox.
import type { Config } from '../config/schema';
import { Outbox, type StoredEvent } from './outbox';
import { outboxRedis } from './redis-client';
import { RedisOutboxAdmin } from './redis-outbox';

export interface OutboxAdmin {
  /** where the events are: 'redis' or 'local' */
  where: 'redis' | 'local';
  list(): Promise<StoredEvent[]>;
  /** local: events waiting in the local outbox for Redis (redis only) */
  stats(): Promise<{ pending: number; dead: number; oldestPendingAgeSeconds: number; local?: number }>;
  retry(ids: number[]): Promise<number>;
  purge(all?: boolean): Promise<number>;
  close(): Promise<void>;
}

export async function openOutboxAdmin(cfg: Config): Promise<OutboxAdmin> {
  const local = new Outbox(cfg.provisioning.outbox);
  const rc = cfg.state.redis;
  if (!rc) {
    return {
      where: 'local',
      list: async () => local.list(),
      stats: async () => local.stats(),
      retry: async (ids) => local.retry(ids),
      purge: async (all) => local.purge(all),
      close: () => local.close(),
    };
  }
  // a command line tool: fail (after connectTimeoutMs) instead of reconnecting forever
  const r = outboxRedis(rc, { lazyConnect: true, retryStrategy: () => null });
  try {
    await r.connect();
  } catch (err) {
    r.disconnect();
    await local.close();
    throw new Error(`Redis (${rc.url.replace(/\/\/[^@/]*@/, '//')}) is unreachable: ${(err as Error).message}`);
  }
  const admin = new RedisOutboxAdmin(r, rc.keyPrefix, local);
  return {
    where: 'redis',
    list: () => admin.list(),
    stats: () => admin.stats(),
    retry: (ids) => admin.retry(ids),
    purge: (all) => admin.purge(all),
    async close() {
      await r.quit().catch(() => r.disconnect());
      await local.close();
    },
  };
}
