// The gateway in front of a real OpenLDAP slapd (inetOrgPerson / groupOfNames with the memberof
// overlay), using config/examples/openldap.yaml as shipped, moved to ephemeral ports.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'ldapts';
import { allSecrets, bedEnv, CONSUMER_PASSWORD, ROOT, startFromYaml, type TestGateway } from '../helpers/gateway';

const PW = bedEnv('OPENLDAP_USER_PASS');
const BASE = 'dc=vpn,dc=example,dc=org';
const CONSUMER = `cn=defguard,${BASE}`;
let g: TestGateway;

t.before(async () => {
  const yaml = readFileSync(join(ROOT, 'config', 'examples', 'openldap.yaml'), 'utf8').replace(/^( {2}ldap): 127\.0\.0\.1:1389$/m, '$1: 127.0.0.1:0').replace(/^( {2}listen): 127\.0\.0\.1:9090$/m, '$1: 127.0.0.1:0');
  g = await startFromYaml(yaml, { ...process.env, GATEWAY_DEFGUARD_PASSWORD: CONSUMER_PASSWORD });
});
t.teardown(() => g.stop());

async function whoami(name: string, password: string): Promise<string | number> {
  const c = new Client({ url: g.url, timeout: 5000 });
  try {
    await c.bind(name, password);
    return (await c.exop('1.3.6.1.4.1.4203.1.11.3')).value ?? '';
  } catch (err) {
    return (err as { code: number }).code;
  } finally {
    await c.unbind().catch(() => undefined);
  }
}

t.test('binds by uid, by mail and by real or virtual DN reach slapd as the resolved DN', async (t) => {
  const alice = `dn:uid=alice,ou=users,${BASE}`;
  t.equal(await whoami('alice', PW), alice);
  t.equal(await whoami('alice@example.org', PW), alice);
  t.equal(await whoami(`uid=alice,ou=people,${bedEnv('OPENLDAP_BASE_DN')}`, PW), alice);
  t.equal(await whoami(`uid=alice,ou=users,${BASE}`, PW), alice);
  t.equal(await whoami('jdoe', PW), `dn:uid=jdoe,ou=users,${BASE}`, 'a user in a second OU');
  t.equal(await whoami('alice', 'Wrong-Passw0rd!'), 49);
  t.equal(await whoami('alice', ''), 49);
  t.equal(await whoami('nobody', PW), 49);
});

t.test('searches map inetOrgPerson entries into the virtual tree with groups as virtual DNs', async (t) => {
  const c = new Client({ url: g.url, timeout: 5000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind(CONSUMER, CONSUMER_PASSWORD);
  const r = await c.search(`ou=users,${BASE}`, { filter: '(&(uid=jmuller)(objectClass=inetOrgPerson))', attributes: ['*', 'memberOf'] });
  t.match(r.searchEntries, [{ dn: `uid=jmuller,ou=users,${BASE}`, uid: 'jmuller', givenName: 'José', sn: 'Müller', mail: 'jmuller@example.org', mobile: '+49 170 1234' }]);
  t.same(r.searchEntries[0]?.memberOf, [`cn=AllEmployees,ou=groups,${BASE}`, `cn=Staff,ou=groups,${BASE}`], 'Staff ⊂ AllEmployees: flattened');
  const groups = await c.search(`ou=groups,${BASE}`, { filter: '(objectClass=groupOfUniqueNames)', attributes: ['cn'] });
  t.same(groups.searchEntries.map((e) => e.cn).sort(), ['AllEmployees', 'Engineering', 'Staff']);
  const nested = await c.search(`ou=users,${BASE}`, { filter: `(givenName=José)`, attributes: ['uid'] });
  t.same(nested.searchEntries.map((e) => e.uid), ['jmuller'], 'non-ASCII filter values arrive intact');
});

t.test('no secret in the logs', async (t) => {
  const joined = g.logs.join('\n');
  for (const s of allSecrets()) t.notOk(joined.includes(s));
});
