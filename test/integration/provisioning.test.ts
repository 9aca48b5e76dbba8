// Provisioning into Defguard: real binds against Samba AD, delivered to the Defguard API STAND-IN
// (test/standins/defguard-api.ts), through the durable outbox.
import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { DefguardStandin } from '../standins/defguard-api';
import { bedEnv, DEFGUARD_TOKEN, ROOT, run, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';
import { eventually, type LineMatch } from '../helpers/lines';
import { spawnGateway } from '../helpers/process';

const PW = bedEnv('SAMBA_AD_USER_PASS');

/** the example config with fast retries, delivering to the stand-in */
const yaml = (extra = '') => sambaExampleYaml(extra, { provisioning: 'keep' }).replace('  mode: defguard ', '  retry: { initialMs: 200, maxMs: 1000 }\n  mode: defguard ');

async function bind(g: TestGateway, name: string, pw = PW): Promise<void> {
  const c = new Client({ url: g.url, timeout: 10_000 });
  try {
    await c.bind(name, pw);
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

/** the stand-in announces nothing: its state is checked until it holds (bounded) */
const until = (what: string, ok: () => boolean, ms = 10_000) => eventually(what, ok, { timeoutMs: ms, intervalMs: 50 });

/** the worker's log line for a delivered event of this user */
const delivered = (subject: string): LineMatch => (_l, j) => j?.msg === 'event delivered' && j.subject === subject;

/** A Defguard stand-in (with the mapped group) and a gateway delivering to it; both stopped after the test. */
async function setup(t: Test, o: { config?: string; outage?: boolean } = {}): Promise<{ dg: DefguardStandin; g: TestGateway }> {
  const dg = new DefguardStandin(DEFGUARD_TOKEN);
  dg.groups.add('remote-users');
  await dg.up();
  if (o.outage) await dg.down(); // the port is known, nothing listens until dg.up()
  t.teardown(() => dg.down());
  const g = await startFromYaml(o.config ?? yaml(), sambaEnv(dg.url));
  t.teardown(() => g.stop());
  return { dg, g };
}

const noGroups = () => yaml().replace(/ {4}groups:\n {6}Remote: remote-users\n/, '');

const metric = async (g: TestGateway, re: RegExp) => Number(re.exec(await (await fetch(`${g.httpUrl}/metrics`)).text())?.[1] ?? 0);

t.test('a first bind creates the user without a password; repeated binds with the same data deliver nothing more', async (t) => {
  const { dg, g } = await setup(t);
  await bind(g, 'eve');
  await until('eve created', () => dg.users.has('eve'));
  const post = dg.requests('POST', '/api/v1/user');
  t.equal(post.length, 1);
  // eve has no mobile in AD: phone comes from telephoneNumber (the profile's fallback)
  t.same(post[0]?.body, { username: 'eve', first_name: 'Eve', last_name: 'Evans', email: 'eve@example.test', phone: '+1 555 0110' }, 'no password, ever');
  await until('groups aligned', () => dg.users.get('eve')?.groups.length === 1);
  t.same(dg.users.get('eve')?.groups, ['remote-users'], 'the mapped AD group Remote became the Defguard group remote-users');

  await g.waitForLog(delivered('eve'));
  for (let i = 0; i < 20; i++) await bind(g, i % 2 ? 'eve@example.test' : 'EXAMPLE\\eve');
  // a success is recorded (or found a duplicate) before the bind is answered: once the 20 binds are
  // answered, an empty outbox means nothing more can be sent
  t.equal(await metric(g, /^ldap_gateway_provisioning_events_total\{kind="bind.success",outcome="recorded"\} (\d+)/m), 1, 'one event recorded');
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m), 0, 'nothing waits to be sent');
  t.equal(dg.requests('POST', '/api/v1/user').length, 1, 'still one creation');
  t.equal(dg.requests('PUT', '/api/v1/user').length, 1, 'one PUT (the group alignment), none for the repeats');
  t.equal(await metric(g, /^ldap_gateway_provisioning_events_total\{kind="bind.success",outcome="deduplicated"\} (\d+)/m), 20);
  t.equal(await metric(g, /^ldap_gateway_provisioning_deliveries_total\{outcome="delivered",reason=""\} (\d+)/m), 1);
  t.notOk(g.logs.some((l) => l.includes(PW) || l.includes(DEFGUARD_TOKEN)), 'no password or token in the logs');
});

t.test('Defguard down for a while, then back: everything delivered, nothing twice', async (t) => {
  const { dg, g } = await setup(t, { outage: true });
  const from = g.logs.length;
  for (const u of ['alice', 'bob', 'carol', 'jmuller']) await bind(g, u);
  const retry = (attempts: number): LineMatch => (_l, j) => j?.msg === 'delivery failed: will retry' && j.attempts === attempts;
  await g.waitForLog(retry(1), { from, count: 4 }); // each event met the outage
  await g.waitForLog(retry(3), { from }); // and one has waited through two back-offs (at least 100 + 200 ms)
  t.ok((await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m)) >= 4, 'the events wait in the outbox');
  t.ok((await metric(g, /^ldap_gateway_provisioning_deliveries_total\{outcome="retried",reason=""\} (\d+)/m)) >= 4, 'retried');
  t.ok((await metric(g, /^ldap_gateway_outbox_oldest_pending_age_seconds (\S+)/m)) > 0.3);
  await dg.up();
  await until('all four created', () => ['alice', 'bob', 'carol', 'jmuller'].every((u) => dg.users.has(u)), 15_000);
  for (const u of ['alice', 'bob', 'carol', 'jmuller']) t.equal(dg.requests('POST', '/api/v1/user').filter((r) => (r.body as { username: string }).username === u && r.status === 201).length, 1, `${u} created once`);
  await until('outbox empty', () => g.logs.filter((l) => l.includes('"result":"created"')).length >= 4);
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m), 0);
});

t.test('429 with Retry-After is honoured', async (t) => {
  const { dg, g } = await setup(t, { config: noGroups() });
  dg.injected.push({ status: 429, headers: { 'retry-after': '2' } });
  const t0 = Date.now();
  await bind(g, 'pobrien');
  await until('created after the wait', () => dg.users.has('pobrien'), 8000);
  t.ok(Date.now() - t0 >= 1900, `not before Retry-After (${Date.now() - t0} ms)`);
  t.equal(dg.log.filter((l) => l.status === 429).length, 1);
});

t.test('a duplicate username: created meanwhile by someone else, so it is updated, not created twice', async (t) => {
  const { dg, g } = await setup(t, { config: noGroups() });
  dg.addUser({ username: 'jdoe', email: 'old-address@example.test', first_name: 'J', last_name: 'D' });
  dg.hiddenOnce.add('jdoe'); // our GET misses it, our POST collides with it
  await bind(g, 'jdoe');
  await until('updated', () => dg.users.get('jdoe')?.email === 'john.doe@example.test');
  t.same(dg.requests('POST', '/api/v1/user').map((r) => r.status), [400], 'the POST was refused as a duplicate');
  t.equal([...dg.users.keys()].filter((u) => u === 'jdoe').length, 1);
  t.match(dg.users.get('jdoe'), { first_name: 'John', last_name: 'Doe' });
});

t.test("a username Defguard would reject is reported once as a dead letter, never sent, never retried", async (t) => {
  // no dedupe window: every bind records an event, and each must be refused without a new report
  const { dg, g } = await setup(t, { config: yaml().replace('provisioning:\n', 'provisioning:\n  dedupeWindowMs: 0\n') });
  await bind(g, 'jürgen');
  await bind(g, 'EXAMPLE\\jürgen');
  await bind(g, 'jürgen@example.test');
  t.equal(await metric(g, /^ldap_gateway_provisioning_events_total\{kind="bind.success",outcome="recorded"\} (\d+)/m), 3, 'each bind recorded an event');
  // the worker logs only the first refusal: the metric tells when all three were handled
  await eventually('all three events handled', async () => (await metric(g, /^ldap_gateway_provisioning_deliveries_total\{outcome="failed",reason="invalid_username"\} (\d+)/m)) >= 3);
  t.equal(dg.log.length, 0, 'nothing was sent to Defguard');
  t.equal(g.logs.filter((l) => l.includes('event rejected for good')).length, 1, 'one warning, not one per bind');
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="dead"\} (\d+)/m), 1, 'one dead letter');
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m), 0, 'nothing left to retry');
  t.equal(await metric(g, /^ldap_gateway_provisioning_deliveries_total\{outcome="failed",reason="invalid_username"\} (\d+)/m), 3);
  t.ok(g.logs.some((l) => /invalid_username.*must be ASCII/.test(l)), 'the reason is clear');
});

t.test("a user's mail changes in AD: one update follows their next bind", async (t) => {
  const { dg, g } = await setup(t);
  const modify = (mail: string) =>
    new Promise<void>((resolve, reject) => {
      const ldif = `dn: CN=eve,OU=People,${bedEnv('SAMBA_AD_BASE_DN')}\nchangetype: modify\nreplace: mail\nmail: ${mail}\n`;
      run('ldapmodify', ['-x', '-H', bedEnv('SAMBA_AD_URL'), '-D', bedEnv('SAMBA_AD_ADMIN_DN'), '-w', bedEnv('SAMBA_AD_ADMIN_PASS')], process.env, 15_000, ldif).then(
        (r) => (r.code === 0 ? resolve() : reject(new Error(`ldapmodify exited ${r.code}: ${r.stderr}`))),
        reject,
      );
    });
  t.teardown(() => modify('eve@example.test'));
  await bind(g, 'eve');
  await until('eve created', () => dg.users.get('eve')?.groups.length === 1);
  const puts = dg.requests('PUT', '/api/v1/user').length;
  await modify('eve.evans@example.test');
  await bind(g, 'eve');
  await until('mail updated', () => dg.users.get('eve')?.email === 'eve.evans@example.test');
  await g.waitForLog(delivered('eve'), { count: 2 });
  await bind(g, 'eve');
  // recorded (or deduplicated) before the bind was answered: an empty outbox means nothing more will be sent
  t.equal(await metric(g, /^ldap_gateway_provisioning_events_total\{kind="bind.success",outcome="deduplicated"\} (\d+)/m), 1, 'the third bind, with unchanged data, was deduplicated');
  t.equal(await metric(g, /^ldap_gateway_outbox_events\{state="pending"\} (\d+)/m), 0, 'nothing waits to be sent');
  t.equal(dg.requests('PUT', '/api/v1/user').length - puts, 1, 'exactly one update');
  t.equal(dg.requests('POST', '/api/v1/user').length, 1, 'and no second creation');
});

t.test('the gateway killed (-9) between recording and delivery: the event is delivered after restart', async (t) => {
  const dg = new DefguardStandin(DEFGUARD_TOKEN);
  await dg.up();
  await dg.down(); // Defguard unreachable until the restart, so the event cannot be delivered before the kill
  t.teardown(() => dg.down());
  const dir = mkdtempSync(join(tmpdir(), 'gw-kill-'));
  const cfgFile = join(dir, 'gateway.yaml');
  writeFileSync(cfgFile, yaml().replace(/\.\.\/\.\.\/certs\//g, `${ROOT}/certs/`).replace(/ {4}groups:\n {6}Remote: remote-users\n/, ''));
  const env = sambaEnv(dg.url);
  const start = () => spawnGateway({ args: ['--config', cfgFile], env });
  const first = await start();
  const c = new Client({ url: first.url, timeout: 10_000 });
  await c.bind('ann.contractor', PW);
  t.match(await first.kill('SIGKILL'), { signal: 'SIGKILL' }, 'killed right after the acknowledged bind');
  await c.unbind().catch(() => undefined);

  const listed = await run(process.execPath, [join(ROOT, 'bin', 'ldap-gateway.js'), 'outbox', 'list', '--config', cfgFile], env);
  t.match(listed.stdout, /^1 pending, 0 dead/m, 'the outbox CLI shows the event waiting');
  t.match(listed.stdout, /\tpending\tbind\.success\tann\.contractor\t/);

  await dg.up();
  const second = await start();
  t.teardown(() => second.stop());
  await second.waitFor(delivered('ann.contractor'), { timeoutMs: 15_000 });
  t.ok(dg.users.has('ann.contractor'), 'created after the restart');
  t.equal(dg.requests('POST', '/api/v1/user').length, 1);
});
