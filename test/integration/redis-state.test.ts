// The shared state on a real redis-server (issue 13, items 2 and 3): the stores' semantics against Redis,
// two gateways (demo upstream, one test process) sharing one Redis — lockout windows, bind rate, the
// invalidation bus — and Redis stopped and restarted under load (onUnavailable: local, then refuse).
// The test bed's Redis (REDIS_URL) serves the tests that keep it up; each test uses its own key prefix.
// Tests that stop Redis use a private one (test/helpers/redis.ts) on 127.0.0.33.
import t from 'tap';
import { connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';
import { Client } from 'ldapts';
import pino from 'pino';
import { parseConfig } from '../../src/config/load';
import { DEMO_PASSWORD } from '../../src/demo/directory';
import { Metrics } from '../../src/observability/metrics';
import { buildState, type State } from '../../src/state/index';
import { bedEnv, ROOT, startFromYaml, type TestGateway } from '../helpers/gateway';
import { startRedis } from '../helpers/redis';
import { join } from 'node:path';

const REDIS_URL = bedEnv('REDIS_URL');
const BASE = 'dc=vpn,dc=example,dc=test';
const READER = `cn=reader,${BASE}`;
const READER_PW = 'reader-Secret-0042';
const prefix = () => `test-${randomBytes(5).toString('hex')}:`;
const quiet = pino({ level: 'silent' });

const demoYaml = (redis: string, extra = '') => `demo: true
listen:
  ldap: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
state:
  redis:
${redis}
${extra}directory:
  baseDN: ${BASE}
consumers:
  - name: reader
    bindDN: ${READER}
    password: ${READER_PW}
`;
const redisBlock = (url: string, keyPrefix: string, more = '') => `    url: ${url}\n    keyPrefix: "${keyPrefix}"\n${more}`;

async function stateFor(url: string, keyPrefix: string, more = ''): Promise<State> {
  const cfg = parseConfig(demoYaml(redisBlock(url, keyPrefix, more)), join(ROOT, 'config', 'examples'), {});
  return buildState(cfg, quiet, new Metrics());
}

/** a bind from a chosen loopback source address: what the gateway answered */
async function bindFrom(g: TestGateway, source: string, name: string, password: string): Promise<{ ok: boolean; code?: number; message?: string }> {
  const c = new Client({ url: g.url, timeout: 10_000, createConnection: ((port: number, host: string) => connect({ port, host, localAddress: source })) as unknown as typeof connect });
  try {
    await c.bind(name, password);
    return { ok: true };
  } catch (err) {
    const e = err as { code?: number; message: string };
    return { ok: false, code: e.code, message: e.message.replace(/ Code: 0x[0-9a-f]+$/, '') };
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

const metric = async (g: TestGateway, re: RegExp): Promise<number | undefined> => {
  const m = re.exec(await (await fetch(`${g.httpUrl}/metrics`)).text());
  return m ? Number(m[1]) : undefined;
};
const backendUp = (g: TestGateway) => metric(g, /^ldap_gateway_state_backend_up\{backend="redis"\} (\d+)$/m);
const readyz = async (g: TestGateway) => {
  const r = await fetch(`${g.httpUrl}/readyz`);
  return { status: r.status, body: await r.text() };
};

/** every key under the prefix, with its time to live */
async function keysOf(r: Redis, keyPrefix: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) out.set(k, await r.pttl(k));
  } while (cursor !== '0');
  return out;
}

/** until fn() holds, checked every 20 ms, failing after ms */
async function until(what: string, fn: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

t.test('stores on Redis: TTL map, sliding windows, caps, token bucket; every key prefixed and expiring', async (t) => {
  const p = prefix();
  const s = await stateFor(REDIS_URL, p);
  const raw = new Redis(REDIS_URL);
  t.teardown(async () => {
    await s.close();
    raw.disconnect();
  });

  const m = s.ttlMap<{ to: string; n: number }>('renames', { max: 10, ttlMs: 60_000 });
  await m.set('k1', { to: 'uid=x', n: 1 });
  t.same(await m.get('k1'), { to: 'uid=x', n: 1 }, 'a JSON value comes back');
  t.equal(await m.get('absent'), undefined);
  await m.delete('k1');
  t.equal(await m.get('k1'), undefined, 'deleted');
  await m.set('short', { to: 'y', n: 2 }, 150);
  const pttl = await raw.pttl(`${p}renames:short`);
  t.ok(pttl > 0 && pttl <= 150, `the entry's own TTL is Redis's (PTTL ${pttl})`);
  await until('the entry to expire', async () => (await m.get('short')) === undefined, 3000);

  const w = s.windowCounter('lockout', { windowMs: 1000, cap: 3, max: 10 });
  const t0 = Date.now();
  await w.add('a', t0);
  await w.add('a', t0); // the same millisecond: two events
  await w.add('a', t0 + 100);
  t.equal(await w.count('a', t0 + 100), 3);
  t.equal(await w.count('a', t0 + 999), 3, 'still inside the window');
  t.equal(await w.count('a', t0 + 1000), 1, 'the two events of t0 left the window');
  t.equal(await w.count('a', t0 + 1100), 0, 'all left');
  for (let i = 0; i < 10; i++) await w.add('capped', t0 + i);
  t.equal(await w.count('capped', t0 + 10), 3, 'at most cap events kept');
  t.equal(await raw.zcard(`${p}lockout:capped`), 3, 'and stored');
  await w.clear('capped');
  t.equal(await w.count('capped', t0 + 10), 0, 'cleared');
  const wttl = await raw.pttl(`${p}lockout:a`);
  t.ok(wttl > 0 && wttl <= 1000, `a window lives windowMs after its last event (PTTL ${wttl})`);

  const b = s.rateLimiter('bind-rate', { ratePerSec: 2, burst: 3, max: 10 });
  const takes = [];
  for (let i = 0; i < 4; i++) takes.push(await b.take('10.0.0.1', t0));
  t.same(takes, [true, true, true, false], 'a burst of 3, then refused');
  t.equal(await b.take('10.0.0.1', t0 + 499), false, 'not yet refilled (2 per second)');
  t.equal(await b.take('10.0.0.1', t0 + 500), true, 'one token after half a second');
  t.equal(await b.take('10.0.0.1', t0 + 500), false);
  t.same([await b.take('10.0.0.1', t0 + 10_000), await b.take('10.0.0.1', t0 + 10_000), await b.take('10.0.0.1', t0 + 10_000), await b.take('10.0.0.1', t0 + 10_000)], [true, true, true, false], 'refilled up to the burst, not beyond');
  t.equal(await b.take('10.0.0.2', t0), true, 'another key has its own bucket');
  const off = s.rateLimiter('bind-rate-off', { ratePerSec: 0, burst: 1, max: 10 });
  t.equal(await off.take('x'), true, 'rate 0: no limit');

  const cache = s.ttlMap<string>('search-cache', { max: 10, ttlMs: 60_000 });
  await cache.set('q', 'per-process');
  t.equal(await cache.get('q'), 'per-process');

  const keys = await keysOf(raw, p);
  t.ok(keys.size >= 3, `keys written: ${[...keys.keys()].join(' ')}`);
  for (const [k, ttl] of keys) t.ok(ttl > 0, `${k} has a TTL (${ttl} ms)`);
  t.ok([...keys.keys()].every((k) => /^test-[0-9a-f]+:(renames|lockout|bind-rate):/.test(k)), 'prefix + store name in every key');
  t.notOk([...keys.keys()].some((k) => k.includes('search-cache')), 'the search cache stays in the process');
});

t.test('the bus: a message reaches the other replica once, and the own process at once', async (t) => {
  const p = prefix();
  const a = await stateFor(REDIS_URL, p);
  const b = await stateFor(REDIS_URL, p);
  const other = await stateFor(REDIS_URL, prefix());
  t.teardown(() => Promise.all([a.close(), b.close(), other.close()]));
  const heardA: string[] = [];
  const heardB: string[] = [];
  const heardOther: string[] = [];
  a.bus.subscribe('directory-changed', (m) => heardA.push(m));
  const got = new Promise<void>((resolve) => b.bus.subscribe('directory-changed', (m) => (heardB.push(m), resolve())));
  other.bus.subscribe('directory-changed', (m) => heardOther.push(m));
  // the subscriptions are sent on their own connections: wait until Redis counts them
  const raw = new Redis(REDIS_URL);
  t.teardown(() => raw.disconnect());
  await until('both subscriptions', async () => Number(((await raw.call('PUBSUB', 'NUMSUB', `${p}bus:directory-changed`)) as [string, number])[1]) === 2);
  await a.bus.publish('directory-changed', 'core-1');
  t.same(heardA, ['core-1'], 'the publishing process heard it before publish resolved');
  await got;
  t.same(heardB, ['core-1'], 'the other replica heard it');
  await a.bus.publish('unrelated', 'x');
  await b.bus.publish('directory-changed', 'core-2');
  await until('A hears B', () => heardA.length === 2);
  t.same(heardA, ['core-1', 'core-2'], 'once each: A did not hear its own message back from Redis');
  t.same(heardOther, [], 'another key prefix is another deployment');
});

t.test('two gateways on one Redis: wrong binds through A and B add up to the per-account limit', async (t) => {
  const p = prefix();
  const yaml = demoYaml(redisBlock(REDIS_URL, p), 'protection:\n  lockout:\n    perAccountIp: 10\n    perAccount: 4\n');
  const a = await startFromYaml(yaml);
  const b = await startFromYaml(yaml);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  const answers: string[] = [];
  for (let i = 0; i < 4; i++) answers.push((await bindFrom(i % 2 ? b : a, '127.0.0.1', 'alice', `Wrong-${i}`)).message ?? 'ok');
  t.same(answers, ['bad_credentials', 'bad_credentials', 'bad_credentials', 'bad_credentials'], 'four wrong binds, two through each, reach the directory');
  t.match(await bindFrom(a, '127.0.0.1', 'alice', 'Wrong-4'), { ok: false, code: 49, message: 'throttled' }, "A refuses the fifth: it counted B's two (alone it had seen two)");
  t.match(await bindFrom(b, '127.0.0.2', 'alice', 'Wrong-5'), { ok: false, code: 49, message: 'throttled' }, 'so does B, from another address');
  t.match(await bindFrom(b, '127.0.0.2', 'alice', DEMO_PASSWORD), { ok: false, code: 49, message: 'throttled' }, 'the account stays shielded on both replicas');
  t.match(await bindFrom(a, '127.0.0.1', 'bob', DEMO_PASSWORD), { ok: true }, 'another account is not affected');
  t.equal(await metric(a, /^ldap_gateway_lockout_trips_total\{scope="account"\} (\d+)$/m), 1);
  t.equal(await metric(b, /^ldap_gateway_lockout_trips_total\{scope="account"\} (\d+)$/m), 2);
});

t.test('two gateways on one Redis: the bind rate per address is shared', async (t) => {
  const p = prefix();
  const yaml = demoYaml(redisBlock(REDIS_URL, p), 'protection:\n  bindRatePerIp: 0.01\n  bindBurstPerIp: 3\n');
  const a = await startFromYaml(yaml);
  const b = await startFromYaml(yaml);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  const answers = [];
  for (const g of [a, b, a, b, a]) answers.push(await bindFrom(g, '127.0.0.3', 'bob', DEMO_PASSWORD));
  t.match(answers.slice(0, 3), [{ ok: true }, { ok: true }, { ok: true }], 'a burst of three binds, over both replicas');
  t.match(answers.slice(3), [{ ok: false, code: 51, message: 'rate_limited' }, { ok: false, code: 51, message: 'rate_limited' }], 'then busy on both');
  t.match(await bindFrom(b, '127.0.0.4', 'bob', DEMO_PASSWORD), { ok: true }, 'another address has its own bucket');
});

t.test("an invalidation through A's bus empties B's search cache and membership index", async (t) => {
  const p = prefix();
  const yaml = demoYaml(redisBlock(REDIS_URL, p));
  const b = await startFromYaml(yaml);
  t.teardown(() => b.stop());
  const raw = new Redis(REDIS_URL);
  t.teardown(() => raw.disconnect());
  const c = new Client({ url: b.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind(READER, READER_PW);
  const search = () => c.search(`ou=groups,${BASE}`, { scope: 'sub', filter: '(cn=Engineering)', attributes: ['member'] });
  const hits = () => metric(b, /^ldap_gateway_cache_requests_total\{result="hit"\} (\d+)$/m);
  const misses = () => metric(b, /^ldap_gateway_cache_requests_total\{result="miss"\} (\d+)$/m);
  const first = await search();
  t.equal(first.searchEntries.length, 1);
  await search();
  t.equal(await hits(), 1, 'the repeat is answered from the cache');
  const missesBefore = (await misses()) ?? 0;
  await until('B subscribed', async () => Number(((await raw.call('PUBSUB', 'NUMSUB', `${p}bus:directory-changed`)) as [string, number])[1]) >= 1);
  // what replica A's core publishes after a write (another origin than B's)
  const receivers = await raw.publish(`${p}bus:directory-changed`, 'replica-a\ncore-of-a');
  t.equal(receivers, 1, "B's subscriber got it");
  await until('the cache to be forgotten', async () => {
    await search();
    return ((await misses()) ?? 0) > missesBefore;
  });
  t.equal(await hits(), 1, 'the search after the invalidation was not a hit');
});

t.test('Redis stopped under load, then started: binds go on with local state; gauge, /readyz, logs; shared again after', async (t) => {
  const redis = await startRedis('127.0.0.33');
  t.teardown(() => redis.destroy());
  const p = prefix();
  const yaml = demoYaml(redisBlock(redis.url, p, '    connectTimeoutMs: 500\n    commandTimeoutMs: 300\n'), 'protection:\n  lockout:\n    perAccountIp: 10\n    perAccount: 4\n');
  const a = await startFromYaml(yaml);
  const b = await startFromYaml(yaml);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  t.equal(await backendUp(a), 1, 'up at start');
  t.same(await readyz(a), { status: 200, body: 'ready\n' });

  // a steady bind load through both replicas while Redis goes away and comes back
  let stop = false;
  const results: Array<{ ok: boolean; code?: number; message?: string }> = [];
  const load = (async () => {
    for (let i = 0; !stop; i++) results.push(await bindFrom(i % 2 ? b : a, '127.0.0.5', 'bob', DEMO_PASSWORD));
  })();
  await until('some binds', () => results.length >= 10);
  const fromA = a.logs.length;
  await redis.stop();
  await a.waitForLog(/Redis is unreachable: going on with per-process state/, { timeoutMs: 5000, from: fromA });
  await until('A to count binds without Redis', () => results.length >= 40);
  t.equal(await backendUp(a), 0, 'the gauge says down');
  const r = await readyz(a);
  t.equal(r.status, 200, 'still ready: binds go on');
  t.match(r.body, /^ready\ndegraded: state is per-process/, 'and /readyz says how');
  // the shield holds per replica meanwhile: four wrong binds through A alone are refused at the fifth
  for (let i = 0; i < 4; i++) t.match(await bindFrom(a, '127.0.0.6', 'carol', `Down-${i}`), { message: 'bad_credentials' });
  t.match(await bindFrom(a, '127.0.0.6', 'carol', 'Down-4'), { message: 'throttled' }, 'per-process counters while Redis is down');

  const back = a.logs.length;
  const backB = b.logs.length;
  await redis.start();
  await a.waitForLog(/Redis is reachable again/, { timeoutMs: 10_000, from: back });
  await b.waitForLog(/Redis is reachable again/, { timeoutMs: 10_000, from: backB });
  const n = results.length;
  await until('binds after the restart', () => results.length >= n + 10);
  stop = true;
  await load;
  t.same(results.filter((x) => !x.ok), [], `all ${results.length} binds of the load succeeded, through the outage`);
  t.equal(await backendUp(a), 1, 'the gauge says up again');
  t.same(await readyz(b), { status: 200, body: 'ready\n' });
  t.equal(a.logs.filter((l) => l.includes('Redis is unreachable')).length, 1, 'one warning for the outage');
  t.equal(a.logs.filter((l) => l.includes('Redis is reachable again')).length, 1, 'one info when it is back');

  // shared again: two wrong binds through each replica make four
  for (let i = 0; i < 4; i++) t.match(await bindFrom(i % 2 ? b : a, '127.0.0.7', 'alice', `Back-${i}`), { message: 'bad_credentials' });
  t.match(await bindFrom(b, '127.0.0.7', 'alice', 'Back-4'), { ok: false, code: 49, message: 'throttled' }, 'the fifth is refused: counted together again');
});

t.test('onUnavailable: refuse: binds are answered 52 while Redis is down, and /readyz is 503', async (t) => {
  const redis = await startRedis('127.0.0.33', 6380);
  t.teardown(() => redis.destroy());
  const yaml = demoYaml(redisBlock(redis.url, prefix(), '    onUnavailable: refuse\n    connectTimeoutMs: 500\n    commandTimeoutMs: 300\n'));
  const g = await startFromYaml(yaml);
  t.teardown(() => g.stop());
  t.match(await bindFrom(g, '127.0.0.1', 'bob', DEMO_PASSWORD), { ok: true }, 'Redis up: the bind succeeds');
  const from = g.logs.length;
  await redis.stop();
  await g.waitForLog(/Redis is unreachable: binds are refused/, { timeoutMs: 5000, from });
  const t0 = Date.now();
  t.match(await bindFrom(g, '127.0.0.1', 'bob', DEMO_PASSWORD), { ok: false, code: 52, message: 'upstream_unavailable' }, 'refused with 52');
  t.ok(Date.now() - t0 < 2000, 'at once, not after a hang');
  t.match(await bindFrom(g, '127.0.0.1', 'alice', 'Wrong-1'), { ok: false, code: 52 }, 'a wrong password too (nothing is counted, nothing reaches the directory)');
  t.same(await readyz(g), { status: 503, body: 'not ready\nRedis is unreachable: binds are refused\n' });
  t.equal(await backendUp(g), 0);
  const back = g.logs.length;
  await redis.start();
  await g.waitForLog(/Redis is reachable again/, { timeoutMs: 10_000, from: back });
  t.match(await bindFrom(g, '127.0.0.1', 'bob', DEMO_PASSWORD), { ok: true }, 'binds again once Redis is back');
  t.same(await readyz(g), { status: 200, body: 'ready\n' });
});
