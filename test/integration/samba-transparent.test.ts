// Transparent mode against Samba AD: AD's own DNs and tree, attributes and membership still mapped.
import t from 'tap';
import { Client } from 'ldapts';
import { bedEnv, sambaExampleYaml, startConsumerSession, type TestGateway } from '../helpers/gateway';

const AD = bedEnv('SAMBA_AD_BASE_DN');
const PW = bedEnv('SAMBA_AD_USER_PASS');
let g: TestGateway;
let c: Client;
let stop: () => Promise<void>;
t.before(async () => {
  ({ g, c, stop } = await startConsumerSession(sambaExampleYaml().replace('directory:\n', 'directory:\n  mode: transparent\n')));
});
t.teardown(() => stop());

t.test("entries keep AD's DNs, byte for byte, with the attribute map applied", async (t) => {
  const r = await c.search(AD, { filter: '(|(uid=alice)(uid=jdoe))', attributes: ['uid', 'mail', 'memberOf', 'objectClass'] });
  const byUid = new Map(r.searchEntries.map((e) => [e.uid as string, e]));
  t.equal(byUid.get('alice')?.dn, `CN=alice,OU=People,${AD}`);
  // exactly the DN Samba itself returns to a direct client (it hex-escapes the comma: CN=Doe\2c John)
  const direct = new Client({ url: bedEnv('SAMBA_AD_URL'), timeout: 10_000 });
  t.teardown(() => direct.unbind().catch(() => undefined));
  await direct.bind(bedEnv('SAMBA_AD_SERVICE_DN'), PW);
  const fromAd = await direct.search(AD, { filter: '(sAMAccountName=jdoe)', attributes: ['1.1'] });
  t.equal(byUid.get('jdoe')?.dn, fromAd.searchEntries[0]?.dn);
  t.match(byUid.get('jdoe')?.dn, /^CN=Doe\\(2c|,) John,OU=Contractors,/i);
  const jm = await c.search(AD, { filter: '(uid=jmuller)', attributes: ['1.1'] });
  t.equal(jm.searchEntries[0]?.dn, `CN=José Müller,OU=People,${AD}`, 'non-ASCII DNs pass through as UTF-8');
  t.same(byUid.get('alice')?.objectClass, ['top', 'person', 'organizationalPerson', 'inetOrgPerson']);
  t.ok([byUid.get('alice')?.memberOf].flat().includes(`CN=AllEmployees,OU=Groups,${AD}`), 'memberOf holds AD group DNs, nested groups flattened');
  const again = await c.search(AD, { filter: '(uid=jdoe)', attributes: ['1.1'] });
  t.equal(again.searchEntries[0]?.dn, byUid.get('jdoe')?.dn);
});

t.test('base, one-level and missing entries in the AD tree', async (t) => {
  const grp = await c.search(`CN=Engineering,OU=Groups,${AD}`, { scope: 'base', attributes: ['cn', 'uniqueMember'] });
  t.same([grp.searchEntries[0]?.uniqueMember].flat().sort(), [`CN=alice,OU=People,${AD}`, `CN=bob,OU=People,${AD}`]);
  const one = await c.search(`OU=Contractors,${AD}`, { scope: 'one', filter: '(objectClass=inetOrgPerson)', attributes: ['uid'] });
  t.same(one.searchEntries.map((e) => e.uid).sort(), ['jdoe', 'nomail']);
  await t.rejects(c.search(`CN=nobody,OU=People,${AD}`, { scope: 'base' }), { code: 32 });
  await t.rejects(c.search('dc=vpn,dc=example,dc=test', { scope: 'sub' }), { code: 32 }, 'outside the AD base');
  const ou = await c.search(`OU=People,${AD}`, { scope: 'base' });
  t.equal(ou.searchEntries.length, 0, 'an existing entry that is neither user nor group is not shown, and not an error');
});

t.test('membership filters take AD DNs; binds and WhoAmI name users by their AD DN', async (t) => {
  const r = await c.search(AD, { filter: `(&(objectClass=groupOfUniqueNames)(uniqueMember=CN=alice,OU=People,${AD}))`, attributes: ['cn'] });
  t.same(r.searchEntries.map((e) => e.cn).sort(), ['AllEmployees', 'BulkAll', 'Engineering', 'Staff', 'VPN']);
  const u = new Client({ url: g.url, timeout: 10_000 });
  t.teardown(() => u.unbind().catch(() => undefined));
  await u.bind('EXAMPLE\\bob', PW);
  t.equal((await u.exop('1.3.6.1.4.1.4203.1.11.3')).value, `dn:CN=bob,OU=People,${AD}`);
  const pages = [];
  for await (const p of c.searchPaginated(AD, { filter: '(objectClass=*)', attributes: ['1.1'], paged: { pageSize: 500 } })) pages.push(p);
  t.equal(pages.reduce((n, p) => n + p.searchReferences.length, 0), 0, 'no continuation references from the domain root');
  t.ok(pages.reduce((n, p) => n + p.searchEntries.length, 0) > 1500);
});
