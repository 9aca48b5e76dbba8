// `workers: 2` on one host (src/cluster/): two gateway processes share the listener; every limit holds
// for the whole host (lockout windows, the provisioning dedupe window), /metrics is the sum of both, a
// killed worker is replaced, SIGHUP is validated once and reaches both, SIGTERM drains both.
// The gateway runs as an operator runs it (bin/ldap-gateway.js), on the embedded demo directory.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { spawnGateway, type GatewayProcess } from '../helpers/process';
import type { LogRecord } from '../helpers/lines';

const BASE = 'dc=vpn,dc=example,dc=test';
const dir = mkdtempSync(join(tmpdir(), 'gw-cluster-'));
const file = join(dir, 'gateway.yaml');
const yaml = (level = 'info') => `workers: 2
demo: true
log:
  level: ${level}
listen:
  ldap: 127.0.0.1:0
  maxConnectionsPerIp: 3
http:
  listen: 127.0.0.1:0
directory:
  baseDN: ${BASE}
auth:
  resolveCacheMs: 0
protection:
  lockout:
    perAccountIp: 0
    perAccount: 4
provisioning:
  mode: log-only
`;

let gw: GatewayProcess;
t.before(async () => {
  writeFileSync(file, yaml());
  gw = await spawnGateway({ args: ['--config', file], timeoutMs: 30_000 });
});
t.teardown(async () => {
  if (gw?.running()) await gw.stop();
});

const records = (pred: (j: LogRecord) => boolean): LogRecord[] =>
  gw.lines.all.map((l) => {
    try {
      return JSON.parse(l) as LogRecord;
    } catch {
      return undefined;
    }
  }).filter((j): j is LogRecord => j !== undefined && pred(j));

/** one bind on its own connection (the supervisor hands connections to the workers in turn) */
async function bind(name: string, password: string): Promise<number> {
  const c = new Client({ url: gw.url, timeout: 10_000 });
  try {
    await c.bind(name, password);
    return 0;
  } catch (err) {
    return (err as { code?: number }).code ?? -1;
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

t.test('one listening line for the host, with both workers', async (t) => {
  t.equal(gw.listening.workers, 2);
  t.equal((gw.listening.pids as number[]).length, 2);
  // each worker writes its own lines: they may reach the supervisor's stdout after its summary line
  await gw.waitFor(() => records((j) => j.msg === 'gateway worker listening').length >= 2, { timeoutMs: 5000 });
  t.equal(records((j) => j.msg === 'gateway worker listening').length, 2, 'each worker listened');
});

t.test('the lockout shield counts failures across workers: the fifth wrong password is refused before AD sees it', async (t) => {
  const codes: number[] = [];
  for (let i = 1; i <= 6; i++) codes.push(await bind(`uid=alice,ou=users,${BASE}`, `Wrong-${i}`));
  t.same(codes, [49, 49, 49, 49, 49, 49]);
  const isAlice = (j: LogRecord | undefined) => j?.event === 'bind' && j.name === `uid=alice,ou=users,${BASE}`;
  // the audit lines come through the workers' stdout: wait for the sixth
  await gw.waitFor(() => records((j) => isAlice(j)).length >= 6, { timeoutMs: 5000 });
  const binds = records((j) => j.event === 'bind' && j.name === `uid=alice,ou=users,${BASE}`);
  // two workers write their audit lines in batches (log.flushMs): the lines' times give the order
  const reasons = binds.map((b) => b.reason as string);
  t.same([...reasons].sort(), ['bad_credentials', 'bad_credentials', 'bad_credentials', 'bad_credentials', 'throttled', 'throttled'], 'four reached the directory, two were refused by the shield');
  const at = (reason: string) => binds.filter((b) => b.reason === reason).map((b) => Date.parse(String(b.time)));
  t.ok(Math.max(...at('bad_credentials')) <= Math.min(...at('throttled')), 'and the refusals came after the four failures');
  t.same(new Set(binds.map((b) => b.worker)), new Set([0, 1]), 'both workers served these binds');
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  t.match(metrics, /^ldap_gateway_binds_total\{result="failure",reason="bad_credentials"\} 4$/m, '/metrics sums both workers');
  t.match(metrics, /^ldap_gateway_binds_total\{result="failure",reason="throttled"\} 2$/m);
});

t.test('the provisioning dedupe window holds across workers: four binds of one user, one event', async (t) => {
  for (let i = 0; i < 4; i++) t.equal(await bind(`uid=bob,ou=users,${BASE}`, 'demo-password'), 0);
  const isBob = (j: LogRecord) => j.event === 'bind' && j.name === `uid=bob,ou=users,${BASE}` && j.result === 'success';
  await gw.waitFor(() => records(isBob).length >= 4, { timeoutMs: 5000 });
  const served = records(isBob);
  t.equal(served.length, 4);
  t.same(new Set(served.map((b) => b.worker)), new Set([0, 1]), 'both workers served them');
  t.equal(records((j) => j.msg === 'would provision').length, 1, 'one provisioning event for the host');
});

t.test('maxConnectionsPerIp holds for the host: three connections spread over both workers, the fourth is refused', async (t) => {
  const open: Client[] = [];
  t.teardown(async () => {
    for (const c of open) await c.unbind().catch(() => undefined);
  });
  for (let i = 0; i < 3; i++) {
    const c = new Client({ url: gw.url, timeout: 5000 });
    await c.search('', { scope: 'base', attributes: ['vendorName'] });
    open.push(c);
  }
  // one more round trip each: the workers' announcements have crossed by then
  for (const c of open) await c.search('', { scope: 'base', attributes: ['vendorName'] });
  const fourth = new Client({ url: gw.url, timeout: 5000 });
  await t.rejects(fourth.search('', { scope: 'base', attributes: ['vendorName'] }), 'the fourth connection from this address is refused');
  await fourth.unbind().catch(() => undefined);
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  t.match(metrics, /^ldap_gateway_rejected_total\{reason="max_connections_per_ip"\} 1$/m);
  const accepted = records((j) => j.msg === 'gateway worker listening');
  t.ok(accepted.length >= 2);
  await (open.pop() as Client).unbind();
  const again = new Client({ url: gw.url, timeout: 5000 });
  // a closed connection frees its place on every worker (the close is announced too)
  let ok = false;
  for (let i = 0; i < 20 && !ok; i++) {
    try {
      await again.search('', { scope: 'base', attributes: ['vendorName'] });
      ok = true;
    } catch {
      await new Promise((r) => setTimeout(r, 50)); // bounded: the close's announcement is sub-millisecond
    }
  }
  t.ok(ok, 'after one closed, a new connection is accepted');
  await again.unbind().catch(() => undefined);
});

t.test('a worker killed with SIGKILL is replaced, and the gateway goes on serving', async (t) => {
  const [victim] = gw.listening.pids as number[];
  const from = gw.lines.all.length;
  process.kill(victim as number, 'SIGKILL');
  await gw.waitFor((_l, j) => j?.msg === 'gateway worker died: replacing it' && j.pid === victim, { from, timeoutMs: 10_000 });
  const started = JSON.parse(await gw.waitFor((_l, j) => j?.msg === 'gateway worker started', { from, timeoutMs: 10_000 })) as LogRecord;
  t.not(started.pid, victim, 'a new process');
  await gw.waitFor((_l, j) => j?.msg === 'gateway worker listening', { from, timeoutMs: 20_000 });
  for (let i = 0; i < 4; i++) t.equal(await bind(`uid=carol,ou=users,${BASE}`, 'demo-password'), 0, 'binds succeed on both workers');
  // the new worker took the host's state when it started: alice's window still holds on both
  const mark = gw.lines.all.length;
  for (let i = 7; i <= 8; i++) t.equal(await bind(`uid=alice,ou=users,${BASE}`, `Wrong-${i}`), 49);
  await gw.waitFor((_l, j) => j?.event === 'bind' && j.name === `uid=alice,ou=users,${BASE}`, { from: mark, count: 2, timeoutMs: 5000 });
  const after = gw.lines.all.slice(mark).map((l) => JSON.parse(l) as LogRecord).filter((j) => j.event === 'bind' && j.name === `uid=alice,ou=users,${BASE}`);
  t.same(after.map((j) => j.reason), ['throttled', 'throttled'], 'refused by the shield on both workers, the new one included');
  t.same(new Set(after.map((j) => j.worker)), new Set([0, 1]));
  const ready = await fetch(`${gw.httpUrl}/readyz`);
  t.equal(ready.status, 200, '/readyz: every worker is up again');
  const metrics = await (await fetch(`${gw.httpUrl}/metrics`)).text();
  t.match(metrics, /^ldap_gateway_worker_restarts_total 1$/m);
});

t.test('SIGHUP: a broken file is refused once, a valid one reaches every worker', async (t) => {
  let from = gw.lines.all.length;
  writeFileSync(file, 'workers: [\n');
  gw.child.kill('SIGHUP');
  await gw.waitFor((_l, j) => j?.msg === 'configuration reload refused: the running configuration stays', { from, timeoutMs: 10_000 });
  t.equal(await bind(`uid=carol,ou=users,${BASE}`, 'demo-password'), 0, 'still serving');
  from = gw.lines.all.length;
  writeFileSync(file, yaml('debug'));
  gw.child.kill('SIGHUP');
  await gw.waitFor((_l, j) => j?.msg === 'configuration reloaded' && j.worker === 0, { from, timeoutMs: 10_000 });
  await gw.waitFor((_l, j) => j?.msg === 'configuration reloaded' && j.worker === 1, { from, timeoutMs: 10_000 });
  t.pass('both workers reloaded');
});

t.test('SIGTERM drains both workers and the supervisor exits 0', async (t) => {
  const pids = records((j) => j.msg === 'gateway worker started').map((j) => j.pid as number);
  const { code, ms } = await gw.stop(20_000);
  t.equal(code, 0);
  t.ok(ms < 15_000, `stopped in ${ms} ms`);
  for (const pid of pids) t.throws(() => process.kill(pid, 0), 'worker gone');
});
