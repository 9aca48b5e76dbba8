// The provisioning outbox shared by every replica, on Redis (state.redis configured). An event is
// recorded in Redis before the bind is acknowledged (Redis answers once the write is in its AOF: with
// appendfsync always, once it is fsync'd), and delivered exactly once by whichever replica takes it, also
// when the recording replica is killed and never comes back: nothing depends on one host's disk.
//
// Keys (one hash tag, so every script touches one cluster slot): <prefix>{outbox}:…
//   seq       INCR counter: the numeric event ids (webhook delivery ids, `outbox retry --id N`)
//   ev        hash id -> the event as recorded (JSON: createdAt, kind, subject, payload); present while
//             the event is pending or dead, deleted atomically with its acknowledgement
//   meta      hash id -> delivery bookkeeping (JSON: attempts, nextAt, lastError, deadReason)
//   q         stream of work (fields: id); consumer group "delivery" shared by the replicas: XREADGROUP
//             takes work, XACK + XDEL after delivery, XAUTOCLAIM takes entries a replica has held longer
//             than the lease without a heartbeat (a dead replica's)
//   retry     zset id by nextAt: waiting for a retry after a failed attempt (moved back into q when due)
//   pending   zset id by createdAt: every event not yet delivered (stats, supersede)
//   dead      zset id by time: dead letters, kept for `outbox list|retry|purge`
//   deadmarks hash "subject\0reason" -> id: a dead letter's reason is reported once per subject
//   latest    hash subject -> "id|createdAt": a newer bind.success of a user replaces the pending one
//   eid:<uuid> string, 24 h: the event's own id, recorded with it: an event handed over twice (from the
//             local outbox after Redis was unreachable, or after an answer that timed out) is stored once
//
// Idempotency: a taken entry whose event is no longer in `ev` (delivered, superseded or purged meanwhile)
// is acknowledged without delivery. An event is acknowledged only after the target answered, so a replica
// dying between the answer and the acknowledgement makes another replica deliver it again (Defguard's
// delivery finds the user and changes nothing; webhooks carry the stable id).
//
// Redis unreachable: append() writes to the local SQLite outbox (outbox.ts) instead, and those events are
// handed over to Redis (then deleted locally) once it answers again. Delivery waits for Redis.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import { Outbox, type EventKind, type OutboxEvent, type StoredEvent } from './outbox';

export const GROUP = 'delivery';

/** how long a replica may hold a taken event without a heartbeat before another replica takes it */
export const DEFAULT_LEASE_MS = 10_000;
/** the longest a replica waits before looking for work recorded by others */
const POLL_MS = 1000;
const EID_TTL_MS = 24 * 3600_000;

export function outboxKeys(prefix: string) {
  const k = (n: string) => `${prefix}{outbox}:${n}`;
  return { seq: k('seq'), ev: k('ev'), meta: k('meta'), q: k('q'), retry: k('retry'), pending: k('pending'), dead: k('dead'), deadmarks: k('deadmarks'), latest: k('latest'), eid: (id: string) => k(`eid:${id}`) };
}
export type OutboxKeys = ReturnType<typeof outboxKeys>;

// KEYS: seq ev meta q pending retry latest eidKey; ARGV: kind subject record createdAt supersede eidTtl
// returns the event's id (0: a newer state of the same user is recorded already, so this one is dropped)
const APPEND = `
local got = redis.call('GET', KEYS[8])
if got then return tonumber(got) end
local created = tonumber(ARGV[4])
local supersede = ARGV[5] == '1' and ARGV[1] == 'bind.success'
if supersede then
  local prev = redis.call('HGET', KEYS[7], ARGV[2])
  if prev then
    local sep = string.find(prev, '|', 1, true)
    local pid = string.sub(prev, 1, sep - 1)
    if tonumber(string.sub(prev, sep + 1)) > created then
      redis.call('SET', KEYS[8], '0', 'PX', ARGV[6])
      return 0
    end
    if redis.call('ZSCORE', KEYS[5], pid) then
      redis.call('HDEL', KEYS[2], pid)
      redis.call('HDEL', KEYS[3], pid)
      redis.call('ZREM', KEYS[5], pid)
      redis.call('ZREM', KEYS[6], pid)
    end
  end
end
local id = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('ZADD', KEYS[5], created, id)
redis.call('XADD', KEYS[4], '*', 'id', id)
if supersede then redis.call('HSET', KEYS[7], ARGV[2], id .. '|' .. created) end
redis.call('SET', KEYS[8], id, 'PX', ARGV[6])
return id`;

// KEYS: q ev meta pending retry; ARGV: group streamId id
const DONE = `
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
local had = redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
return had`;

// KEYS: q ev meta retry; ARGV: group streamId id meta nextAt
const RETRY = `
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
return 1`;

// KEYS: q ev meta pending dead deadmarks; ARGV: group streamId id meta now mark
const DEAD = `
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
if redis.call('HEXISTS', KEYS[2], ARGV[3]) == 0 then return 0 end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
redis.call('ZREM', KEYS[4], ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[3])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[6], ARGV[6], ARGV[3]) end
return 1`;

// KEYS: retry q; ARGV: now limit — retries that are due go back into the stream
const PROMOTE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('XADD', KEYS[2], '*', 'id', id)
end
return #ids`;

// KEYS: dead pending q meta ev; ARGV: now id... (none: every dead letter) — dead letters back to pending
const REVIVE = `
local ids = {}
if #ARGV > 1 then for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end else ids = redis.call('ZRANGE', KEYS[1], 0, -1) end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[1], id) == 1 then
    local rec = redis.call('HGET', KEYS[5], id)
    local created = tonumber(ARGV[1])
    if rec then created = cjson.decode(rec)['createdAt'] or created end
    redis.call('ZADD', KEYS[2], created, id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('XADD', KEYS[3], '*', 'id', id)
    n = n + 1
  end
end
return n`;

// KEYS: dead ev meta deadmarks — delete every dead letter
const PURGE_DEAD = `
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
redis.call('DEL', KEYS[1], KEYS[4])
return #ids`;

interface Scripts {
  outboxAppend(seq: string, ev: string, meta: string, q: string, pending: string, retry: string, latest: string, eid: string, kind: string, subject: string, record: string, createdAt: number, supersede: string, eidTtl: number): Promise<number>;
  outboxDone(q: string, ev: string, meta: string, pending: string, retry: string, group: string, sid: string, id: number): Promise<number>;
  outboxRetry(q: string, ev: string, meta: string, retry: string, group: string, sid: string, id: number, meta2: string, nextAt: number): Promise<number>;
  outboxDead(q: string, ev: string, meta: string, pending: string, dead: string, deadmarks: string, group: string, sid: string, id: number, meta2: string, now: number, mark: string): Promise<number>;
  outboxPromote(retry: string, q: string, now: number, limit: number): Promise<number>;
  outboxRevive(dead: string, pending: string, q: string, meta: string, ev: string, now: number, ...ids: number[]): Promise<number>;
  outboxPurgeDead(dead: string, ev: string, meta: string, deadmarks: string): Promise<number>;
}
type ScriptedRedis = Redis & Scripts;

/** The outbox's Lua scripts on this connection (ioredis sends EVALSHA, and the script itself once if Redis does not know it). */
export function withScripts(r: Redis): ScriptedRedis {
  const define = (name: keyof Scripts, lua: string, numberOfKeys: number) => {
    if (!(name in r)) r.defineCommand(name, { lua, numberOfKeys });
  };
  define('outboxAppend', APPEND, 8);
  define('outboxDone', DONE, 5);
  define('outboxRetry', RETRY, 4);
  define('outboxDead', DEAD, 6);
  define('outboxPromote', PROMOTE, 2);
  define('outboxRevive', REVIVE, 5);
  define('outboxPurgeDead', PURGE_DEAD, 4);
  return r as ScriptedRedis;
}

interface Recorded {
  createdAt: number;
  kind: EventKind;
  subject: string;
  payload: unknown;
}
interface Meta {
  attempts?: number;
  nextAt?: number;
  lastError?: string | null;
  deadReason?: string | null;
}
/** how an event waits in the local outbox while Redis is unreachable */
interface Spilled {
  eid: string;
  createdAt: number;
  event: unknown;
}
const isSpilled = (p: unknown): p is Spilled => !!p && typeof p === 'object' && typeof (p as Spilled).eid === 'string' && typeof (p as Spilled).createdAt === 'number' && 'event' in (p as object);

export interface RedisOutboxOptions {
  redis: Redis;
  keyPrefix: string;
  /** the local outbox's folder: where events wait while Redis is unreachable */
  localDir: string;
  /** a newer bind.success of a user replaces the pending one (defguard mode) */
  supersede: boolean;
  fsync: boolean;
  log: Logger;
  /** this replica's consumer name in the group (default: host-pid-random) */
  consumer?: string;
  leaseMs?: number;
  /** the event was kept locally because Redis was unreachable; or handed over to Redis */
  observe?: (what: 'spilled' | 'handed_over') => void;
}

export interface OutboxStats {
  pending: number;
  dead: number;
  oldestPendingAgeSeconds: number;
  /** of pending: waiting in the local outbox for Redis */
  local: number;
}

async function readEvents(r: Redis, keys: OutboxKeys, ids: string[]): Promise<Array<{ rec?: Recorded; meta: Meta }>> {
  if (ids.length === 0) return [];
  const [recs, metas] = await Promise.all([r.hmget(keys.ev, ...ids), r.hmget(keys.meta, ...ids)]);
  return ids.map((_id, i) => ({ rec: recs[i] ? (JSON.parse(recs[i] as string) as Recorded) : undefined, meta: metas[i] ? (JSON.parse(metas[i] as string) as Meta) : {} }));
}

const stored = (id: number, rec: Recorded, meta: Meta, state: 'pending' | 'dead'): StoredEvent => ({
  id,
  createdAt: rec.createdAt,
  kind: rec.kind,
  subject: rec.subject,
  payload: rec.payload,
  attempts: meta.attempts ?? 0,
  nextAt: meta.nextAt ?? rec.createdAt,
  lastError: meta.lastError ?? null,
  state,
  deadReason: meta.deadReason ?? null,
});

export class RedisOutbox {
  private readonly r: ScriptedRedis;
  private readonly keys: OutboxKeys;
  private readonly local: Outbox;
  private readonly consumer: string;
  private readonly leaseMs: number;
  /** events taken by this replica and not yet settled: id -> stream entry, attempts */
  private readonly held = new Map<number, { sid: string; attempts: number }>();
  /**
   * Outcomes decided while Redis could not take them (an event delivered just before Redis went away):
   * recorded first thing when Redis is back, before this replica takes new work, so that the event is not
   * taken again and delivered a second time.
   */
  private readonly unsettled = new Map<number, () => Promise<unknown>>();
  private readonly listeners = new Set<() => void>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private groupReady = false;
  private nextClaimAt = 0;
  private claimCursor = '0-0';
  /** false after a failed command: appends go to the local outbox until Redis answers again */
  private redisOk = true;
  private handingOver = false;
  private closed = false;
  private cached: OutboxStats = { pending: 0, dead: 0, oldestPendingAgeSeconds: 0, local: 0 };
  private warnedDown = false;

  constructor(private readonly o: RedisOutboxOptions) {
    this.r = withScripts(o.redis);
    this.keys = outboxKeys(o.keyPrefix);
    this.local = new Outbox(o.localDir, false, o.fsync);
    this.consumer = o.consumer ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
    const every = (ms: number, fn: () => Promise<unknown>) => {
      const t = setInterval(() => void this.track(fn()).catch(() => undefined), ms);
      t.unref();
      this.timers.push(t);
    };
    // a heartbeat for the events this replica holds: their idle time restarts, so no other replica takes them
    every(Math.max(100, Math.floor(this.leaseMs / 3)), () => this.heartbeat());
    every(1000, () => this.handover());
    every(1000, () => this.refreshStats());
    this.r.on('ready', () => void this.track(this.replayUnsettled().then(() => this.handover())).catch(() => undefined));
    void this.track(this.handover()).catch(() => undefined);
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }

  private usable(): boolean {
    return this.r.status === 'ready' && this.redisOk && !this.closed;
  }

  private down(err: unknown, doing: string): void {
    this.redisOk = false;
    if (this.warnedDown) return;
    this.warnedDown = true;
    this.o.log.warn({ event: 'outbox', redis: 'unavailable', doing, err: (err as Error).message }, 'Redis unavailable: provisioning events are kept in the local outbox until it answers again');
  }

  private async record(eid: string, createdAt: number, e: OutboxEvent): Promise<number> {
    const k = this.keys;
    const rec: Recorded = { createdAt, kind: e.kind, subject: e.subject, payload: e.payload };
    return this.r.outboxAppend(k.seq, k.ev, k.meta, k.q, k.pending, k.retry, k.latest, k.eid(eid), e.kind, e.subject, JSON.stringify(rec), createdAt, this.o.supersede ? '1' : '0', EID_TTL_MS);
  }

  /** Resolves once the event is in Redis (or, Redis unreachable, fsync'd in the local outbox). */
  async append(e: OutboxEvent): Promise<void> {
    const eid = randomUUID();
    const createdAt = Date.now();
    if (this.usable()) {
      try {
        await this.track(this.record(eid, createdAt, e));
        for (const l of this.listeners) l();
        return;
      } catch (err) {
        // maybe written anyway (an answer that timed out): the local copy carries the same eid, and
        // the handover stores it once
        this.down(err, 'append');
      }
    }
    if (!this.warnedDown) this.down(new Error(`connection ${this.r.status}`), 'append');
    await this.local.append({ kind: e.kind, subject: e.subject, payload: { eid, createdAt, event: e.payload } satisfies Spilled });
    this.o.observe?.('spilled');
  }

  /** The local outbox's events to Redis, oldest first, each deleted locally once Redis has it. */
  private async handover(): Promise<void> {
    if (this.handingOver || this.closed || this.r.status !== 'ready') return;
    this.handingOver = true;
    let n = 0;
    try {
      if (!this.redisOk) await this.r.ping();
      await this.ensureGroup();
      for (;;) {
        const batch = this.local.due(100);
        if (batch.length === 0) break;
        for (const le of batch) {
          // events recorded by the SQLite outbox before Redis was configured are handed over too
          const p: Spilled = isSpilled(le.payload) ? le.payload : { eid: `local-${le.id}-${le.createdAt}`, createdAt: le.createdAt, event: le.payload };
          await this.record(p.eid, p.createdAt, { kind: le.kind, subject: le.subject, payload: p.event });
          this.local.delivered(le.id);
          n++;
        }
      }
      if (!this.redisOk || this.warnedDown) this.o.log.info({ event: 'outbox', redis: 'available' }, 'Redis answers again: provisioning events are recorded there');
      this.redisOk = true;
      this.warnedDown = false;
    } catch (err) {
      this.down(err, 'handover');
    } finally {
      this.handingOver = false;
      if (n > 0) {
        for (let i = 0; i < n; i++) this.o.observe?.('handed_over');
        this.o.log.info({ event: 'outbox', handedOver: n }, 'events kept locally while Redis was unreachable handed over to Redis');
        for (const l of this.listeners) l();
      }
    }
  }

  private async ensureGroup(): Promise<void> {
    if (this.groupReady) return;
    try {
      await this.r.xgroup('CREATE', this.keys.q, GROUP, '0', 'MKSTREAM');
    } catch (err) {
      if (!/BUSYGROUP/.test((err as Error).message)) throw err;
    }
    this.groupReady = true;
  }

  private async heartbeat(): Promise<void> {
    if (this.held.size === 0 || this.r.status !== 'ready') return;
    const sids = [...this.held.values()].map((h) => h.sid);
    await this.r.xclaim(this.keys.q, GROUP, this.consumer, 0, ...sids, 'JUSTID');
  }

  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Events to deliver now: retries that came due, entries held too long by others, new entries. */
  async due(limit: number, now = Date.now()): Promise<StoredEvent[]> {
    if (this.r.status !== 'ready') return [];
    if (this.unsettled.size > 0) await this.replayUnsettled();
    const k = this.keys;
    await this.ensureGroup();
    await this.r.outboxPromote(k.retry, k.q, now, 100);
    const entries: Array<[string, string[] | null]> = [];
    if (now >= this.nextClaimAt) {
      const [cursor, claimed] = (await this.r.xautoclaim(k.q, GROUP, this.consumer, this.leaseMs, this.claimCursor, 'COUNT', limit)) as [string, Array<[string, string[] | null]>];
      this.claimCursor = cursor;
      // more to look at: go on at the next call; otherwise in half a lease
      this.nextClaimAt = cursor === '0-0' ? now + this.leaseMs / 2 : now;
      entries.push(...claimed);
      if (claimed.length > 0) this.o.log.info({ event: 'outbox', claimed: claimed.length }, 'took over events another replica held longer than the lease');
    }
    if (entries.length < limit) {
      let read;
      try {
        read = (await this.r.xreadgroup('GROUP', GROUP, this.consumer, 'COUNT', limit - entries.length, 'STREAMS', k.q, '>')) as Array<[string, Array<[string, string[] | null]>]> | null;
      } catch (err) {
        if (/NOGROUP/.test((err as Error).message)) this.groupReady = false; // Redis lost its data: recreate
        throw err;
      }
      for (const [, items] of read ?? []) entries.push(...items);
    }
    const taken = entries.flatMap(([sid, fields]) => {
      const i = fields ? fields.indexOf('id') : -1;
      return fields && i >= 0 && fields[i + 1] ? [{ sid, id: fields[i + 1] as string }] : [];
    });
    const events = await readEvents(this.r, k, taken.map((t) => t.id));
    const out: StoredEvent[] = [];
    for (const [i, t] of taken.entries()) {
      const { rec, meta } = events[i] as { rec?: Recorded; meta: Meta };
      const id = Number(t.id);
      if (!rec) {
        // delivered (or superseded, or purged) already: acknowledge, never deliver again
        await this.r.outboxDone(k.q, k.ev, k.meta, k.pending, k.retry, GROUP, t.sid, id);
        continue;
      }
      this.held.set(id, { sid: t.sid, attempts: meta.attempts ?? 0 });
      out.push(stored(id, rec, meta, 'pending'));
    }
    return out;
  }

  /** When to look again: the next retry, a lease check, or a poll for others' events. */
  async nextDue(now = Date.now()): Promise<number> {
    let t = Math.min(now + POLL_MS, this.nextClaimAt);
    if (this.r.status === 'ready') {
      const first = await this.r.zrange(this.keys.retry, '0', '0', 'WITHSCORES');
      if (first[1] !== undefined) t = Math.min(t, Number(first[1]));
    }
    return t;
  }

  private async settle(id: number, op: (sid: string, attempts: number) => Promise<unknown>): Promise<void> {
    const h = this.held.get(id);
    if (!h) return;
    try {
      await this.track(op(h.sid, h.attempts));
      this.held.delete(id);
    } catch (err) {
      // kept (and still held, so the heartbeat keeps it ours): recorded as soon as Redis answers again
      this.unsettled.set(id, () => op(h.sid, h.attempts));
      this.o.log.warn({ event: 'outbox', id, err: (err as Error).message }, 'could not record a delivery outcome in Redis: it is kept and recorded when Redis is back');
    }
  }

  /** The outcomes Redis could not take, recorded now (Redis is back). */
  private async replayUnsettled(): Promise<void> {
    for (const [id, op] of [...this.unsettled]) {
      await op();
      this.unsettled.delete(id);
      this.held.delete(id);
    }
  }

  async delivered(id: number): Promise<void> {
    const k = this.keys;
    await this.settle(id, (sid) => this.r.outboxDone(k.q, k.ev, k.meta, k.pending, k.retry, GROUP, sid, id));
  }

  async retryLater(id: number, nextAt: number, error: string): Promise<void> {
    const k = this.keys;
    await this.settle(id, (sid, attempts) => this.r.outboxRetry(k.q, k.ev, k.meta, k.retry, GROUP, sid, id, JSON.stringify({ attempts: attempts + 1, nextAt, lastError: error } satisfies Meta), nextAt));
  }

  async dead(id: number, reason: string, subject?: string): Promise<void> {
    const k = this.keys;
    const mark = subject ? `${subject}\0${reason.split(':')[0]}` : '';
    await this.settle(id, (sid, attempts) => this.r.outboxDead(k.q, k.ev, k.meta, k.pending, k.dead, k.deadmarks, GROUP, sid, id, JSON.stringify({ attempts: attempts + 1, deadReason: reason } satisfies Meta), Date.now(), mark));
  }

  /** Whether a dead letter for this subject with this reason exists already. */
  async isDead(subject: string, reason: string): Promise<boolean> {
    try {
      const id = await this.r.hget(this.keys.deadmarks, `${subject}\0${reason}`);
      return id !== null && (await this.r.zscore(this.keys.dead, id)) !== null;
    } catch {
      return false; // then dead() records it (or, Redis still unreachable, the event is taken again later)
    }
  }

  private async refreshStats(now = Date.now()): Promise<void> {
    const local = this.local.stats(now);
    if (this.r.status !== 'ready') {
      this.cached = { ...this.cached, local: local.pending };
      return;
    }
    const [pending, dead, oldest] = await Promise.all([this.r.zcard(this.keys.pending), this.r.zcard(this.keys.dead), this.r.zrange(this.keys.pending, '0', '0', 'WITHSCORES')]);
    const oldestAt = Math.min(oldest[1] !== undefined ? Number(oldest[1]) : Infinity, local.pending ? now - local.oldestPendingAgeSeconds * 1000 : Infinity);
    this.cached = { pending: pending + local.pending, dead: dead + local.dead, oldestPendingAgeSeconds: Number.isFinite(oldestAt) ? (now - oldestAt) / 1000 : 0, local: local.pending };
  }

  /** As of the last refresh (every second): Redis and the local outbox together. */
  stats(): OutboxStats {
    return this.cached;
  }

  /** Stop the timers, let what is under way finish, close the local outbox. The Redis connection is the caller's. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearInterval(t);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await this.local.close();
  }
}

/** `ldap-gateway outbox list|retry|purge` against the Redis outbox (and the local one beside it). */
export class RedisOutboxAdmin {
  private readonly r: ScriptedRedis;
  private readonly keys: OutboxKeys;

  constructor(
    redis: Redis,
    keyPrefix: string,
    private readonly local: Outbox,
  ) {
    this.r = withScripts(redis);
    this.keys = outboxKeys(keyPrefix);
  }

  async list(limit = 1000): Promise<StoredEvent[]> {
    const [pending, dead] = await Promise.all([this.r.zrange(this.keys.pending, '0', String(limit - 1)), this.r.zrange(this.keys.dead, '0', String(limit - 1))]);
    const ids = [...pending, ...dead];
    const evs = await readEvents(this.r, this.keys, ids);
    const out = ids.flatMap((id, i) => {
      const { rec, meta } = evs[i] as { rec?: Recorded; meta: Meta };
      return rec ? [stored(Number(id), rec, meta, i < pending.length ? 'pending' : 'dead')] : [];
    });
    return out.sort((a, b) => a.id - b.id).slice(0, limit);
  }

  /** Redis, plus what waits in the local outbox (local) for Redis. */
  async stats(now = Date.now()): Promise<OutboxStats> {
    const [pending, dead, oldest] = await Promise.all([this.r.zcard(this.keys.pending), this.r.zcard(this.keys.dead), this.r.zrange(this.keys.pending, '0', '0', 'WITHSCORES')]);
    const local = this.local.stats(now);
    return { pending, dead, oldestPendingAgeSeconds: oldest[1] !== undefined ? (now - Number(oldest[1])) / 1000 : 0, local: local.pending };
  }

  /** Dead letters (or the given ones) back to pending. */
  async retry(ids: number[] = []): Promise<number> {
    const k = this.keys;
    return this.r.outboxRevive(k.dead, k.pending, k.q, k.meta, k.ev, Date.now(), ...ids);
  }

  /** Delete dead letters (all: every event, pending ones included). */
  async purge(all = false): Promise<number> {
    const k = this.keys;
    if (!all) return this.r.outboxPurgeDead(k.dead, k.ev, k.meta, k.deadmarks);
    const n = (await this.r.hlen(k.ev)) + this.local.purge(true);
    await this.r.del(k.ev, k.meta, k.pending, k.retry, k.dead, k.deadmarks, k.latest);
    await this.r.xtrim(k.q, 'MAXLEN', 0);
    return n;
  }
}
