// The gateway against the Windows-AD STAND-IN (test/standins/windows-ad.ts) for the two behaviours Samba
// does not reproduce: the 1000-entry page cap and ranged multi-valued attributes.
import t from 'tap';
import { Client } from 'ldapts';
import { upstreamSchema } from '../../src/config/schema';
import { Upstream } from '../../src/upstream/upstream';
import { startWindowsAdStandin, type Standin } from '../standins/windows-ad';
import { startFromYaml, type TestGateway } from '../helpers/gateway';

const USERS = 2500;
const MANY = 1600;
let ad: Standin;
let g: TestGateway;

t.before(async () => {
  ad = await startWindowsAdStandin({ users: USERS, manyGroups: MANY });
  g = await startFromYaml(`listen:
  ldap: 127.0.0.1:0
upstream:
  urls: [${ad.url}]
  bind:
    dn: ${ad.serviceDN}
    password: ${ad.password}
  baseDN: ${ad.baseDN}
  pageSize: 1000
directory:
  baseDN: dc=vpn,dc=example
consumers:
  - name: app
    bindDN: cn=app,dc=vpn,dc=example
    password: app-Secret-1234
`);
});
t.teardown(async () => {
  await g.stop();
  await ad.close();
});

t.test('the stand-in behaves as Windows AD does: unpaged searches stop at 1000, values are ranged', async (t) => {
  const c = new Client({ url: ad.url, timeout: 10_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind(ad.serviceDN, ad.password);
  await t.rejects(c.search(ad.baseDN, { filter: '(objectClass=user)', attributes: ['cn'] }), { code: 4 });
  const huge = await c.search(`CN=Huge,OU=Groups,${ad.baseDN}`, { scope: 'base', attributes: ['member'] });
  const e = huge.searchEntries[0] ?? { dn: '' };
  t.equal((e['member;range=0-1499'] as string[]).length, 1500);
  t.same(e.member, [], 'plain member is empty (ldapts lists a requested attribute it did not get as [])');
});

t.test('the upstream layer reassembles a ranged member attribute into one whole attribute', async (t) => {
  const up = new Upstream(upstreamSchema.parse({ urls: [ad.url], bind: { dn: ad.serviceDN, password: ad.password }, baseDN: ad.baseDN }));
  t.teardown(() => up.close());
  const pages = [];
  for await (const p of up.search({ base: `CN=Huge,OU=Groups,${ad.baseDN}`, scope: 'base', filter: '(objectClass=*)', attributes: ['member'] })) pages.push(...p);
  t.same([...(pages[0]?.attrs.keys() ?? [])], ['member']);
  t.equal(pages[0]?.attrs.get('member')?.length, USERS);
  t.equal(new Set(pages[0]?.attrs.get('member')).size, USERS, 'no value twice');
});

t.test('listing more users than AD returns per page works, because upstream searches are always paged', async (t) => {
  const c = new Client({ url: g.url, timeout: 30_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('cn=app,dc=vpn,dc=example', 'app-Secret-1234');
  let n = 0;
  for await (const p of c.searchPaginated('ou=users,dc=vpn,dc=example', { filter: '(objectClass=inetOrgPerson)', attributes: ['uid'], paged: { pageSize: 500 } })) n += p.searchEntries.length;
  t.equal(n, USERS + 1);
  const unpaged = await c.search('ou=users,dc=vpn,dc=example', { filter: '(objectClass=inetOrgPerson)', attributes: ['uid'] });
  t.equal(unpaged.searchEntries.length, USERS + 1, 'a client that does not page still gets everything');
});

t.test("a user's ranged memberOf and a group's 2,500 members arrive complete through the gateway", async (t) => {
  const c = new Client({ url: g.url, timeout: 30_000 });
  t.teardown(() => c.unbind().catch(() => undefined));
  await c.bind('cn=app,dc=vpn,dc=example', 'app-Secret-1234');
  const joiner = await c.search('ou=users,dc=vpn,dc=example', { filter: '(uid=joiner)', attributes: ['memberOf'] });
  t.equal([joiner.searchEntries[0]?.memberOf].flat().length, MANY);
  const huge = await c.search('ou=groups,dc=vpn,dc=example', { filter: '(cn=Huge)', attributes: ['uniqueMember'] });
  t.equal([huge.searchEntries[0]?.uniqueMember].flat().length, USERS);
});
