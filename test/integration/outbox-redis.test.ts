// The provisioning outbox on Redis (state.redis): two gateways share one Redis (a private redis-server,
// appendonly + appendfsync always) in front of the Samba AD test bed, delivering to the Defguard API
// STAND-IN. Deliveries are counted on the stand-in: with no group mapped, one delivery of a new user is
// exactly one GET (404) and one POST (201), so a second delivery would show as a second GET.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { Client } from 'ldapts';
import { DefguardStandin } from '../standins/defguard-api';
import { bedEnv, DEFGUARD_TOKEN, ROOT, run, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';
import { eventually } from '../helpers/lines';
import { spawnGateway } from '../helpers/process';
import { redisServer, type OutboxRedisServer } from '../helpers/outbox-redis-server';
import { GROUP, outboxKeys } from '../../src/provisioning/redis-outbox';

const PW = bedEnv('SAMBA_AD_USER_PASS');
let redis: OutboxRedisServer;
let n = 0;
t.before(async () => {
  redis = await redisServer('127.0.0.41', 6379);
});
t.teardown(() => redis.destroy());

/** the Samba example delivering to the stand-in, no group mapped, fast retries, this test's Redis prefix */
const yaml = (prefix: string, instance: string) =>
  sambaExampleYaml(`instance: ${instance}\nstate:\n  redis:\n    url: ${redis.url}\n    keyPrefix: '${prefix}'\n`, { provisioning: 'keep' })
    .replace('  mode: defguard ', '  retry: { initialMs: 200, maxMs: 1000 }\n  mode: defguard ')
    .replace(/ {4}groups:[^\n]*\n {6}Remote: remote-users\n/, '');

async function bind(url: string, name: string): Promise<void> {
  const c = new Client({ url, timeout: 15_000 });
  try {
    await c.bind(name, PW);
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

/** a direct connection to look at the outbox's keys */
async function inspect(t: Test, prefix: string) {
  const r = new Redis(redis.url, { maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  t.teardown(() => r.disconnect());
  const k = outboxKeys(prefix);
  return {
    pending: () => r.zcard(k.pending),
    inGroup: async () => ((await r.xpending(k.q, GROUP)) as [number])[0],
    settled: async () => (await r.zcard(k.pending)) === 0 && ((await r.xpending(k.q, GROUP)) as [number])[0] === 0 && (await r.zcard(k.retry)) === 0,
  };
}

/** per user: [GETs, POSTs answered 201] on the stand-in */
const counts = (dg: DefguardStandin, users: string[]) => users.map((u) => [u, dg.requests('GET', `/api/v1/user/${u}`).length, dg.requests('POST', '/api/v1/user').filter((r) => (r.body as { username: string }).username === u && r.status === 201).length]);
const once = (users: string[]) => users.map((u) => [u, 1, 1]);
const deliveredLines = (logs: string[]) => logs.filter((l) => l.includes('"msg":"event delivered"')).length;

async function standin(t: Test): Promise<DefguardStandin> {
  const dg = new DefguardStandin(DEFGUARD_TOKEN);
  await dg.up();
  t.teardown(() => dg.down());
  return dg;
}

async function gateway(t: Test, text: string, dgUrl: string): Promise<TestGateway> {
  const g = await startFromYaml(text, sambaEnv(dgUrl));
  t.teardown(() => g.stop());
  return g;
}

t.test('two gateways on one Redis: binds through A are delivered exactly once', async (t) => {
  const prefix = `gw${++n}:`;
  const dg = await standin(t);
  const a = await gateway(t, yaml(prefix, 'A'), dg.url);
  const b = await gateway(t, yaml(prefix, 'B'), dg.url);
  const users = ['alice', 'bob', 'carol', 'jmuller', 'eve'];
  for (const u of users) await bind(a.url, u);
  const k = await inspect(t, prefix);
  await eventually('all created', () => users.every((u) => dg.users.has(u)), { timeoutMs: 20_000, intervalMs: 50 });
  await eventually('nothing left in Redis', () => k.settled(), { timeoutMs: 10_000, intervalMs: 50 });
  t.same(counts(dg, users), once(users), 'each user: one GET, one creation');
  t.equal(dg.log.length, 2 * users.length, 'no other request');
  t.equal(deliveredLines(a.logs) + deliveredLines(b.logs), users.length, 'one delivery per event, by A or B');
});

t.test('the recording replica killed (-9) while Defguard hangs: the other delivers every acknowledged event exactly once', async (t) => {
  const prefix = `gw${++n}:`;
  const dg = await standin(t);
  await dg.down();
  // Defguard "failing": its port accepts requests and never answers them
  const hung: ServerResponse[] = [];
  const hang = createServer((_req, res) => void hung.push(res));
  await new Promise<void>((r) => hang.listen(dg.port, '127.0.0.1', () => r()));
  const dir = mkdtempSync(join(tmpdir(), 'gw-kill-redis-'));
  const cfgFile = join(dir, 'gateway.yaml');
  writeFileSync(cfgFile, yaml(prefix, 'A').replace(/\.\.\/\.\.\/certs\//g, `${ROOT}/certs/`));
  const env = sambaEnv(dg.url);
  const a = await spawnGateway({ args: ['--config', cfgFile], env });
  t.teardown(() => a.kill('SIGKILL'));
  const users = ['alice', 'bob', 'carol', 'jmuller', 'eve', 'pobrien'];
  for (const u of users) await bind(a.url, u);
  await eventually('A is delivering one of them (its request hangs)', () => hung.length >= 1, { timeoutMs: 10_000, intervalMs: 20 });
  t.match(await a.kill('SIGKILL'), { signal: 'SIGKILL' }, 'A killed right after its binds were acknowledged');
  t.equal(a.lines.all.filter((l) => l.includes('"msg":"event delivered"')).length, 0, 'nothing was delivered before the kill');

  const listed = await run(process.execPath, [join(ROOT, 'bin', 'ldap-gateway.js'), 'outbox', 'list', '--config', cfgFile], env);
  t.match(listed.stdout, new RegExp(`^${users.length} pending, 0 dead; .*\\(Redis; 0 kept locally`, 'm'), 'the outbox CLI lists them in Redis');
  rmSync(dir, { recursive: true, force: true }); // A's disk is gone too: nothing may depend on it

  hang.closeAllConnections();
  await new Promise<void>((r) => hang.close(() => r()));
  await dg.up(); // Defguard answers again, on the same port
  const b = await gateway(t, yaml(prefix, 'B'), dg.url);
  const k = await inspect(t, prefix);
  await eventually('all created by B', () => users.every((u) => dg.users.has(u)), { timeoutMs: 40_000, intervalMs: 100 });
  await eventually('nothing left in Redis', () => k.settled(), { timeoutMs: 15_000, intervalMs: 50 });
  t.same(counts(dg, users), once(users), 'each user: one GET, one creation');
  t.equal(dg.log.length, 2 * users.length, 'no other request reached Defguard');
  t.equal(deliveredLines(b.logs), users.length, 'B delivered each event once');
  t.ok(b.logs.some((l) => /"claimed":[1-9]/.test(l)), "B took over the event A held when it died (after A's lease)");
});

t.test('Redis stopped: binds go on, events kept locally; Redis back: handed over and delivered exactly once', async (t) => {
  const prefix = `gw${++n}:`;
  const dg = await standin(t);
  const a = await gateway(t, yaml(prefix, 'A'), dg.url);
  const b = await gateway(t, yaml(prefix, 'B'), dg.url);
  const k = await inspect(t, prefix);
  await bind(a.url, 'ann.contractor'); // one event before the outage, delivered normally
  await eventually('first delivered', () => dg.users.has('ann.contractor'), { timeoutMs: 15_000, intervalMs: 50 });
  await eventually('settled', () => k.settled(), { timeoutMs: 10_000, intervalMs: 50 });

  await redis.stop();
  const users = ['alice', 'bob', 'carol', 'jmuller'];
  for (const u of users) await bind(a.url, u); // rejects if a bind is refused
  const local = async () => Number(/^ldap_gateway_outbox_local_events (\S+)/m.exec(await (await fetch(`${a.httpUrl}/metrics`)).text())?.[1] ?? -1);
  await eventually('the four kept locally', async () => (await local()) === 4, { timeoutMs: 5000, intervalMs: 100 });
  t.ok(a.logs.some((l) => l.includes('Redis unavailable: provisioning events are kept in the local outbox')), 'the outage is logged');
  t.equal(users.filter((u) => dg.users.has(u)).length, 0, 'nothing delivered while Redis is down');

  await redis.start();
  await eventually('all created', () => users.every((u) => dg.users.has(u)), { timeoutMs: 30_000, intervalMs: 100 });
  await eventually('nothing left in Redis or locally', async () => (await k.settled()) && (await local()) === 0, { timeoutMs: 15_000, intervalMs: 100 });
  t.ok(a.logs.some((l) => /"handedOver":\d/.test(l)), 'A handed its local events over');
  const all = ['ann.contractor', ...users];
  t.same(counts(dg, all), once(all), 'each user: one GET, one creation');
  t.equal(dg.log.length, 2 * all.length, 'no other request');
  t.equal(deliveredLines(a.logs) + deliveredLines(b.logs), all.length, 'one delivery per event');
});
