// The Redis outbox's stream logic (src/provisioning/redis-outbox.ts) against a private redis-server
// (test/helpers/redis.ts): leases and take-over, the idempotency guard, supersede, retries, dead
// letters and the admin commands, the local outbox while Redis is down and the handover after.
import t, { type Test } from 'tap';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import type Redis from 'ioredis';
import { Outbox } from '../../src/provisioning/outbox';
import { outboxRedis } from '../../src/provisioning/redis-client';
import { GROUP, outboxKeys, RedisOutbox, RedisOutboxAdmin } from '../../src/provisioning/redis-outbox';
import { redisServer, type OutboxRedisServer } from '../helpers/outbox-redis-server';
import { eventually } from '../helpers/lines';

const log = pino({ level: 'silent' });
let redis: OutboxRedisServer;
let n = 0;

t.before(async () => {
  redis = await redisServer('127.0.0.42', 6379);
});
t.teardown(() => redis.destroy());

/** a connection as the gateway makes it, ready */
async function connect(): Promise<Redis> {
  const r = outboxRedis({ url: redis.url, keyPrefix: 'x', onUnavailable: 'local', connectTimeoutMs: 1000, commandTimeoutMs: 1000 });
  if (r.status !== 'ready') await new Promise((res) => r.once('ready', res));
  return r;
}

/** two replicas' outboxes on one key prefix, each with its own local folder and connection */
async function replicas(t: Test, o: { supersede?: boolean; leaseMs?: number } = {}) {
  const prefix = `t${++n}:`;
  const make = async (name: string) => {
    const r = await connect();
    const ob = new RedisOutbox({ redis: r, keyPrefix: prefix, localDir: mkdtempSync(join(tmpdir(), 'gw-ro-')), supersede: o.supersede ?? false, fsync: false, log, consumer: name, leaseMs: o.leaseMs ?? 400 });
    t.teardown(async () => {
      await ob.close();
      r.disconnect();
    });
    return { r, ob };
  };
  const a = await make('A');
  const b = await make('B');
  return { prefix, keys: outboxKeys(prefix), a, b, admin: new RedisOutboxAdmin(a.r, prefix, new Outbox(mkdtempSync(join(tmpdir(), 'gw-ro-')))) };
}

const ev = (subject: string, v = 1) => ({ kind: 'bind.success' as const, subject, payload: { user: { username: subject }, v } });

t.test('taken by one replica, which dies: another takes over after the lease, once', async (t) => {
  const { a, b, keys, admin } = await replicas(t);
  for (const u of ['u1', 'u2', 'u3']) await a.ob.append(ev(u));
  const takenByA = await a.ob.due(2);
  t.same(takenByA.map((e) => e.subject), ['u1', 'u2'], 'A takes two');
  const takenByB = await b.ob.due(10);
  t.same(takenByB.map((e) => e.subject), ['u3'], 'B takes the third; A holds the others');
  await b.ob.delivered(takenByB[0]!.id);
  // A "dies": no heartbeat any more (its timers stop), its two stay pending in the group
  await a.ob.close();
  t.same(await b.ob.due(10), [], 'within the lease, nobody else takes them');
  const claimed: Awaited<ReturnType<RedisOutbox['due']>> = [];
  await eventually('B takes over after the lease', async () => {
    claimed.push(...(await b.ob.due(10)));
    return claimed.length >= 2;
  }, { timeoutMs: 5000, intervalMs: 100 });
  t.same(claimed.map((e) => e.subject).sort(), ['u1', 'u2']);
  for (const e of claimed) await b.ob.delivered(e.id);
  t.same(await b.ob.due(10), [], 'nothing left');
  t.equal((await admin.stats()).pending, 0);
  const p = (await b.r.xpending(keys.q, GROUP)) as [number, ...unknown[]];
  t.equal(p[0], 0, 'no entry left pending in the group');
  t.equal(await b.r.xlen(keys.q), 0, 'acknowledged entries are deleted from the stream');
});

t.test('a heartbeat keeps a live replica\'s events: nobody takes them while it works on them', async (t) => {
  const { a, b } = await replicas(t, { leaseMs: 300 });
  await a.ob.append(ev('slow'));
  const [held] = await a.ob.due(1);
  t.ok(held);
  const t0 = Date.now();
  while (Date.now() - t0 < 1200) {
    t.same(await b.ob.due(10), [], 'not taken over');
    await new Promise((r) => setTimeout(r, 100));
  }
  await a.ob.delivered(held!.id);
  t.same(await b.ob.due(10), []);
});

t.test('the idempotency guard: an entry whose event was delivered already is acknowledged, not delivered', async (t) => {
  const { a, b, keys } = await replicas(t);
  await a.ob.append(ev('once'));
  const [e] = await a.ob.due(1);
  // a second stream entry for the same event (as a crash between steps could leave)
  await a.r.xadd(keys.q, '*', 'id', String(e!.id));
  await a.ob.delivered(e!.id);
  t.same(await b.ob.due(10), [], 'the stale entry is not handed out');
  const p = (await b.r.xpending(keys.q, GROUP)) as [number, ...unknown[]];
  t.equal(p[0], 0, 'and it is acknowledged');
});

t.test('append: the same event id twice is stored once; supersede keeps the newest state of a user', async (t) => {
  const { a, admin } = await replicas(t, { supersede: true });
  await a.ob.append(ev('sam', 1));
  await a.ob.append(ev('sam', 2));
  await a.ob.append(ev('other', 1));
  const list = await admin.list();
  t.same(list.map((e) => [e.subject, (e.payload as { v: number }).v]), [['sam', 2], ['other', 1]], "sam's first event was replaced");
  const got = await a.ob.due(10);
  t.same(got.map((e) => e.subject), ['sam', 'other'], 'the replaced entry is acknowledged without delivery');
  for (const e of got) await a.ob.delivered(e.id);
  t.equal((await admin.stats()).pending, 0);
});

t.test('retries wait for their time; dead letters are reported once and handled by the admin commands', async (t) => {
  const { a, admin } = await replicas(t);
  await a.ob.append(ev('r1'));
  await a.ob.append(ev('d1'));
  const [r1, d1] = await a.ob.due(10);
  await a.ob.retryLater(r1!.id, Date.now() + 400, 'HTTP 503');
  await a.ob.dead(d1!.id, 'invalid_username: nope', 'd1');
  t.same(await a.ob.due(10), [], 'nothing due before the retry time');
  t.ok((await a.ob.nextDue()) <= Date.now() + 400, 'the worker wakes for the retry');
  t.ok(await a.ob.isDead('d1', 'invalid_username'));
  t.notOk(await a.ob.isDead('d1', 'missing_email'));
  let again: Awaited<ReturnType<RedisOutbox['due']>> = [];
  await eventually('the retry comes due', async () => (again = await a.ob.due(10)).length > 0, { timeoutMs: 3000, intervalMs: 50 });
  t.match(again, [{ subject: 'r1', attempts: 1, lastError: 'HTTP 503' }]);
  await a.ob.delivered(again[0]!.id);
  t.match(await admin.stats(), { pending: 0, dead: 1 });
  t.match(await admin.list(), [{ subject: 'd1', state: 'dead', deadReason: 'invalid_username: nope', attempts: 1 }]);
  t.equal(await admin.retry([]), 1, 'retry: the dead letter is pending again');
  t.notOk(await a.ob.isDead('d1', 'invalid_username'), 'no longer dead');
  const [back] = await a.ob.due(10);
  t.match(back, { subject: 'd1', attempts: 0 });
  await a.ob.dead(back!.id, 'invalid_username: nope', 'd1');
  t.equal(await admin.purge(false), 1, 'purge deletes the dead letter');
  t.match(await admin.stats(), { pending: 0, dead: 0 });
  t.same(await admin.list(), []);
});

t.test('Redis down: appends go to the local outbox at once; Redis back: handed over once, deleted locally', async (t) => {
  const { a, b, admin } = await replicas(t);
  await redis.stop();
  await eventually('the connection notices', () => a.r.status !== 'ready', { timeoutMs: 3000, intervalMs: 20 });
  await a.ob.append(ev('l1')); // the first also starts the local outbox's writer thread
  const t0 = Date.now();
  for (const u of ['l2', 'l3']) await a.ob.append(ev(u));
  // waiting on Redis would cost the command timeout (1000 ms) per append
  t.ok(Date.now() - t0 < 1000, `no wait on Redis (${Date.now() - t0} ms for two appends)`);
  await eventually('counted locally', () => a.ob.stats().local === 3, { timeoutMs: 3000, intervalMs: 50 });
  await redis.start();
  await eventually('handed over', async () => a.r.status === 'ready' && (await admin.stats()).pending === 3 && a.ob.stats().local === 0, { timeoutMs: 8000, intervalMs: 100 });
  const byB = await b.ob.due(10);
  const byA = await a.ob.due(10);
  t.same([...byA, ...byB].map((e) => e.subject).sort(), ['l1', 'l2', 'l3'], 'each once');
  for (const e of byB) await b.ob.delivered(e.id);
  for (const e of byA) await a.ob.delivered(e.id);
  t.equal((await admin.stats()).pending, 0);
});
