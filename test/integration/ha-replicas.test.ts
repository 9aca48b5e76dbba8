// Two replicas behind a real HAProxy (issue 13, "Tests"): both spawned as their own processes
// (bin/ldap-gateway.js, so one can be killed with -9) from config/examples/ha-replica.yaml, the
// environment giving each its instance name, ports and outbox folder; HAProxy in TCP mode with
// send-proxy-v2 and an LDAP health check to both (the options of deploy/haproxy/haproxy.cfg: retries 2,
// option redispatch; checks every 500 ms instead of 2 s), trusted as 127.0.0.1; one private redis-server
// (127.0.0.43, appendonly + appendfsync always, a password); one Samba AD DC of this file's own
// (127.0.0.19, cloned from the test bed's template: its lockout counts and writes disturb no other test);
// the Defguard API stand-in. Clients reach HAProxy from distinct loopback sources (127.0.0.1xx/2xx) where
// the test has to tell them apart; to talk to one replica on purpose a client connects to it directly
// from an untrusted source, which the gateway serves without a PROXY header (proxy-protocol.test.ts).
// Bind load uses the test bed's bulk users (bulk0001…bulk1500), each bound once, so that every
// acknowledged bind is exactly one new provisioning event for one Defguard user.
// The subtests run in order; the kill -9 comes last (it leaves one replica).
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { Attribute, Change, Client, type Entry } from 'ldapts';
import { DefguardStandin } from '../standins/defguard-api';
import { bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, DEFGUARD_TOKEN, ROOT, run, sambaEnv } from '../helpers/gateway';
import { freePort, serverStates, startHaproxy, tcpConfig, waitHealthy, type Haproxy } from '../helpers/haproxy';
import { eventually, parseLine, type LogRecord } from '../helpers/lines';
import { redisServer, type OutboxRedisServer } from '../helpers/outbox-redis-server';
import { spawnGateway, type GatewayProcess } from '../helpers/process';
import { GROUP, outboxKeys } from '../../src/provisioning/redis-outbox';

const SCRIPT = join(ROOT, 'test', 'testbed', 'samba-ad-testbed.sh');
const IP = '127.0.0.19';
const TMP = mkdtempSync(join(tmpdir(), 'gw-ha-'));
const DIR = join(TMP, 'dc');
const LDAPS = `ldaps://${IP}:636`;
const CA = join(DIR, 'tls', 'ca.pem'); // the clone's certificate is issued for its own address
const BASE = bedEnv('SAMBA_AD_BASE_DN');
const PW = bedEnv('SAMBA_AD_USER_PASS');
const REDIS_IP = '127.0.0.43';
const REDIS_PASSWORD = 'ha-redis-Secret-4410';
const PREFIX = 'ldap-gateway:'; // ha-replica.yaml's keyPrefix
const UBASE = 'ou=users,dc=vpn,dc=example,dc=test';
const GBASE = 'ou=groups,dc=vpn,dc=example,dc=test';
const userDN = (u: string) => `uid=${u},${UBASE}`;
const groupDN = (g: string) => `cn=${g},${GBASE}`;

let redis: OutboxRedisServer;
let dg: DefguardStandin;
let hp: Haproxy;
let hpPort = 0;
let admin: Client; // the domain admin, directly on the DC
const gw: Record<'gw1' | 'gw2', GatewayProcess> = {} as never;

/** ha-replica.yaml as shipped, with fast delivery retries (the default back-off starts at 1 s and doubles up to 5 min: the test would wait on it) */
function replicaYaml(): string {
  const text = readFileSync(join(ROOT, 'config', 'examples', 'ha-replica.yaml'), 'utf8');
  const out = text.replace('  mode: defguard ', '  retry: { initialMs: 200, maxMs: 1000 }\n  mode: defguard ');
  if (out === text) throw new Error('config/examples/ha-replica.yaml: no "  mode: defguard" line under provisioning');
  return out;
}

function replicaEnv(name: string): NodeJS.ProcessEnv {
  return {
    ...sambaEnv(dg.url),
    SAMBA_AD_LDAPS_URL: LDAPS,
    SAMBA_AD_URL: `ldap://${IP}:389`,
    SAMBA_AD_CA_FILE: CA,
    GATEWAY_INSTANCE: name,
    GATEWAY_LISTEN_ADDRESS: '127.0.0.1',
    GATEWAY_LDAP_PORT: '0',
    GATEWAY_LDAPS_PORT: '0',
    GATEWAY_HTTP_PORT: '0',
    GATEWAY_TLS_CERT: join(ROOT, 'certs', 'server.crt'),
    GATEWAY_TLS_KEY: join(ROOT, 'certs', 'server.key'),
    GATEWAY_OUTBOX_DIR: mkdtempSync(join(TMP, `outbox-${name}-`)),
    GATEWAY_TRUSTED_PROXY: '127.0.0.1',
    REDIS_URL: redis.url,
    REDIS_PASSWORD,
  };
}

t.before(async () => {
  const build = await run('npm', ['run', 'build'], process.env, 120_000);
  if (build.code !== 0) throw new Error(`npm run build failed: ${build.stdout}${build.stderr}`);
  const cl = await run('bash', [SCRIPT, 'clone', bedEnv('SAMBA_AD_TEMPLATE'), DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (cl.code !== 0) throw new Error(`clone failed: ${cl.stderr}`);
  const up = await run('bash', [SCRIPT, 'up', DIR], { ...process.env, SAMBA_IP: IP }, 60_000);
  if (up.code !== 0) throw new Error(`samba up failed: ${up.stderr}`);
  admin = new Client({ url: LDAPS, timeout: 10_000, tlsOptions: { ca: [readFileSync(CA)] } });
  await admin.bind(bedEnv('SAMBA_AD_ADMIN_DN'), bedEnv('SAMBA_AD_ADMIN_PASS'));
  // the test bed's domain has no lockout threshold (only 'guarded' has one, 5, from a fine-grained
  // policy), and without one AD keeps no badPwdCount: this clone's domain gets AD's usual 5 (what
  // `samba-tool domain passwordsettings set --account-lockout-threshold=5` writes)
  await admin.modify(BASE, [new Change({ operation: 'replace', modification: new Attribute({ type: 'lockoutThreshold', values: ['5'] }) })]);
  redis = await redisServer(REDIS_IP, 6379, { password: REDIS_PASSWORD });
  dg = new DefguardStandin(DEFGUARD_TOKEN);
  await dg.up();
  const cfgFile = join(TMP, 'ha-replica.yaml');
  writeFileSync(cfgFile, replicaYaml());
  const [g1, g2] = await Promise.all(['gw1', 'gw2'].map((name) => spawnGateway({ args: ['--config', cfgFile], env: replicaEnv(name), timeoutMs: 30_000 })));
  Object.assign(gw, { gw1: g1, gw2: g2 });
  hpPort = await freePort();
  const cfg = tcpConfig([{ name: 'ldap', bind: { host: '127.0.0.1', port: hpPort }, servers: [g1, g2].map((g) => ({ host: '127.0.0.1', port: g?.ldapPort as number })), proxyProtocol: 'v2', check: 'ldap', checkIntervalMs: 500 }])
    // deploy/haproxy/haproxy.cfg's defaults: a connection that cannot reach a server goes to another
    .replace('  timeout check 2s\n', '  timeout check 2s\n  retries 2\n  option redispatch\n');
  hp = await startHaproxy(cfg);
  await waitHealthy(hp, ['be_ldap']);
});

t.teardown(async () => {
  // HA_TEST_LOGS=DIR keeps the replicas' and HAProxy's output for a look after the run
  if (process.env.HA_TEST_LOGS) for (const [n, g] of Object.entries(gw)) writeFileSync(join(process.env.HA_TEST_LOGS, `${n}.log`), g.output());
  if (process.env.HA_TEST_LOGS && hp) writeFileSync(join(process.env.HA_TEST_LOGS, 'haproxy.log'), hp.output());
  await hp?.stop().catch(() => undefined);
  for (const g of Object.values(gw)) await g?.stop().catch(() => g.kill('SIGKILL'));
  await dg?.down().catch(() => undefined);
  await redis?.destroy().catch(() => undefined);
  await admin?.unbind().catch(() => undefined);
  await run('bash', [SCRIPT, 'down', DIR], process.env, 60_000); // signals only the PID its 'up' recorded
  rmSync(TMP, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------
// helpers

/** an ldapts client to host:port from a chosen loopback source */
function clientFrom(source: string, port: number, timeout = 10_000): Client {
  return new Client({ url: `ldap://127.0.0.1:${port}`, timeout, createConnection: ((p: number, host: string) => netConnect({ port: p, host, localAddress: source })) as unknown as typeof netConnect });
}

interface Outcome {
  ok: boolean;
  code?: number;
  message?: string;
}

/** connect, bind, unbind: one operation */
async function bindFrom(source: string, port: number, name: string, password: string): Promise<Outcome> {
  const c = clientFrom(source, port);
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

const json = (g: GatewayProcess, from = 0): LogRecord[] => g.lines.all.slice(from).map((l) => parseLine(l)).filter((x): x is LogRecord => !!x);
const bindLines = (g: GatewayProcess, name: string, from = 0) => json(g, from).filter((j) => j.event === 'bind' && typeof j.name === 'string' && j.name.toLowerCase() === name.toLowerCase());
const deliveries = (g: GatewayProcess, subject: string) => json(g).filter((j) => j.msg === 'event delivered' && j.subject === subject);
const delivered = (g: GatewayProcess, subject: string) => deliveries(g, subject).length;
/** what the delivery lines say about one user, for a failure's diagnostics */
const deliveryDetail = (u: string) => (['gw1', 'gw2'] as const).flatMap((n) => deliveries(gw[n], u).map((j) => ({ by: n, id: j.id, result: j.result, attempts: j.attempts, time: j.time })));
const isBulk = (j: LogRecord | undefined) => typeof j?.name === 'string' && j.name.startsWith('bulk');
const marks = () => ({ gw1: gw.gw1.lines.all.length, gw2: gw.gw2.lines.all.length });

/** what AD itself counts for an account */
async function adLockState(dn: string): Promise<{ badPwdCount: number; lockoutTime: number }> {
  const e = (await admin.search(dn, { scope: 'base', filter: '(objectClass=*)', attributes: ['badPwdCount', 'lockoutTime'] })).searchEntries[0];
  return { badPwdCount: Number(e?.badPwdCount ?? 0), lockoutTime: Number(e?.lockoutTime ?? 0) };
}

/** a simple bind straight to the DC over LDAPS: 0, or the result code */
async function adBind(name: string, pw: string): Promise<number> {
  const u = new Client({ url: LDAPS, timeout: 10_000, tlsOptions: { ca: [readFileSync(CA)] } });
  try {
    await u.bind(name, pw);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  } finally {
    await u.unbind().catch(() => undefined);
  }
}

function vals(e: Entry | undefined, name: string): string[] {
  if (!e) return [];
  const k = Object.keys(e).find((x) => x.toLowerCase() === name.toLowerCase());
  const v = k === undefined ? undefined : e[k];
  if (v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : String(x)));
}
const lower = (xs: string[]) => xs.map((x) => x.toLowerCase()).sort();

/** the outbox's keys in Redis, read directly */
async function inspect(t: Test) {
  const r = new Redis(redis.url, { password: REDIS_PASSWORD, maxRetriesPerRequest: 1 });
  r.on('error', () => undefined);
  t.teardown(() => r.disconnect());
  const k = outboxKeys(PREFIX);
  return {
    settled: async () => (await r.zcard(k.pending)) === 0 && ((await r.xpending(k.q, GROUP)) as [number])[0] === 0 && (await r.zcard(k.retry)) === 0,
    dead: () => r.zcard(k.dead).catch(() => -1),
  };
}

/** the bulk users, each handed out once */
let nextBulk = 1;
const takeBulk = (limit: number): string | undefined => (nextBulk <= limit ? `bulk${String(nextBulk++).padStart(4, '0')}` : undefined);

interface Sample {
  start: number;
  end: number;
  user: string;
  ok: boolean;
  code?: number;
  message?: string;
}

/** n clients (sources 127.0.0.(base+i)) binding fresh bulk users through HAProxy until stop() or the users run out */
function load(n: number, sourceBase: number, lastUser: number) {
  const samples: Sample[] = [];
  let stopped = false;
  const done = Promise.all(
    Array.from({ length: n }, async (_, i) => {
      for (;;) {
        const user = stopped ? undefined : takeBulk(lastUser);
        if (!user) return;
        const start = Date.now();
        const r = await bindFrom(`127.0.0.${sourceBase + i}`, hpPort, user, PW);
        samples.push({ start, end: Date.now(), user, ...r });
      }
    }),
  );
  return {
    samples,
    ok: () => samples.filter((s) => s.ok).length,
    stop: async () => {
      stopped = true;
      await done;
      return samples;
    },
  };
}

/** per user: POSTs answered 201 on the stand-in, and any other POST for it */
const creations = (user: string) => dg.requests('POST', '/api/v1/user').filter((r) => (r.body as { username?: string } | undefined)?.username === user);

const metric = async (g: GatewayProcess, re: RegExp) => Number(re.exec(await (await fetch(`${g.httpUrl}/metrics`)).text())?.[1] ?? NaN);

// ---------------------------------------------------------------------------------------------------

t.test('through HAProxy: the bind audit line on the replica that served it names the client, not HAProxy', async (t) => {
  const from = marks();
  t.match(await bindFrom('127.0.0.101', hpPort, 'alice', PW), { ok: true });
  t.match(await bindFrom('127.0.0.102', hpPort, 'bob', PW), { ok: true });
  // the replicas' output arrives through pipes: wait for both audit lines (on whichever replica)
  await eventually('both audit lines', () => (['gw1', 'gw2'] as const).reduce((a, n) => a + bindLines(gw[n], 'alice', from[n]).length + bindLines(gw[n], 'bob', from[n]).length, 0) >= 2, { timeoutMs: 5000 });
  for (const [user, client] of [
    ['alice', '127.0.0.101'],
    ['bob', '127.0.0.102'],
  ] as const) {
    const seen = (['gw1', 'gw2'] as const).flatMap((n) => bindLines(gw[n], user, from[n]).map((j) => ({ replica: n, client: j.client, result: j.result, instance: j.instance })));
    t.equal(seen.length, 1, `${user}: one bind audit line, on one replica (${seen[0]?.replica})`);
    t.match(seen[0], { client, result: 'success' }, `${user}: client ${client}, as HAProxy saw it`);
    t.not(seen[0]?.client, '127.0.0.1', "never HAProxy's address");
  }
  const served = (['gw1', 'gw2'] as const).filter((n) => bindLines(gw[n], 'alice', from[n]).length + bindLines(gw[n], 'bob', from[n]).length > 0);
  t.same(served, ['gw1', 'gw2'], 'HAProxy sent one to each replica (round robin)');
});

t.test('twenty wrong binds for one account across both replicas: the shared per-account limit stops them before AD locks it', async (t) => {
  const dn = `CN=guarded,OU=People,${BASE}`; // AD locks it after 5 bad passwords (the test bed's guard-pso)
  t.same(await adLockState(dn), { badPwdCount: 0, lockoutTime: 0 }, 'AD: a clean start');
  const from = marks();
  const answers: Array<string | undefined> = [];
  // a source address per attempt: the per-(account, address) window (3) never trips, only the per-account one (4)
  for (let i = 0; i < 20; i++) answers.push((await bindFrom(`127.0.0.${120 + i}`, hpPort, 'guarded', `Wrong-${i}-pw`)).message);
  await eventually('twenty audit lines', () => bindLines(gw.gw1, 'guarded', from.gw1).length + bindLines(gw.gw2, 'guarded', from.gw2).length >= 20, { timeoutMs: 5000 });
  t.same(answers, [...Array(4).fill('bad_credentials'), ...Array(16).fill('throttled')], 'protection.lockout.perAccount (default 4): the first four reach AD, the other sixteen are refused by the gateway');
  const reached = (['gw1', 'gw2'] as const).map((n) => bindLines(gw[n], 'guarded', from[n]).filter((j) => j.reason === 'bad_credentials').length);
  t.same(reached, [2, 2], 'the four that reached AD: two through each replica, counted together');
  const refused = (['gw1', 'gw2'] as const).map((n) => bindLines(gw[n], 'guarded', from[n]).filter((j) => j.reason === 'throttled').length);
  t.same(refused, [8, 8], 'both replicas refuse');
  const ad = await adLockState(dn);
  t.equal(ad.badPwdCount, 4, "AD's own badPwdCount: 4, below its threshold (5)");
  t.equal(ad.lockoutTime, 0, 'AD did not lock the account');
  t.equal(await adBind(dn, PW), 0, 'the right password binds directly on the DC');
});

t.test('a member added through one replica is a member when read through the other at once', async (t) => {
  const c1 = clientFrom('127.0.0.201', gw.gw1.ldapPort as number);
  const c2 = clientFrom('127.0.0.202', gw.gw2.ldapPort as number);
  t.teardown(() => Promise.all([c1.unbind().catch(() => undefined), c2.unbind().catch(() => undefined)]));
  await c1.bind(CONSUMER_DN, CONSUMER_PASSWORD);
  await c2.bind(CONSUMER_DN, CONSUMER_PASSWORD);
  const from = marks();
  const s9 = async (c: Client) => lower(vals((await c.search(GBASE, { scope: 'sub', filter: '(&(objectClass=groupOfUniqueNames)(cn=ha-team))', attributes: ['uniqueMember'] })).searchEntries[0], 'uniqueMember'));
  const s8 = (c: Client) => c.search(GBASE, { scope: 'sub', filter: `(&(objectClass=groupOfUniqueNames)(cn=ha-team)(uniqueMember=${userDN('bob')}))`, attributes: ['cn'] }).then((r) => r.searchEntries.length);
  const memberOf = async (c: Client, u: string) => lower(vals((await c.search(UBASE, { scope: 'sub', filter: `(&(uid=${u})(objectClass=inetOrgPerson))`, attributes: ['memberOf'] })).searchEntries[0], 'memberOf'));

  // W6 through gw1: a managed group with alice
  await c1.add(groupDN('ha-team'), [new Attribute({ type: 'objectClass', values: ['groupOfUniqueNames'] }), new Attribute({ type: 'cn', values: ['ha-team'] }), new Attribute({ type: 'uniqueMember', values: [userDN('alice')] })]);
  t.same(await s9(c2), [userDN('alice')], 'gw2 shows the group gw1 created, with alice');
  // gw2 now has these answers cached: bob without the group, the group without bob
  t.notOk((await memberOf(c2, 'bob')).includes(groupDN('ha-team')), 'bob is not in ha-team yet (gw2)');
  t.equal(await s8(c2), 0, 'S8 through gw2: not yet a member');

  // W7 through gw1
  await c1.modify(groupDN('ha-team'), [new Change({ operation: 'add', modification: new Attribute({ type: 'uniqueMember', values: [userDN('bob')] }) })]);
  const ad = (await admin.search(`CN=ha-team,OU=Groups,${BASE}`, { scope: 'base', filter: '(objectClass=*)', attributes: ['member'] })).searchEntries[0];
  t.same(lower(vals(ad, 'member')), lower([`CN=alice,OU=People,${BASE}`, `CN=bob,OU=People,${BASE}`]), 'AD: bob added');
  // at once, through the other replica
  t.equal(await s8(c2), 1, 'S8 through gw2 finds the membership at once');
  t.same(await s9(c2), lower([userDN('alice'), userDN('bob')]), 'S9 through gw2 lists both members');
  t.ok((await memberOf(c2, 'bob')).includes(groupDN('ha-team')), "bob's memberOf through gw2 names ha-team");
  const writes = json(gw.gw1, from.gw1).filter((j) => j.msg === 'write');
  t.equal(writes.length, 2, 'both writes went through gw1');
  t.equal(json(gw.gw2, from.gw2).filter((j) => j.msg === 'write').length, 0, 'none through gw2');
});

t.test('Redis stopped mid-load, then started: binds go on, no event lost, lockout counters shared again', async (t) => {
  const k = await inspect(t);
  await eventually('earlier events delivered', () => k.settled(), { timeoutMs: 20_000, intervalMs: 100 });
  const l = load(8, 150, 700);
  let restartedAt = 0;
  let stoppedAt = 0;
  let during: Array<{ status: number; body: string }> = [];
  try {
    await eventually('20 binds before the stop', () => l.ok() >= 20, { timeoutMs: 20_000, intervalMs: 20 });
    const m = marks();
    stoppedAt = Date.now();
    await redis.stop();
    const down = (j: LogRecord | undefined) => j?.event === 'state_backend' && j.up === false;
    await Promise.all([gw.gw1.waitFor((_l, j) => down(j), { from: m.gw1, timeoutMs: 10_000 }), gw.gw2.waitFor((_l, j) => down(j), { from: m.gw2, timeoutMs: 10_000 })]);
    const okAtStop = l.ok();
    await eventually('30 binds acknowledged while Redis is down', () => l.ok() >= okAtStop + 30, { timeoutMs: 20_000, intervalMs: 20 });
    during = await Promise.all([gw.gw1, gw.gw2].map(async (g) => { const r = await fetch(`${g.httpUrl}/readyz`); return { status: r.status, body: await r.text() }; }));
    const m2 = marks();
    restartedAt = Date.now();
    await redis.start();
    const back = (j: LogRecord | undefined) => j?.event === 'state_backend' && j.up === true;
    await Promise.all([gw.gw1.waitFor((_l, j) => back(j), { from: m2.gw1, timeoutMs: 15_000 }), gw.gw2.waitFor((_l, j) => back(j), { from: m2.gw2, timeoutMs: 15_000 })]);
    const okAtStart = l.ok();
    await eventually('20 binds after Redis is back', () => l.ok() >= okAtStart + 20, { timeoutMs: 20_000, intervalMs: 20 });
  } finally {
    await l.stop();
  }
  const samples = l.samples;
  const failed = samples.filter((s) => !s.ok);
  const whileDown = samples.filter((s) => s.start >= stoppedAt && s.end <= restartedAt);
  t.comment(`Redis phase: ${samples.length} binds, ${failed.length} failed, ${whileDown.filter((s) => s.ok).length} acknowledged while Redis was down; slowest bind ${Math.max(...samples.map((s) => s.end - s.start))} ms`);
  t.same(failed.map((s) => [s.user, s.code, s.message]), [], 'no bind failed (onUnavailable: local)');
  t.ok(gw.gw1.running() && gw.gw2.running(), 'both replicas still running');
  t.same(during.map((d) => d.status), [200, 200], '/readyz stays 200 on both while Redis is down (local mode)');
  t.ok(during.every((d) => /degraded/.test(d.body)), `and says the state is per process: ${JSON.stringify(during.map((d) => d.body))}`);

  // every acknowledged bind's event delivered exactly once
  const users = samples.filter((s) => s.ok).map((s) => s.user);
  await eventually('every acknowledged user created on the stand-in', () => users.every((u) => dg.users.has(u)), { timeoutMs: 60_000, intervalMs: 200 });
  await eventually('nothing left in Redis or locally', async () => (await k.settled()) && (await metric(gw.gw1, /^ldap_gateway_outbox_local_events (\S+)/m)) === 0 && (await metric(gw.gw2, /^ldap_gateway_outbox_local_events (\S+)/m)) === 0, { timeoutMs: 20_000, intervalMs: 200 });
  const notOnce = users.filter((u) => creations(u).length !== 1 || creations(u)[0]?.status !== 201);
  t.same(notOnce.map((u) => ({ user: u, creations: creations(u).map((r) => r.status) })), [], `each of the ${users.length} users created once on Defguard`);
  // an event is delivered once: not again by another replica (a second delivery of a creation finds
  // the user and says "unchanged"; of an update it would PUT again)
  const twice = users.filter((u) => delivered(gw.gw1, u) + delivered(gw.gw2, u) !== 1);
  t.same(twice.map((u) => ({ user: u, deliveries: deliveryDetail(u) })), [], `each of the ${users.length} events delivered exactly once, by one replica`);
  t.equal(await k.dead(), 0, 'no dead letter');
  t.ok(json(gw.gw1).concat(json(gw.gw2)).some((j) => typeof j.handedOver === 'number' && j.handedOver > 0), 'events kept locally were handed over to Redis');

  // the lockout windows are shared again: carol, untouched so far; two wrong binds on each replica, directly
  const direct = (n: 'gw1' | 'gw2', i: number) => bindFrom(`127.0.0.${210 + i}`, gw[n].ldapPort as number, 'carol', `Carol-Wrong-${i}`).then((r) => r.message);
  const answers = [];
  for (const [i, n] of (['gw1', 'gw1', 'gw2', 'gw2', 'gw1', 'gw2'] as const).entries()) answers.push(await direct(n, i));
  t.same(answers, ['bad_credentials', 'bad_credentials', 'bad_credentials', 'bad_credentials', 'throttled', 'throttled'], 'after Redis is back: 2 + 2 wrong binds on the two replicas add up to the per-account limit (4)');
  t.equal((await adLockState(`CN=carol,OU=People,${BASE}`)).badPwdCount, 4, 'AD counted four');
});

t.test('kill -9 of one replica under a steady bind load: only its in-flight operations fail; its events are delivered exactly once by the other', async (t) => {
  const k = await inspect(t);
  await eventually('earlier events delivered', () => k.settled(), { timeoutMs: 20_000, intervalMs: 100 });
  // Defguard "failing": its port accepts requests and never answers them, so each replica holds the
  // event it is delivering (heartbeat on its lease) and every other event recorded from now on waits
  await dg.down();
  const dgFrom = dg.log.length;
  const hung: ServerResponse[] = [];
  const hang = createServer((_req, res) => void hung.push(res));
  await new Promise<void>((r) => hang.listen(dg.port, '127.0.0.1', () => r()));
  t.teardown(() => new Promise<void>((r) => (hang.closeAllConnections(), hang.close(() => r()))));
  const victim = gw.gw2;
  const survivor = gw.gw1;
  const from = marks();
  const l = load(8, 160, 1500);
  let killAt = 0;
  let diedAt = 0;
  let downAt = 0;
  try {
    // binds acknowledged by the victim (each a recorded event)
    await victim.waitFor((_l, j) => isBulk(j) && j?.event === 'bind' && j.result === 'success', { from: from.gw2, count: 30, timeoutMs: 20_000 });
    await eventually('both replicas are delivering (their requests hang)', () => hung.length >= 2, { timeoutMs: 10_000, intervalMs: 20 });
    killAt = Date.now();
    t.match(await victim.kill('SIGKILL'), { signal: 'SIGKILL' }, 'gw2 killed (-9)');
    diedAt = Date.now(); // its exit seen (and its output read to the end)
    // HAProxy's view: poll its stats socket until s2 is DOWN (no event announces it)
    for (;;) {
      const s2 = (await serverStates(hp)).find((s) => s.backend === 'be_ldap' && s.server === 's2');
      if (s2 && s2.status.startsWith('DOWN')) break;
      if (Date.now() - killAt > 10_000) throw new Error(`HAProxy did not mark gw2 down: ${JSON.stringify(s2)}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    downAt = Date.now();
    await survivor.waitFor((_l, j) => isBulk(j) && j?.event === 'bind' && j.result === 'success', { from: survivor.lines.all.length, count: 40, timeoutMs: 20_000 });
  } finally {
    await l.stop();
  }
  const samples = l.samples;
  const failed = samples.filter((s) => !s.ok);
  const lastFail = Math.max(...failed.map((s) => s.end));
  t.comment(
    `kill -9 phase: ${samples.length} binds (8 clients), ${failed.length} failed (${JSON.stringify([...new Set(failed.map((s) => s.message))])}), ` +
      `started at ${JSON.stringify(failed.map((s) => s.start - killAt))} ms and ended at ${JSON.stringify(failed.map((s) => s.end - killAt))} ms from the kill; ` +
      `last failure ${failed.length ? lastFail - killAt : '-'} ms after the kill (gw2's exit seen after ${diedAt - killAt} ms); HAProxy marked gw2 DOWN ${downAt - killAt} ms after the kill; ` +
      `${samples.filter((s) => s.ok && s.start > diedAt).length} binds acknowledged after gw2's exit`,
  );
  t.ok(failed.length <= 8, `at most one operation in flight per client fails (${failed.length})`);
  t.same(failed.filter((s) => s.start > diedAt).map((s) => [s.user, s.start - killAt, s.message]), [], 'every failed operation had started before gw2 was gone (in flight on it): none sent afterwards failed (HAProxy redispatched them)');
  t.ok(samples.filter((s) => s.ok && s.start > diedAt).length >= 40, 'binds go on through gw1');

  // what gw2 recorded before it died: an event per bind its audit line calls a success (recorded
  // before the answer; a few of those answers died with it), pending in Redis
  const onVictim = json(victim, from.gw2).filter((j) => isBulk(j) && j.event === 'bind' && j.result === 'success').map((j) => String(j.name));
  const acknowledged = samples.filter((s) => s.ok).map((s) => s.user);
  const lostAnswers = onVictim.filter((u) => !acknowledged.includes(u));
  t.ok(onVictim.length >= 30, `gw2 recorded ${onVictim.length} binds before the kill (${lostAnswers.length} of them answered too late for the client)`);
  t.ok(lostAnswers.every((u) => failed.some((s) => s.user === u)), 'a success on gw2 the client never heard of is one of the failed operations');
  t.equal(json(victim, from.gw2).filter((j) => j.msg === 'event delivered').length, 0, 'gw2 delivered none of them (Defguard did not answer)');
  hang.closeAllConnections();
  await new Promise<void>((r) => hang.close(() => r()));
  await dg.up(); // Defguard answers again, on the same port
  const users = [...new Set([...acknowledged, ...onVictim])];
  await eventually('every recorded user created on the stand-in', () => users.every((u) => dg.users.has(u)), { timeoutMs: 90_000, intervalMs: 200 });
  await eventually('nothing left in Redis', () => k.settled(), { timeoutMs: 30_000, intervalMs: 200 });
  const wrong = users.filter((u) => creations(u).length !== 1 || creations(u)[0]?.status !== 201 || delivered(survivor, u) !== 1);
  t.same(wrong.map((u) => ({ user: u, creations: creations(u).map((r) => r.status), deliveries: deliveryDetail(u) })), [], `each of the ${users.length} recorded users (${acknowledged.length} acknowledged; ${onVictim.length} recorded on gw2): one creation, delivered once, by gw1`);
  // Every creation request is for a bind the gateway recorded: acknowledged, logged by gw2, or in flight
  // on gw2 at the kill (its event can be in Redis while its audit line died with the process: then gw1
  // delivers it, a creation for a user the client saw fail, which is right: AD accepted that bind). None
  // is for anyone else, and none twice.
  const posted = dg.log.slice(dgFrom).filter((r) => r.method === 'POST').map((r) => String((r.body as { username?: string } | undefined)?.username));
  const inFlight = new Set(failed.map((s) => s.user));
  t.same(posted.filter((u) => !users.includes(u) && !inFlight.has(u)), [], 'no creation request for a bind nobody recorded');
  t.equal(new Set(posted).size, posted.length, `no user's creation was requested twice (${posted.length} requests, ${posted.filter((u) => !users.includes(u)).length} for binds in flight at the kill)`);
  t.same(onVictim.filter((u) => delivered(survivor, u) !== 1), [], "every event recorded on gw2 delivered by gw1, once");
  const twice = failed.filter((s) => creations(s.user).length > 1);
  t.same(twice.map((s) => s.user), [], 'a failed bind caused at most one creation');
  t.equal(await k.dead(), 0, 'no dead letter');
  t.ok(json(survivor).some((j) => typeof j.claimed === 'number' && j.claimed > 0), 'gw1 took over the events gw2 held when it died (after the lease)');
});

t.test('no secret in any log', async (t) => {
  const all = [gw.gw1.output(), gw.gw2.output(), hp.output()].join('\n');
  for (const s of [PW, bedEnv('SAMBA_AD_ADMIN_PASS'), CONSUMER_PASSWORD, DEFGUARD_TOKEN, REDIS_PASSWORD]) t.notOk(all.includes(s), `a secret of ${s.length} characters appears in no log`);
});
