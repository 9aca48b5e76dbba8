// Binds through the gateway to a real Samba AD DC (started by test/testbed/with-servers.sh).
import t from 'tap';
import { Client, InvalidCredentialsError } from 'ldapts';
import { allSecrets, bedEnv, CONSUMER_DN, CONSUMER_PASSWORD, run, sambaEnv, sambaExampleYaml, startFromYaml, type TestGateway } from '../helpers/gateway';

const PW = bedEnv('SAMBA_AD_USER_PASS');
const WRONG = 'Wrong-Passw0rd!';
let g: TestGateway;

t.before(async () => {
  g = await startFromYaml(sambaExampleYaml(), sambaEnv());
});
t.teardown(() => g.stop());

async function bindAs(name: string, password: string): Promise<{ ok: true; whoami: string } | { ok: false; code: number; message: string }> {
  const c = new Client({ url: g.url, timeout: 10_000, connectTimeout: 5000 });
  try {
    await c.bind(name, password);
    const r = await c.exop('1.3.6.1.4.1.4203.1.11.3');
    return { ok: true, whoami: r.value ?? '' };
  } catch (err) {
    const e = err as { code?: number; message: string };
    return { ok: false, code: e.code ?? -1, message: e.message };
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

const ALICE = 'dn:uid=alice,ou=users,dc=vpn,dc=example,dc=test';
const nameForms: Array<[string, string]> = [
  ['bare sAMAccountName', 'alice'],
  ['UPN', 'alice@example.test'],
  ['down-level DOMAIN\\user', 'EXAMPLE\\alice'],
  ['down-level, lower-case domain', 'example\\alice'],
  ['real AD DN', `CN=alice,OU=People,${bedEnv('SAMBA_AD_BASE_DN')}`],
  ['real AD DN, other case and spacing', 'cn=ALICE, ou=people, dc=Example, dc=TEST'],
  ['virtual DN', 'uid=alice,ou=users,dc=vpn,dc=example,dc=test'],
];

for (const [label, name] of nameForms) {
  t.test(`a bind as ${label} reaches AD as the resolved DN`, async (t) => {
    t.same(await bindAs(name, PW), { ok: true, whoami: ALICE });
    const bad = await bindAs(name, WRONG);
    t.match(bad, { ok: false, code: 49, message: 'bad_credentials' }, 'the wrong password is refused with the decoded reason');
  });
}

t.test('names with special characters resolve: escaped comma in the CN, non-ASCII CN, second OU', async (t) => {
  t.same(await bindAs('jdoe', PW), { ok: true, whoami: 'dn:uid=jdoe,ou=users,dc=vpn,dc=example,dc=test' });
  t.same(await bindAs(`CN=Doe\\, John,OU=Contractors,${bedEnv('SAMBA_AD_BASE_DN')}`, PW), { ok: true, whoami: 'dn:uid=jdoe,ou=users,dc=vpn,dc=example,dc=test' });
  t.same(await bindAs(`CN=José Müller,OU=People,${bedEnv('SAMBA_AD_BASE_DN')}`, PW), { ok: true, whoami: 'dn:uid=jmuller,ou=users,dc=vpn,dc=example,dc=test' });
  t.same(await bindAs('ann.contractor@example.test', PW), { ok: true, whoami: 'dn:uid=ann.contractor,ou=users,dc=vpn,dc=example,dc=test' });
});

const states: Array<[string, string]> = [
  ['dave', 'account_disabled'],
  ['mustchange', 'must_change_password'],
  ['expiredpw', 'password_expired'],
  ['acctexpired', 'account_expired'],
  ['locked', 'account_locked'],
];
for (const [user, reason] of states) {
  t.test(`AD's reason for ${user} (${reason}) is decoded from a real account in that state`, async (t) => {
    t.match(await bindAs(user, PW), { ok: false, code: 49, message: reason });
    const line = g.logs.map((l) => JSON.parse(l) as Record<string, unknown>).reverse().find((l) => l.event === 'bind' && l.name === user);
    t.match(line, { result: 'failure', reason, dn: new RegExp(`^CN=${user},OU=People,`, 'i') }, 'the audit line carries the reason and the resolved DN');
  });
}

t.test('an empty password never authenticates and is never forwarded', async (t) => {
  for (const name of ['alice', 'alice@example.test', `CN=alice,OU=People,${bedEnv('SAMBA_AD_BASE_DN')}`, CONSUMER_DN]) {
    t.match(await bindAs(name, ''), { ok: false, code: 49, message: 'empty_password' }, name);
  }
  const lines = g.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'bind' && l.reason === 'empty_password');
  t.ok(lines.length >= 4);
  t.ok(lines.every((l) => l.dn === undefined && l.dc === undefined), 'no AD entry was resolved and no DC was contacted');
});

t.test('unknown users and injection attempts get 49 and bind nothing upstream', async (t) => {
  for (const name of ['nosuchuser', 'ali*', '*', 'alice)(|(sAMAccountName=*)', 'a\\5c*', 'x\u0000y', '*@example.test', 'Jos*', 'ünknöwn', 'EXAMPLE\\*', '(', ')']) {
    const r = await bindAs(name, PW);
    t.match(r, { ok: false, code: 49 }, JSON.stringify(name));
  }
  const lines = g.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'bind' && l.result === 'failure' && (l.reason === 'unknown_user' || l.reason === 'invalid_name'));
  t.ok(lines.length >= 10);
  t.ok(lines.every((l) => l.dc === undefined), 'no upstream bind was attempted');
});

t.test('a consumer binds with its own credentials from config, never reaching AD', async (t) => {
  t.same(await bindAs(CONSUMER_DN, CONSUMER_PASSWORD), { ok: true, whoami: `dn:${CONSUMER_DN}` });
  t.same(await bindAs('CN=Defguard, DC=VPN,dc=example,dc=test', CONSUMER_PASSWORD), { ok: true, whoami: `dn:${CONSUMER_DN}` });
  t.match(await bindAs(CONSUMER_DN, WRONG), { ok: false, code: 49 });
});

t.test('a failed rebind leaves the connection anonymous', async (t) => {
  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('alice', PW);
  t.equal((await c.exop('1.3.6.1.4.1.4203.1.11.3')).value, ALICE);
  await t.rejects(c.bind('bob', WRONG), InvalidCredentialsError);
  t.equal((await c.exop('1.3.6.1.4.1.4203.1.11.3')).value ?? '', '', 'WhoAmI reports anonymous');
  await t.rejects(c.search('ou=users,dc=vpn,dc=example,dc=test', { filter: '(uid=alice)' }), { code: 50 }, 'and it may no longer search');
});

t.test('binds over LDAPS and StartTLS, checked with OpenLDAP tools', async (t) => {
  const env = { ...process.env, LDAPTLS_CACERT: `${__dirname}/../../certs/dev-ca.pem` };
  const ldaps = await run('ldapwhoami', ['-x', '-H', g.ldapsUrl as string, '-D', 'bob@example.test', '-w', PW], env);
  t.equal(ldaps.stdout.trim(), 'dn:uid=bob,ou=users,dc=vpn,dc=example,dc=test', ldaps.stderr);
  const starttls = await run('ldapwhoami', ['-x', '-ZZ', '-H', g.url, '-D', 'EXAMPLE\\carol', '-w', PW], env);
  t.equal(starttls.stdout.trim(), 'dn:uid=carol,ou=users,dc=vpn,dc=example,dc=test', starttls.stderr);
  const search = await run('ldapsearch', ['-x', '-LLL', '-ZZ', '-H', g.url, '-D', CONSUMER_DN, '-w', CONSUMER_PASSWORD, '-b', 'ou=users,dc=vpn,dc=example,dc=test', '(uid=bob)', 'mail'], env);
  t.match(search.stdout, /^dn: uid=bob,ou=users,dc=vpn,dc=example,dc=test\nmail: bob@example.test\n/);
  const tlsLines = g.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'bind' && (l.name === 'bob@example.test' || l.name === 'EXAMPLE\\carol'));
  t.ok(tlsLines.length >= 2 && tlsLines.every((l) => l.tls === true), 'the audit lines record TLS');

  const c = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.startTLS({ ca: [require('node:fs').readFileSync(`${__dirname}/../../certs/dev-ca.pem`)], servername: 'localhost' });
  await c.bind('jmuller@example.test', PW);
  t.equal((await c.exop('1.3.6.1.4.1.4203.1.11.3')).value, 'dn:uid=jmuller,ou=users,dc=vpn,dc=example,dc=test', 'ldapts StartTLS + bind');
});

t.test('after binds, /metrics counts them by result and reason', async (t) => {
  const text = await (await fetch(`${g.httpUrl}/metrics`)).text();
  const count = (labels: string) => Number(new RegExp(`^ldap_gateway_binds_total\\{${labels}\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  t.ok(count('result="success",reason="ok"') >= 10, 'successes');
  t.ok(count('result="failure",reason="bad_credentials"') >= 7, 'bad credentials');
  t.equal(count('result="failure",reason="account_locked"'), 1, 'exactly one locked-out attempt');
  t.match(text, /^ldap_gateway_operations_total\{op="bind",result="invalidCredentials"\} \d+/m);
  t.match(text, /^ldap_gateway_upstream_duration_seconds_count\{op="bind",dc="ldaps:\/\/127\.0\.0\.11:636",outcome="ok"\} \d+/m);
});

t.test('no password or secret appears in any log line', async (t) => {
  t.ok(g.logs.length > 40, `${g.logs.length} log lines captured`);
  const joined = g.logs.join('\n');
  for (const secret of allSecrets()) t.notOk(joined.includes(secret), `log lines do not contain the secret ${secret.slice(0, 2)}…`);
});

t.test('a repeated bind reuses the name look-up; a failed bind drops it', async (t) => {
  // the look-up cache works while provisioning is off (with it on, each bind reads the current entry)
  const off = await startFromYaml(sambaExampleYaml().replace('  mode: log-only ', '  mode: off '), sambaEnv());
  t.teardown(() => off.stop());
  const searches = async () => Number(/^ldap_gateway_upstream_duration_seconds_count\{op="search",dc="[^"]+",outcome="ok"\} (\d+)/m.exec(await (await fetch(`${off.httpUrl}/metrics`)).text())?.[1] ?? 0);
  const bindAs = async (name: string, password: string) => {
    const c = new Client({ url: off.url, timeout: 10_000 });
    try {
      await c.bind(name, password);
      return { ok: true };
    } catch {
      return { ok: false };
    } finally {
      await c.unbind().catch(() => undefined);
    }
  };
  await bindAs('carol@example.test', PW);
  const s0 = await searches();
  for (let i = 0; i < 5; i++) t.match(await bindAs('carol@example.test', PW), { ok: true });
  t.equal((await searches()) - s0, 0, 'five more binds, no look-up search');
  t.match(await bindAs('carol@example.test', WRONG), { ok: false });
  await bindAs('carol@example.test', PW);
  t.equal((await searches()) - s0, 1, 'after a failure the name is looked up again');
});
